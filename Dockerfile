# CPU image (default): built by the same script a new user runs.
#   docker build -t gan-trainer .
#   docker run --rm -v "$PWD/runs:/opt/gan/runs" gan-trainer gan-train --config configs/fashion-mnist.cfg
#
# CUDA image: LibTorch with CUDA is not a Debian package, so bring it in the build context (unzip the
# cxx11-ABI LibTorch build for your CUDA version into ./libtorch) and build the `cuda` target:
#   docker build --target cuda -t gan-trainer:cuda .
#   docker run --rm --gpus all -v "$PWD/runs:/opt/gan/runs" gan-trainer:cuda gan-train --config configs/celeba.cfg
ARG CUDA_BASE=nvidia/cuda:12.6.3-cudnn-devel-ubuntu24.04

FROM ${CUDA_BASE} AS cuda
WORKDIR /opt/gan
COPY . .
# Same script; GAN_TORCH_DIR points it at the CUDA LibTorch instead of Debian's CPU-only libtorch-dev.
RUN test -f libtorch/share/cmake/Torch/TorchConfig.cmake \
 || (echo "unzip a CUDA LibTorch into ./libtorch first (see Dockerfile header)" && false)
RUN GAN_TORCH_DIR=/opt/gan/libtorch bash scripts/setup.sh --no-tests && rm -rf /var/lib/apt/lists/* \
 && ln -s /opt/gan/build/gan-train /opt/gan/build/gan-sample /opt/gan/build/gan-data /opt/gan/build/gan-eval /usr/local/bin/
ENV LD_LIBRARY_PATH=/opt/gan/libtorch/lib
CMD ["gan-train", "--config", "configs/fashion-mnist.cfg", "--device", "cuda"]

# Last stage = what a plain `docker build .` produces.
FROM debian:bookworm AS cpu
WORKDIR /opt/gan
COPY . .
RUN bash scripts/setup.sh --no-tests && rm -rf /var/lib/apt/lists/* \
 && ln -s /opt/gan/build/gan-train /opt/gan/build/gan-sample /opt/gan/build/gan-data /opt/gan/build/gan-eval /usr/local/bin/
CMD ["gan-train", "--config", "configs/fashion-mnist.cfg"]

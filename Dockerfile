# CPU image (default): built by the same script a new user runs on Debian.
#   docker build -t gan-trainer .
#   docker run --rm -v "$PWD/runs:/opt/gan/runs" gan-trainer gan-train --config configs/fashion-mnist.cfg
#
# CUDA image: built on the official PyTorch CUDA devel image (PyTorch >= 2.7: the C++11 ABI of the distribution's
# packages), against the LibTorch inside its torch package, by scripts/setup-pytorch.sh (the same script a user runs
# on a GPU box without Docker); the runtime stage is the matching PyTorch runtime image plus our programs and the few
# libraries they need. No manual step:
#   docker build --target cuda -t gan-trainer:cuda .
#   docker run --rm --gpus all -v "$PWD/data:/data" -v "$PWD/runs:/runs" gan-trainer:cuda \
#     gan-train --config configs/celeba.cfg --set data.path=/data/celeba --out /runs
#   docker run --rm --gpus all --ipc=host -v "$PWD/data:/data" -v "$PWD/runs:/runs" gan-trainer:cuda \
#     torchrun --no_python --nproc_per_node 8 gan-train --config configs/celeba.cfg --set data.path=/data/celeba --out /runs
ARG PYTORCH_TAG=2.7.1-cuda12.8-cudnn9

FROM pytorch/pytorch:${PYTORCH_TAG}-devel AS cuda-build
WORKDIR /opt/gan
COPY . .
# No GPU is visible while an image builds: name the architectures (A100; A10 and RTX 30; L4 and RTX 40; H100 and H200).
ENV TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
RUN PYTHON=python bash scripts/setup-pytorch.sh --no-tests --bundle /opt/gan-dist && rm -rf /var/lib/apt/lists/*

FROM pytorch/pytorch:${PYTORCH_TAG}-runtime AS cuda
WORKDIR /opt/gan
COPY --from=cuda-build /opt/gan-dist /opt/gan-dist
COPY configs /opt/gan/configs
COPY scripts/bench_reference.py /opt/gan/scripts/bench_reference.py
ENV PATH=/opt/gan-dist/bin:$PATH LD_LIBRARY_PATH=/opt/gan-dist/lib
# Each program must load with this stage's libraries alone (PyTorch's, found through the path the build stage linked
# them with, and the bundle's): checked while the image builds, not on the user's first run. No GPU is needed.
RUN for p in /opt/gan-dist/bin/*; do "$p" --version || exit 1; done
CMD ["gan-train", "--help"]

# Last stage = what a plain `docker build .` produces.
FROM debian:bookworm AS cpu
WORKDIR /opt/gan
COPY . .
RUN bash scripts/setup.sh --no-tests && rm -rf /var/lib/apt/lists/* \
 && ln -s /opt/gan/build/gan-train /opt/gan/build/gan-sample /opt/gan/build/gan-data /opt/gan/build/gan-eval \
        /opt/gan/build/gan-export /opt/gan/build/gan-report /usr/local/bin/ \
 && gan-train --version
CMD ["gan-train", "--config", "configs/fashion-mnist.cfg"]

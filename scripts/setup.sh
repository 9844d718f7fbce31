#!/usr/bin/env bash
# Installs the Debian packages this project needs (only those missing), then configures and builds it.
#   scripts/setup.sh            build everything (trainer, sampler, tests)
#   scripts/setup.sh --no-tests build the programs (gan-train, gan-sample, gan-data, gan-eval, gan-export, gan-report) only
# Environment: BUILD_DIR (default build), JOBS (default: all cores),
#   GAN_TORCH_DIR: a LibTorch to build against instead of Debian's libtorch-dev (e.g. a CUDA LibTorch; its
#   share/cmake folder or the folder holding TorchConfig.cmake). Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=ON
[[ "${1:-}" == "--no-tests" ]] && tests=OFF
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

# libgloo-dev: the headers of c10d's Gloo process group (data-parallel training on the CPU); libprotobuf-dev and
# protobuf-compiler: the TensorBoard event messages (src/io/tensorboard.proto).
packages=(ca-certificates cmake g++ make libopenblas0-openmp libcli11-dev libspdlog-dev libyaml-cpp-dev libstb-dev
          zlib1g-dev libturbojpeg0-dev libgloo-dev libprotobuf-dev protobuf-compiler dataset-fashion-mnist)
[[ -z "${GAN_TORCH_DIR:-}" ]] && packages+=(libtorch-dev)
# python3-torch: its torchrun launches the distributed tests, tests/pytorch_interop.py loads exported weights (and
# scripts/bench_reference.py is the speed reference); python3-protobuf: tests/read_tfevents.py decodes the
# TensorBoard event files; chromium: tests/test_report.cpp renders report.html in a real browser.
[[ "$tests" == ON ]] && packages+=(libgtest-dev python3-torch python3-protobuf chromium)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's reference BLAS is ~4x slower than OpenBLAS for this workload; make sure OpenBLAS is the one in use.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
if [[ -n "$blas" && "$blas" != *openblas* ]]; then
  echo "setup: warning: libblas.so.3 is $blas, not OpenBLAS; run: update-alternatives --config libblas.so.3-x86_64-linux-gnu" >&2
fi

# --no-tests builds fewer targets but leaves a build folder that has the tests configured as it is (turning them off
# there would leave a stale gan-tests for the next ctest); it configures them off only where GoogleTest is missing.
cmake_args=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release)
if [[ "$tests" == ON ]]; then
  cmake_args+=(-DGAN_BUILD_TESTS=ON)
elif ! dpkg-query -W -f='${Status}' libgtest-dev 2>/dev/null | grep -q "install ok installed"; then
  cmake_args+=(-DGAN_BUILD_TESTS=OFF)
fi
[[ -n "${GAN_TORCH_DIR:-}" ]] && cmake_args+=(-DCMAKE_PREFIX_PATH="$GAN_TORCH_DIR")
cmake "${cmake_args[@]}" >/dev/null
if [[ "$tests" == ON ]]; then
  cmake --build "$build_dir" -j "$jobs"
else
  cmake --build "$build_dir" -j "$jobs" --target gan-train gan-sample gan-data gan-eval gan-export gan-report
fi
echo "setup: built gan-train, gan-sample, gan-data, gan-eval, gan-export and gan-report in $build_dir"

#!/usr/bin/env bash
# Builds the trainer against the LibTorch inside a Python PyTorch (pip or conda; CUDA or not): the build steps of the
# CUDA Docker image, and what a user runs on a GPU box that has PyTorch but no Docker. Debian's own python3-torch has
# no CMake files: on Debian use scripts/setup.sh (its libtorch-dev) instead.
#   scripts/setup-pytorch.sh                 build everything (trainer, sampler, tests)
#   scripts/setup-pytorch.sh --no-tests      the programs only (gan-train, -sample, -data, -eval, -bench, -export, -report)
#   scripts/setup-pytorch.sh --bundle DIR    then copy the programs and the libraries of this script's packages that
#                                            they need (yaml-cpp, spdlog, fmt, stb, protobuf) into DIR/bin and DIR/lib
# Environment:
#   PYTHON                 the Python whose torch to build against (default python3)
#   TORCH_CUDA_ARCH_LIST   GPU architectures for CUDA builds (default "8.0;8.6;8.9;9.0": A100, A10/3090, L4/4090,
#                          H100/H200); needed where no GPU is visible at build time, as in `docker build`
#   GAN_DEPS               a folder of unpacked Debian packages (scripts/gpu-check.sh --prepare makes one) to use
#                          instead of installing packages: for machines without a package registry
#   BUILD_DIR (default build), JOBS (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."

tests=ON
bundle=""
while (($#)); do
  case "$1" in
    --no-tests) tests=OFF ;;
    --bundle) bundle=${2:?--bundle needs a folder}; shift ;;
    *) echo "setup-pytorch: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
python=${PYTHON:-python3}
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;8.6;8.9;9.0}

# LibTorch from the Python package, and whether its C++ ABI is the distribution's.
read -r torch_version torch_cmake cxx11 cuda < <("$python" -c '
import torch
print(torch.__version__, torch.utils.cmake_prefix_path, int(torch.compiled_with_cxx11_abi()), torch.version.cuda or "none")' 2>/dev/null) ||
  { echo "setup-pytorch: $python cannot import torch: set PYTHON to the Python that has PyTorch" >&2; exit 2; }
if [[ ! -f "$torch_cmake/Torch/TorchConfig.cmake" ]]; then
  echo "setup-pytorch: torch $torch_version at $torch_cmake has no CMake files (Debian's python3-torch is such a one);" \
    "use scripts/setup.sh, which builds against Debian's libtorch-dev" >&2
  exit 2
fi
if [[ "$cxx11" != 1 ]]; then
  echo "setup-pytorch: torch $torch_version was built with the old C++ ABI (pip wheels before PyTorch 2.7), which the" \
    "distribution's C++ libraries (yaml-cpp, spdlog) cannot link with; use PyTorch 2.7 or newer" >&2
  exit 2
fi
echo "setup-pytorch: torch $torch_version (CUDA $cuda) from $torch_cmake; TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"

prefix=("$torch_cmake")
if [[ -n "${GAN_DEPS:-}" ]]; then
  deps=$(cd "$GAN_DEPS" && pwd)
  [[ -d "$deps/usr/include" ]] || { echo "setup-pytorch: GAN_DEPS=$GAN_DEPS holds no unpacked packages (usr/include)" >&2; exit 2; }
  prefix+=("$deps/usr")
  # Debian's CMake files for these name /usr/include and /usr/lib: point them at the unpacked copies.
  export CPATH="$deps/usr/include${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  # The distribution's packages (Debian or Ubuntu), only those missing; libgloo-dev where the distribution has it
  # (without gloo's headers the build keeps NCCL only, which is what a CUDA image needs).
  packages=(ca-certificates cmake g++ make libcli11-dev libspdlog-dev libyaml-cpp-dev libstb-dev zlib1g-dev libturbojpeg0-dev
            libprotobuf-dev protobuf-compiler)
  [[ "$tests" == ON ]] && packages+=(libgtest-dev)
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})) || ! dpkg-query -W -f='${Status}' libgloo-dev 2>/dev/null | grep -q "install ok installed"; then
    $sudo apt-get update -qq
    apt-cache show libgloo-dev >/dev/null 2>&1 && missing+=(libgloo-dev)
    if ((${#missing[@]})); then
      echo "setup-pytorch: installing ${missing[*]}"
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
  fi
fi

# A CUDA LibTorch's CMake files look for the CUDA toolkit through the first nvcc on PATH and take the folder above its
# bin/ as the toolkit: a wrapper script elsewhere (/usr/local/bin/nvcc) would send them to the wrong folder. Ask nvcc
# where it lives and name that folder to CMake.
cuda_args=()
if [[ "$cuda" != none ]]; then
  nvcc=$(command -v nvcc || true)
  [[ -z "$nvcc" && -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc
  if [[ -n "$nvcc" ]]; then
    probe=$(mktemp -d)
    touch "$probe/x.cu"
    top=$("$nvcc" --dryrun -c "$probe/x.cu" -o "$probe/x.o" 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
    rm -rf "$probe"
    cuda_root=$(readlink -f "${top:-$(dirname "$nvcc")/..}")
    export PATH="$cuda_root/bin:$PATH" CUDACXX="$cuda_root/bin/nvcc" CUDA_HOME="$cuda_root" CUDA_PATH="$cuda_root"
    cuda_args=(-DCUDAToolkit_ROOT="$cuda_root" -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root")
    echo "setup-pytorch: CUDA toolkit $cuda_root ($("$cuda_root/bin/nvcc" --version | grep -o 'release [0-9.]*'))"
    # NCCL's header, which a CUDA LibTorch's c10d headers include: the toolkit's, or the nvidia-nccl wheel's.
    if [[ ! -f "$cuda_root/include/nccl.h" ]]; then
      nccl_include=$("$python" -c 'import glob, os, site
print(next(iter(sorted(os.path.dirname(h) for d in site.getsitepackages()
                       for h in glob.glob(os.path.join(d, "nvidia", "*", "include", "nccl.h")))), ""))' 2>/dev/null || true)
      [[ -n "$nccl_include" ]] && export CPATH="${CPATH:+$CPATH:}$nccl_include"
    fi
  else
    echo "setup-pytorch: warning: torch $torch_version has CUDA $cuda but there is no nvcc on PATH or in" \
      "/usr/local/cuda: LibTorch's CMake files need the CUDA toolkit (a CUDA devel image has it)" >&2
  fi
fi
# CMake's default generator needs make; PyTorch images often have ninja (pip's) instead.
generator=()
command -v make >/dev/null || { command -v ninja >/dev/null && generator=(-G Ninja); }

prefix_path=$(IFS=';'; echo "${prefix[*]}")
mkdir -p "$build_dir"
# The suites are registered with ctest when ctest starts (PRE_TEST), not by running gan-tests after the build: the
# build must not depend on starting a CUDA program where no GPU (or no driver) is, as in `docker build`.
cmake -S . -B "$build_dir" "${generator[@]}" "${cuda_args[@]}" -DCMAKE_BUILD_TYPE=Release -DGAN_BUILD_TESTS="$tests" -DCMAKE_PREFIX_PATH="$prefix_path" \
  -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST >"$build_dir/configure.log" 2>&1 ||
  { tail -30 "$build_dir/configure.log" >&2; exit 1; }
grep -E "gloo headers not found" "$build_dir/configure.log" >&2 || true
targets=(gan-train gan-sample gan-data gan-eval gan-bench gan-export gan-report)
[[ "$tests" == ON ]] && targets+=(gan-tests)
cmake --build "$build_dir" -j "$jobs" --target "${targets[@]}"
echo "setup-pytorch: built ${targets[*]} in $build_dir"

if [[ -n "$bundle" ]]; then
  mkdir -p "$bundle/bin" "$bundle/lib"
  for t in "${targets[@]}"; do [[ "$t" == gan-tests ]] || cp "$build_dir/$t" "$bundle/bin/"; done
  # The libraries from this script's packages (the runtime image has the system's and PyTorch's own, CUDA's included),
  # found from the names the programs (and then those libraries) need: readelf rather than ldd, which would load the
  # programs and fails as a whole when any library of theirs (a LibTorch one) does not load where they are built.
  needed() { readelf -d "$@" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | sort -u; }
  where() {  # the file of library $1: the build's library path first (GAN_DEPS), then the linker's cache
    local d
    for d in ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }}; do [[ -e "$d/$1" ]] && { echo "$d/$1"; return; }; done
    ldconfig -p | awk -v n="$1" '$1 == n && /x86-64/ && !found {print $NF; found = 1}'  # all read: no SIGPIPE
  }
  todo=$(needed "$bundle"/bin/*)
  while [[ -n "$todo" ]]; do
    next=""
    for name in $todo; do
      case "$name" in
        libyaml-cpp.so*|libspdlog.so*|libfmt.so*|libstb.so*|libturbojpeg.so*|libprotobuf.so*) ;;
        *) continue ;;
      esac
      [[ -e "$bundle/lib/$name" ]] && continue
      lib=$(where "$name")
      [[ -n "$lib" ]] || { echo "setup-pytorch: $name, which the programs need, is not on this machine" >&2; exit 1; }
      cp -L "$lib" "$bundle/lib/$name"
      next+=" $(needed "$bundle/lib/$name" | tr '\n' ' ')"
    done
    todo=$next
  done
  echo "setup-pytorch: bundled into $bundle: bin/ $(ls "$bundle/bin" | tr '\n' ' ')| lib/ $(ls "$bundle/lib" | tr '\n' ' ')"
fi

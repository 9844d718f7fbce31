#!/usr/bin/env bash
# Checks the project against LibTorch 2.x without a GPU: debootstraps Debian trixie (LibTorch 2.6) or sid (the newest
# LibTorch Debian has: 2.14.1 on 2026-12-02) into a folder and
#   cpu   builds there against trixie's libtorch-dev 2.6 and runs the whole test suite (scripts/test.sh, no fuzzing);
#   sid   the same against sid's libtorch-dev (newer than the GPU machines' PyTorch, 2.11 there in 2026-11), so API
#         drift shows here before a GPU session spends its minutes on a build that fails; then compiles the CUDA- and
#         NCCL-guarded files against the CUDA headers that sid's libtorch-dev ships (compile only, no link);
#   cuda  builds there against trixie's CUDA LibTorch 2.6 (contrib libtorch-cuda-dev, with nvidia-cuda-toolkit 12.4
#         from non-free, libnccl-dev and libgloo-cuda-dev): every target compiles and links, CUDA- and NCCL-guarded code
#         included. Nothing runs (no GPU here, no
#         cuDNN), so the tests are discovered at ctest time rather than after the build.
#   jammy the CUDA image's build step (Dockerfile: `scripts/setup-pytorch.sh --no-tests --bundle`) on the distribution
#         of its base image, the PyTorch CUDA devel image (Ubuntu 22.04): the packages it installs there, CMake 3.22,
#         g++ 11 and Ubuntu's yaml-cpp, spdlog, fmt, CLI11, protobuf and libjpeg-turbo build every program and make the
#         bundle. No PyTorch wheel can be downloaded here, so the LibTorch is trixie's 2.6 (headers, CMake files and
#         libraries unpacked, named by a stand-in for the image's python); it needs a newer glibc than Ubuntu's, so the
#         programs link with --allow-shlib-undefined and nothing runs.
#   bash scripts/check_libtorch2.sh [cpu|cuda|sid|jammy|all]   (default all = cpu, cuda, sid, jammy; needs root; the
#                                                         first trixie run took 18 min and its chroot holds 12 GiB)
# Environment: ROOT (the trixie chroot folder, default /var/tmp/gan-trixie), SID_ROOT (default /var/tmp/gan-sid),
#   JAMMY_ROOT (default /var/tmp/gan-jammy); all are kept between runs, so a rerun only rebuilds. MIRROR (default
#   http://deb.debian.org/debian), UBUNTU_MIRROR (default http://archive.ubuntu.com/ubuntu).
# Debian does not ship cuDNN (its nvidia-cudnn package downloads it from NVIDIA at install time), so the cuda check
# installs an empty stand-in for that package and links with --allow-shlib-undefined: the symbols that libtorch_cuda
# takes from cuDNN stay unresolved, which only matters at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
[[ "$what" =~ ^(cpu|cuda|sid|jammy|all)$ ]] || { echo "usage: $0 [cpu|cuda|sid|jammy|all]" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "check_libtorch2: needs root (debootstrap, chroot, mounts)" >&2; exit 2; }
mirror=${MIRROR:-http://deb.debian.org/debian}
ubuntu_mirror=${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT

# A chroot of Debian $1 in $2 with /proc, /dev and /sys mounted and the working tree (tracked and untracked files that
# git does not ignore, as they are now) in $2/work/gan; its build folders are kept, so a rerun only rebuilds.
# Ubuntu's suites come from Ubuntu's mirror (main and universe); Debian has no Ubuntu keyring package, so that
# bootstrap is not signature-checked (apt inside the chroot then checks with the keyring it installed).
prepare_root() {
  local suite=$1 root=$2 args=(--variant=minbase --components=main,contrib,non-free) from=$mirror
  [[ $suite == jammy ]] && args=(--variant=minbase --components=main,universe --no-check-gpg) from=$ubuntu_mirror
  if [[ ! -x "$root/usr/bin/apt-get" ]]; then
    command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
    echo "check_libtorch2: debootstrap $suite into $root"
    debootstrap "${args[@]}" "$suite" "$root" "$from" >"$root.debootstrap.log" 2>&1 ||
      { tail -20 "$root.debootstrap.log" >&2; exit 1; }
  fi
  for m in proc dev dev/pts sys; do
    mountpoint -q "$root/$m" && continue
    if [[ $m == proc ]]; then mount -t proc proc "$root/proc"; else mount --bind "/$m" "$root/$m"; fi
    mounted=("$root/$m" "${mounted[@]}")
  done
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  # sid's Release file is valid for a week only; a mirror that lags behind (as the one reachable here) serves an
  # expired one, which apt refuses by default.
  echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99gan-no-valid-until"
  rm -rf "$root/work/gan.new" && mkdir -p "$root/work/gan.new"
  git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$root/work/gan.new"
  mkdir -p "$root/work/gan"
  find "$root/work/gan" -mindepth 1 -maxdepth 1 ! -name 'build-*' -exec rm -rf {} +
  cp -a "$root/work/gan.new/." "$root/work/gan/" && rm -rf "$root/work/gan.new"
}
# A clean environment, except the machine's OpenBLAS settings (a VM may preset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
# because the kernel OpenBLAS picks by itself misbehaves there; the chroot must run as the machine does).
in_chroot() {
  local blas_env=()
  while IFS= read -r v; do blas_env+=("$v"); done < <(env | grep -E '^OPENBLAS_[A-Z0-9_]+=' || true)
  chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "${blas_env[@]}" bash -c "$2"
}

root=${ROOT:-/var/tmp/gan-trixie}
in_root() { in_chroot "$root" "$1"; }
[[ $what == sid || $what == jammy ]] || prepare_root trixie "$root"

status=0
if [[ $what == cpu || $what == all ]]; then
  echo "check_libtorch2: cpu: build against trixie's libtorch-dev and run the tests"
  if in_root "dpkg -s libtorch-cuda-2.6 >/dev/null 2>&1"; then  # left by the cuda check: TorchConfig would find it
    in_root "apt-get purge -y -qq libtorch-cuda-dev libtorch-cuda-2.6 >/dev/null"
    rm -f "$root/work/gan/build-cpu/CMakeCache.txt"
  fi
  if in_root "cd /work/gan && FUZZ_SECONDS=0 BUILD_DIR=build-cpu bash scripts/test.sh" >"$root/cpu.log" 2>&1; then
    echo "check_libtorch2: cpu: $(in_root "dpkg-query -W -f='libtorch-dev \${Version}' libtorch-dev"): $(grep -E 'tests passed|tests failed' "$root/cpu.log")"
  else
    status=1
    echo "check_libtorch2: cpu: FAILED (last lines of $root/cpu.log):" >&2
    tail -30 "$root/cpu.log" >&2
  fi
fi
if [[ $what == cuda || $what == all ]]; then
  echo "check_libtorch2: cuda: build against trixie's libtorch-cuda-dev (compile and link only)"
  if ! in_root "dpkg -s libtorch-cuda-dev >/dev/null 2>&1"; then
    # An empty stand-in for nvidia-cudnn, whose real install script downloads cuDNN from NVIDIA.
    mkdir -p "$root/work/nvidia-cudnn-stub/DEBIAN"
    printf '%s\n' "Package: nvidia-cudnn" "Version: 9.99.0-stub" "Architecture: amd64" "Maintainer: gan-trainer <none>" \
      "Description: stand-in: cuDNN is not installed" >"$root/work/nvidia-cudnn-stub/DEBIAN/control"
    in_root "dpkg-deb --build /work/nvidia-cudnn-stub /work/nvidia-cudnn-stub.deb >/dev/null"
    in_root "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get purge -y -qq libtorch-dev >/dev/null 2>&1;
             apt-get install -y -qq --no-install-recommends /work/nvidia-cudnn-stub.deb libtorch-cuda-dev nvidia-cuda-toolkit \
               libgloo-cuda-dev libnccl-dev \
               cmake g++ make libcli11-dev libspdlog-dev libyaml-cpp-dev libstb-dev zlib1g-dev libturbojpeg0-dev libgtest-dev dataset-fashion-mnist \
               libprotobuf-dev protobuf-compiler" \
      >"$root/cuda-install.log" 2>&1 || { tail -20 "$root/cuda-install.log" >&2; exit 1; }
  fi
  in_root "dpkg -s protobuf-compiler libturbojpeg0-dev >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive;
           apt-get update -qq && apt-get install -y -qq --no-install-recommends libprotobuf-dev protobuf-compiler \
           libturbojpeg0-dev >/dev/null; }"
  cmake_dir=$(in_root "dirname \$(dpkg -L libtorch-cuda-dev | grep '/TorchConfig.cmake\$')")
  if in_root "cd /work/gan && cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DGAN_BUILD_TESTS=ON \
                -DCMAKE_PREFIX_PATH=$cmake_dir -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined \
                -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST &&
              cmake --build build-cuda -j \$(nproc)" >"$root/cuda.log" 2>&1; then
    echo "check_libtorch2: cuda: $(in_root "dpkg-query -W -f='libtorch-cuda-dev \${Version}, CUDA ' libtorch-cuda-dev; nvcc --version | grep -o 'release [0-9.]*'"): all targets built"
    grep -E "^-- (Found CUDAToolkit|USE_CUDNN)" "$root/cuda.log" | sed 's/^--/ /'
    in_root "ldd /work/gan/build-cuda/gan-train" | grep -q libtorch_cuda &&
      echo "  gan-train links libtorch_cuda, so a GPU machine gets the CUDA device"
    grep -q -- "-DUSE_C10D_NCCL" "$root/work/gan/build-cuda/CMakeFiles/gan.dir/flags.make" &&
      echo "  USE_C10D_NCCL is defined: the NCCL process group (dist.backend nccl) is compiled in"
  else
    status=1
    echo "check_libtorch2: cuda: FAILED (last lines of $root/cuda.log):" >&2
    tail -30 "$root/cuda.log" >&2
  fi
fi
if [[ $what == sid || $what == all ]]; then
  sid_root=${SID_ROOT:-/var/tmp/gan-sid}
  prepare_root sid "$sid_root"
  echo "check_libtorch2: sid: build against sid's libtorch-dev and run the tests"
  # scripts/test.sh installs what it needs (libtorch-dev among them) and runs the whole suite, as in CI.
  if in_chroot "$sid_root" "apt-get update -qq && cd /work/gan && FUZZ_SECONDS=0 BUILD_DIR=build-cpu bash scripts/test.sh" \
       >"$sid_root/cpu.log" 2>&1; then
    echo "check_libtorch2: sid: $(in_chroot "$sid_root" "dpkg-query -W -f='libtorch-dev \${Version}, g++ ' libtorch-dev; g++ -dumpfullversion"): $(grep -E 'tests passed|tests failed' "$sid_root/cpu.log")"
  else
    status=1
    echo "check_libtorch2: sid: FAILED (last lines of $sid_root/cpu.log):" >&2
    tail -30 "$sid_root/cpu.log" >&2
  fi
  # sid's CUDA LibTorch lags behind (contrib's libtorch-cuda-dev is 2.6), but its CPU libtorch-dev ships the CUDA
  # headers (ATen/cuda, c10/cuda, ProcessGroupNCCL.hpp): the CUDA- and NCCL-guarded files are compiled against them
  # (syntax only: nothing links) with the CUDA runtime's headers from nvidia-cuda-dev and libcu++-dev and nccl.h from
  # libnccl-dev, unpacked rather than installed (the packages hold 3 GB of libraries), plus a stand-in for the one
  # header a CUDA build of LibTorch generates.
  echo "check_libtorch2: sid: the CUDA- and NCCL-guarded files against sid's LibTorch headers (compile only)"
  if in_chroot "$sid_root" '
      set -e
      inc=/opt/cuda-include
      if [[ ! -f $inc/nccl.h || ! -f $inc/nv/target ]]; then
        rm -rf /tmp/cuda-debs $inc && mkdir -p /tmp/cuda-debs/x && cd /tmp/cuda-debs
        apt-get download -qq -o APT::Sandbox::User=root nvidia-cuda-dev libcu++-dev libnccl-dev
        for d in *.deb; do dpkg-deb --fsys-tarfile "$d" | tar -x -C x --wildcards "./usr/include/*"; done
        mv x/usr/include $inc && cd / && rm -rf /tmp/cuda-debs
        mkdir -p $inc/c10/cuda/impl
        echo "#define C10_CUDA_BUILD_SHARED_LIBS" >$inc/c10/cuda/impl/cuda_cmake_macros.h
      fi
      cd /work/gan
      flags=$(sed -n "s/^CXX_\(DEFINES\|INCLUDES\|FLAGS\) = //p" build-cpu/CMakeFiles/gan.dir/flags.make | tr "\n" " ")
      rc=0
      for f in src/train/cuda_graph.cpp src/apps/bench.cpp src/train/distributed.cpp src/train/step.cpp; do
        if g++ $flags -fsyntax-only -isystem $inc -DUSE_CUDA -DUSE_C10D_NCCL -DGAN_WITH_CUDA -DGAN_WITH_GLOO "$f" \
             2>/tmp/cuda-syntax.txt; then echo "  compiles: $f"
        else rc=1; echo "  FAILED: $f"; grep -E "error" /tmp/cuda-syntax.txt | head -10; fi
      done
      exit $rc' >"$sid_root/cuda-syntax.log" 2>&1; then
    cat "$sid_root/cuda-syntax.log"
  else
    status=1
    echo "check_libtorch2: sid: the CUDA-guarded files FAILED to compile ($sid_root/cuda-syntax.log):" >&2
    tail -30 "$sid_root/cuda-syntax.log" >&2
  fi
fi
if [[ $what == jammy || $what == all ]]; then
  jammy_root=${JAMMY_ROOT:-/var/tmp/gan-jammy}
  prepare_root jammy "$jammy_root"
  echo "check_libtorch2: jammy: the CUDA image's build step on Ubuntu 22.04 (against trixie's LibTorch 2.6; link only)"
  torch_dir=$jammy_root/opt/libtorch-2.6
  if [[ ! -f $torch_dir/usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake ]]; then
    rm -rf "$torch_dir" "$jammy_root/opt/torch-debs" && mkdir -p "$torch_dir" "$jammy_root/opt/torch-debs"
    curl -fsS "$mirror/dists/trixie/main/binary-amd64/Packages.xz" | xz -d |
      awk '/^Package: (libtorch-dev|libtorch2\.6)$/ {p = 1} p && /^Filename:/ {print $2; p = 0}' |
      while read -r f; do curl -fsS -o "$jammy_root/opt/torch-debs/$(basename "$f")" "$mirror/$f"; done
    for d in "$jammy_root"/opt/torch-debs/*.deb; do dpkg-deb -x "$d" "$torch_dir"; done
    rm -rf "$jammy_root/opt/torch-debs"
  fi
  # What setup-pytorch.sh asks of the image's python: version, torch.utils.cmake_prefix_path, C++11 ABI, CUDA.
  printf '%s\n' '#!/bin/sh' 'echo 2.6.0 /opt/libtorch-2.6/usr/lib/x86_64-linux-gnu/cmake 1 none' >"$torch_dir/python"
  chmod +x "$torch_dir/python"
  rm -rf "$jammy_root/work/gan/build-jammy/CMakeCache.txt" "$jammy_root/tmp/gan-dist"
  # Debian keeps the libraries in lib/x86_64-linux-gnu, where its TorchConfig.cmake finds them only on default paths.
  if in_chroot "$jammy_root" "apt-get update -qq && cd /work/gan && PYTHON=/opt/libtorch-2.6/python \
        CMAKE_LIBRARY_PATH=/opt/libtorch-2.6/usr/lib/x86_64-linux-gnu LDFLAGS=-Wl,--allow-shlib-undefined \
        BUILD_DIR=build-jammy bash scripts/setup-pytorch.sh --no-tests --bundle /tmp/gan-dist" \
        >"$jammy_root/build.log" 2>&1; then
    echo "check_libtorch2: jammy: $(in_chroot "$jammy_root" ". /etc/os-release; echo \$PRETTY_NAME; g++ -dumpfullversion;
          cmake --version | head -1; dpkg-query -W -f='\${Package} \${Version}, ' libspdlog-dev libfmt-dev \
          libyaml-cpp-dev libcli11-dev libprotobuf-dev libturbojpeg0-dev" | tr '\n' ' ')"
    grep -E "^setup-pytorch: (installing|built|bundled)" "$jammy_root/build.log" | sed 's/^/  /'
    # The runtime stage has none of these: each must be in the bundle.
    for lib in libyaml-cpp libspdlog libfmt libstb libturbojpeg libprotobuf; do
      compgen -G "$jammy_root/tmp/gan-dist/lib/$lib.so*" >/dev/null ||
        { status=1; echo "check_libtorch2: jammy: the bundle lacks $lib" >&2; }
    done
  else
    status=1
    echo "check_libtorch2: jammy: FAILED (last lines of $jammy_root/build.log):" >&2
    tail -30 "$jammy_root/build.log" >&2
  fi
fi
exit $status

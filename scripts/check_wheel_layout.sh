#!/usr/bin/env bash
# Builds against a stand-in for a PyTorch wheel's layout (the CUDA image and scripts/gpu-check.sh build against one),
# made here from Debian's LibTorch: its include folder carries its own gloo (which the build must use: the LibTorch was
# built with it) and its own fmt (which it must not: spdlog links the distribution's fmt), and another gloo lies on
# CPATH, as scripts/gpu-check.sh's .deps/ does. The wrong copies are headers that stop the compiler with #error.
# Checks that the configure step says so, that the two files that meet fmt and gloo compile, and, as a control, that
# the stand-in's fmt is reached when the build's fmt link is left out.
#   bash scripts/check_wheel_layout.sh [WORK_DIR]   (default build-wheel-layout; needs Debian's libtorch-dev and
#                                                     libgloo-dev; exit 77, skipped, where they are missing)
# ctest runs it as WheelLayout.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(realpath -m "${1:-build-wheel-layout}")
dpkg -L libtorch-dev >/dev/null 2>&1 && [[ -f /usr/include/gloo/algorithm.h ]] ||
  { echo "check_wheel_layout: skipped: needs Debian's libtorch-dev and libgloo-dev"; exit 77; }
fail() { echo "check_wheel_layout: FAILED: $*" >&2; exit 1; }

rm -rf "$work" && mkdir -p "$work/wheel/include/fmt" "$work/wheel/lib" "$work/cpath/gloo"
wheel=$work/wheel
dpkg -L libtorch-dev | grep -E '^/usr/include/[^/]+$' | while read -r d; do ln -s "$d" "$wheel/include/"; done
ln -s /usr/include/gloo "$wheel/include/gloo"  # the LibTorch's own gloo: the real one
for f in /usr/include/fmt/*.h; do echo '#error "the LibTorch copy of fmt was used"' >"$wheel/include/fmt/${f##*/}"; done
for f in /usr/include/gloo/*.h; do echo '#error "the gloo on CPATH was used"' >"$work/cpath/gloo/${f##*/}"; done
for f in /usr/lib/x86_64-linux-gnu/lib{torch,torch_cpu,c10,shm}.so*; do ln -s "$f" "$wheel/lib/"; done

# TorchConfig.cmake takes its prefix from TORCH_INSTALL_PREFIX; the rest of the LibTorch stays Debian's.
export TORCH_INSTALL_PREFIX=$wheel CPATH=$work/cpath
cmake -S "$src" -B "$work/build" -DGAN_BUILD_TESTS=OFF -DGAN_PCH=OFF >"$work/configure.log" 2>&1 ||
  { tail -20 "$work/configure.log" >&2; fail "configure"; }
grep -q "^-- gloo headers: the LibTorch's own ($wheel/include/gloo)" "$work/configure.log" ||
  fail "the configure step did not take the LibTorch's gloo ($(grep -- '-- gloo' "$work/configure.log"))"
grep -q "^-- fmt headers: spdlog's (/usr/include/fmt), ahead of the LibTorch's ($wheel/include/fmt)" \
  "$work/configure.log" || fail "the configure step did not put spdlog's fmt first"
cd "$work/build"
for f in io/progress train/distributed; do
  make -s -f CMakeFiles/gan.dir/build.make "CMakeFiles/gan.dir/src/$f.cpp.o" >"$work/${f##*/}.log" 2>&1 ||
    { grep -m3 error "$work/${f##*/}.log" >&2; fail "src/$f.cpp did not compile"; }
done
flags=$(sed -n 's/^CXX_\(DEFINES\|INCLUDES\|FLAGS\) = //p' CMakeFiles/gan.dir/flags.make | tr '\n' ' ')
control=${flags//-I$work\/build\/fmt-include/}
[[ "$control" != "$flags" ]] || fail "no fmt link among the compile flags"
# shellcheck disable=SC2086  # the flags are words
if g++ $control -fsyntax-only "$src/src/io/progress.cpp" 2>"$work/control.log"; then
  fail "the control compiled: the stand-in's fmt was not on the include path, so this check proves nothing"
fi
grep -q "the LibTorch copy of fmt was used" "$work/control.log" || fail "the control failed for another reason"
echo "check_wheel_layout: passed: gloo from the LibTorch, fmt from spdlog's; without the fmt link the LibTorch's fmt wins"

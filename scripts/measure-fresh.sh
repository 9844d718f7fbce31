#!/usr/bin/env bash
# Times README's two commands as a new user meets them: on a fresh Debian bookworm root (debootstrap minbase, nothing
# of this project installed), in a chroot, with the working tree (tracked and untracked files that git does not
# ignore) copied in. Each command gets its own copy of the same fresh root.
#   bash scripts/measure-fresh.sh [default|ci|both]   (default both; needs root: debootstrap, chroot, mounts)
#     default   bash scripts/train-default.sh: install + build, then the default run (configs/fashion-mnist.cfg)
#     ci        CI=true bash .ci/run (= scripts/test.sh): install + build with tests, ctest, 60 s of fuzzing
# Prints the phases' wall times (packages and cmake's configure, build, run or tests, fuzz), taken from when their first output line appeared,
# and the whole. Logs with a time on every line: ROOT.<what>.log.
# Environment: ROOT (default /var/tmp/gan-fresh: the pristine root is ROOT.pristine, kept for the next run; each
#   measurement runs in ROOT.<what>, made anew), MIRROR (default http://deb.debian.org/debian), and the machine's
#   OPENBLAS_* settings, which are passed on as CI's machine would have them. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-both}
[[ "$what" =~ ^(default|ci|both)$ ]] || { echo "usage: $0 [default|ci|both]" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "measure-fresh: needs root (debootstrap, chroot, mounts)" >&2; exit 2; }
root=${ROOT:-/var/tmp/gan-fresh}
mirror=${MIRROR:-http://deb.debian.org/debian}
mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT

if [[ ! -x "$root.pristine/usr/bin/apt-get" ]]; then
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
  echo "measure-fresh: debootstrap bookworm into $root.pristine"
  debootstrap --variant=minbase bookworm "$root.pristine" "$mirror" >"$root.pristine.log" 2>&1 ||
    { tail -20 "$root.pristine.log" >&2; exit 1; }
fi

# Every output line of $2 (run in the fresh root $1) with the seconds since the start in front.
run_timed() {
  local dir=$1 cmd=$2 log=$3
  rm -rf "$dir" && cp -a "$root.pristine" "$dir"
  for m in proc sys dev dev/shm dev/pts; do
    mkdir -p "$dir/$m"
    if [[ $m == proc ]]; then mount -t proc proc "$dir/proc"; else mount --bind "/$m" "$dir/$m"; fi
    mounted=("$dir/$m" "${mounted[@]}")
  done
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  mkdir -p "$dir/work/gan"
  git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$dir/work/gan"
  local blas_env=()
  while IFS= read -r v; do blas_env+=("$v"); done < <(env | grep -E '^OPENBLAS_[A-Z0-9_]+=' || true)
  local t0 rc=0
  t0=$(date +%s.%N)
  chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 CI=true "${blas_env[@]}" \
    bash -c "cd /work/gan && $cmd" 2>&1 | while IFS= read -r line; do
      printf '%7.1f %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$line"
    done >"$log" || rc=$?
  ((rc == 0)) || { echo "measure-fresh: '$cmd' failed (last lines of $log):" >&2; tail -20 "$log" >&2; exit 1; }
}
# The time of the first line of $1 matching the regex $2 (the whole run's end when $2 is "end").
at() { if [[ $2 == end ]]; then tail -1 "$1" | awk '{print $1}'; else grep -m1 -E "^ *[0-9.]+ ($2)" "$1" | awk '{print $1}'; fi; }
span() { awk -v a="$1" -v b="$2" 'BEGIN { s = b - a; printf "%d min %02d s", s / 60, s % 60 }'; }

command -v bc >/dev/null || { apt-get install -y -qq bc >/dev/null; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
grep -qw avx512f /proc/cpuinfo && cpu+=" with AVX-512" || { grep -qw avx2 /proc/cpuinfo && cpu+=" with AVX2"; }
echo "measure-fresh: $(nproc) CPUs ($cpu), $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes')"

if [[ $what == default || $what == both ]]; then
  log=$root.default.log
  run_timed "$root.default" "bash scripts/setup.sh --no-tests && echo 'measure-fresh: run' && build/gan-train --config configs/fashion-mnist.cfg" "$log"
  b=$(at "$log" '\[ *[0-9]+%\]|-- ')  # cmake's first line: the packages are in
  r=$(at "$log" 'measure-fresh: run')
  e=$(at "$log" end)
  echo "train-default.sh: packages + configure $(span 0 "$b"), build $(span "$b" "$r"), the default run $(span "$r" "$e"); in all $(span 0 "$e")"
  grep -E "done|FD|img/s" "$log" | tail -3 | sed 's/^/  /'
fi
if [[ $what == ci || $what == both ]]; then
  log=$root.ci.log
  run_timed "$root.ci" "bash .ci/run" "$log"
  b=$(at "$log" '\[ *[0-9]+%\]|-- ')
  t=$(at "$log" 'Test project')
  f=$(at "$log" 'fuzz: |INFO:')
  e=$(at "$log" end)
  echo ".ci/run: packages + configure $(span 0 "$b"), build $(span "$b" "$t"), ctest $(span "$t" "$f"), fuzz $(span "$f" "$e"); in all $(span 0 "$e")"
  grep -E "tests passed|tests failed|Total Test time" "$log" | sed 's/^/  /'
fi

#!/usr/bin/env bash
# Fuzzes the two parsers of untrusted input with libFuzzer + ASan + UBSan, one after the other:
#   config  the config loader (parse_config / apply_override / to_yaml round trip; tests/fuzz/config_fuzz.cpp)
#   pickle  the torch.save reader behind --init-from, gan-sample --checkpoint and --latents (src/io/pickle.cpp;
#           tests/fuzz/pickle_fuzz.cpp)
#   scripts/fuzz.sh [SECONDS] [LIBFUZZER_FLAGS...]   SECONDS per target, default 60; extra flags go to libFuzzer, e.g.
#   to keep going past known crashes: scripts/fuzz.sh 600 -fork=1 -ignore_crashes=1. FUZZ_TARGETS="pickle" runs one.
# Installs clang, its compiler-rt runtime (libFuzzer, sanitizers) and libyaml-cpp-dev when missing, builds
# build-fuzz/<target>_fuzz (only when a source changed), seeds a scratch corpus in build-fuzz/<target>/corpus from
# tests/fuzz/corpus/<target> (which is never written to; pickle's seeds come from tests/fuzz/pickle_seeds.py) and
# runs. Exits non-zero when libFuzzer reports a finding;
# each target's run ends with a one-line summary. Save a finding as tests/fuzz/corpus/<target>/crash-<name> so it
# stays a regression seed. Needs no torch: config.cpp depends only on errors.cpp and yaml-cpp, pickle.cpp on nothing.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS] [LIBFUZZER_FLAGS...]" >&2; exit 2; }
shift $(($# ? 1 : 0))
targets=(${FUZZ_TARGETS:-config pickle})

sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
updated=0
install_missing() {  # apt-get installs those of "$@" that are not installed yet (apt-get update only then)
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "fuzz: installing ${missing[*]}"
  ((updated)) || { $sudo apt-get update -qq; updated=1; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
install_missing clang libyaml-cpp-dev
# libFuzzer and the sanitizer runtimes are in libclang-rt-<N>-dev (only a Recommends of clang-<N> on bookworm,
# so --no-install-recommends leaves them out); N is clang's major version (14 on bookworm).
install_missing "libclang-rt-$(clang++ -dumpversion | cut -d. -f1)-dev"

# UBSan by default prints and carries on; halt so libFuzzer records the input. yaml-cpp is Debian's
# uninstrumented build: ASan still checks our code and every heap access through its malloc/new interceptors;
# no ODR or alloc-dealloc-mismatch false positives were seen from the mix, so ASan keeps its defaults.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

fuzz() {  # fuzz TARGET: build if needed, run for $seconds, print the summary; returns non-zero on a finding
  local target=$1 out=build-fuzz/$1 sources libs=()
  case $target in
    config) sources=(src/core/config.cpp src/core/errors.cpp tests/fuzz/config_fuzz.cpp); libs=(-lyaml-cpp) ;;
    pickle) sources=(src/io/pickle.cpp tests/fuzz/pickle_fuzz.cpp) ;;
    *) echo "fuzz: unknown target '$target' (config, pickle)" >&2; return 2 ;;
  esac
  local bin=build-fuzz/${target}_fuzz
  mkdir -p "$out/corpus" "$out/artifacts"
  if [[ ! -x "$bin" ]] || [[ -n "$(find "${sources[@]}" include/gan "$0" -newer "$bin" 2>/dev/null)" ]]; then
    echo "fuzz: building $bin"
    clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -I include "${sources[@]}" "${libs[@]}" \
      -o "$bin.tmp" || return 1
    mv "$bin.tmp" "$bin"
  fi
  # Scratch corpus: the seeds plus whatever earlier runs added (libFuzzer writes new inputs only here). The pickle
  # target's seeds are written by this machine's PyTorch (tests/fuzz/pickle_seeds.py); without one it starts empty.
  if [[ -d tests/fuzz/corpus/$target ]]; then cp tests/fuzz/corpus/"$target"/* "$out/corpus/"; fi
  if [[ $target == pickle ]] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    /usr/bin/python3 tests/fuzz/pickle_seeds.py "$out/corpus" || return 1
  fi
  local log=$out/fuzz.log start=$SECONDS status=0 took runs cov found where summary
  touch "$out/.run-start"
  "$bin" "$out/corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" "${flags[@]}" 2>&1 | tee "$log" || status=$?
  took=$((SECONDS - start))
  # Runs: the final stats, or with -fork=N (which prints no stats) the last "#RUNS: cov: ..." progress line.
  runs=$(sed -n -e 's/^stat::number_of_executed_units: *//p' -e 's/^#\([0-9]*\): cov: .*/\1/p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || true)
  # Findings: the artifacts (crash-*, timeout-*, oom-*, leak-*) this run wrote or rewrote (a known crash keeps its
  # name); with -fork=N -ignore_crashes=1 libFuzzer keeps going after a crash and may exit 0, so the exit status
  # alone is not enough.
  mapfile -t found < <(find "$out/artifacts" -type f -newer "$out/.run-start" | sort)
  summary="fuzz $target: ${runs:-?} runs in $took s${cov:+ ($cov)}"
  if ((${#found[@]})); then
    ((${#found[@]} <= 3)) && where="${found[*]}" || where="${found[0]} and $((${#found[@]} - 1)) more in $out/artifacts"
    echo "$summary, ${#found[@]} finding(s): $where"
    return $((status ? status : 1))
  elif ((status)); then
    echo "$summary, libFuzzer failed with exit status $status (no artifact; see $log)"
    return "$status"
  fi
  echo "$summary, no findings"
}

flags=("$@")
mkdir -p build-fuzz
result=0
summaries=()
for t in "${targets[@]}"; do
  fuzz "$t" | tee build-fuzz/.summary-"$t" || result=$?
  summaries+=("$(tail -1 build-fuzz/.summary-"$t")")
done
printf '%s\n' "${summaries[@]}"
exit "$result"

#!/usr/bin/env bash
# Data-parallel training on this machine: one process with all cores against --nproc-per-node workers with the cores
# shared out, on Fashion-MNIST (64x64 RGB, ngf = ndf = 64, batch 64: the DCGAN reference size; and 32x32 gray,
# batch 128), as img/s with the ratio to one process, the gradient bytes all-reduced per step and the time per step
# spent waiting for them after the backward pass (with and without overlapping them with it, and with small
# buckets); then the raw Gloo all-reduce of the same byte counts between idle processes (scripts/bench_allreduce.py).
#   bash scripts/bench_dist.sh              (~12 minutes on 2 cores)
# Environment: WORKERS (default 2), ROUNDS (times each row is run, keeping its best; default 2), STEPS64 (default
#   20), STEPS32 (default 60). Figures go to stdout; docs/SCALING.md records a run.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
bash scripts/setup.sh --no-tests >/dev/null
workers=${WORKERS:-2}
rounds=${ROUNDS:-2}
cores=$(nproc)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $cores cores, flags:$(grep -m1 -o -w -E 'avx512f|avx2' /proc/cpuinfo | tail -1 | sed 's/^/ /')"
# summary.json field of a run: img/s, bytes and wait per step.
field() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); x=d.get('distributed') or {}; print(d['img_per_s'] if sys.argv[2]=='ips' else x.get(sys.argv[2], 0))" "$1" "$2"; }

run() {  # name size channels batch steps nproc threads [--set ...]
  local name=$1 size=$2 ch=$3 batch=$4 steps=$5 nproc=$6 threads=$7; shift 7
  local launch=()
  ((nproc > 1)) && launch=(--nproc-per-node "$nproc")
  "$build/gan-train" "${launch[@]}" --out "$out" --name "$name" --steps "$steps" \
    --set data.source=fashion-mnist --set model.image_size="$size" --set model.channels="$ch" \
    --set model.ngf=64 --set model.ndf=64 --set train.batch_size="$batch" --set train.threads="$threads" \
    --set output.log_every=100000 --set output.metrics_every=100000 --set output.sample_every=100000 \
    --set output.checkpoint_every=100000 "$@" >"$out/$name.log" 2>&1 ||
    { echo "bench_dist: $name failed:" >&2; tail -5 "$out/$name.log" >&2; exit 1; }
}

printf '\n%-54s %8s %7s %10s %12s\n' "run (img/s: best of $rounds)" "img/s" "ratio" "MB/step" "wait ms/step"
for shape in "64 3 64 ${STEPS64:-20}" "32 1 128 ${STEPS32:-60}"; do
  read -r size ch batch steps <<<"$shape"
  declare -A best=() bytes=() wait=()
  rows=("1x$cores" "${workers}x$((cores / workers))" "${workers}x$((cores / workers)) no-overlap" "${workers}x$((cores / workers)) 1MB-buckets")
  for ((r = 0; r < rounds; ++r)); do  # alternate the rows: the machine's speed drifts
    for row in "${rows[@]}"; do
      name="s$size-r$r-${row// /_}"
      case "$row" in
        1x*) run "$name" "$size" "$ch" "$batch" "$steps" 1 "$cores" ;;
        *no-overlap) run "$name" "$size" "$ch" "$batch" "$steps" "$workers" $((cores / workers)) --set dist.overlap=false ;;
        *1MB-buckets) run "$name" "$size" "$ch" "$batch" "$steps" "$workers" $((cores / workers)) --set dist.bucket_mb=1 ;;
        *) run "$name" "$size" "$ch" "$batch" "$steps" "$workers" $((cores / workers)) ;;
      esac
      s="$out/$name/summary.json"
      ips=$(field "$s" ips)
      if [[ -z "${best[$row]:-}" ]] || awk -v a="$ips" -v b="${best[$row]}" 'BEGIN{exit !(a > b)}'; then
        best[$row]=$ips
        bytes[$row]=$(field "$s" allreduce_bytes_per_step)
        wait[$row]=$(field "$s" allreduce_wait_ms_per_step)
      fi
    done
  done
  grep -h -m1 "BLAS:" "$out/s$size-r0-1x$cores.log" | sed 's/^.*info /  /'
  for row in "${rows[@]}"; do
    printf '%-54s %8.1f %7.2f %10.2f %12.1f\n' "${size}x$size ch$ch b$batch: processes x threads $row" \
      "${best[$row]}" "$(awk -v a="${best[$row]}" -v b="${best["1x$cores"]}" 'BEGIN{print a / b}')" \
      "$(awk -v b="${bytes[$row]}" 'BEGIN{print b / 1e6}')" "${wait[$row]}"
  done
  unset best bytes wait
done

echo
echo "raw Gloo all-reduce between $workers idle processes (median of 10):"
/usr/bin/python3 scripts/bench_allreduce.py --world "$workers" --mb 25.37 6.91 58.93 | sed 's/^/  /'

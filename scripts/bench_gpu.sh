#!/usr/bin/env bash
# GPU speed table: the trainer's step against the Python eager reference (scripts/bench_reference.py) on the same GPU,
# at 64x64 RGB batch 128 and 128x128 RGB batch 64 (ngf=ndf=64), ours with its CUDA defaults (channels_last, cuDNN
# benchmark, the step replayed as a CUDA graph) in float32, the same without the graph (eager) and with bf16 autocast
# (against the reference under torch.autocast bf16: the last ratio);
# then peak device memory for batch 64/128/256 at 64x64.
#   BUILD_DIR=build-cuda PYTHON=python3 bash scripts/bench_gpu.sh
# Needs a build against a CUDA LibTorch, e.g. the PyTorch the reference runs with:
#   GAN_TORCH_DIR=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') BUILD_DIR=build-cuda bash scripts/setup.sh
# Environment: DEVICE (default cuda; cpu runs the same table on the CPU), STEPS (timed steps, default 20),
#   WARMUP (default 5), ROUNDS (alternations of the two sides, each keeping its best; default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
steps=${STEPS:-20}
warmup=${WARMUP:-5}
rounds=${ROUNDS:-3}
[[ -x "$build/gan-bench" ]] || { echo "bench_gpu: no $build/gan-bench; build first (see the comment at the top)" >&2; exit 2; }
"$python" -c "import torch" 2>/dev/null || { echo "bench_gpu: $python cannot import torch; set PYTHON" >&2; exit 2; }
val() { awk -v k="$1" '$1 == k {print $2}'; }  # value of "key value" lines
ours() { "$build/gan-bench" step --device "$device" --channels-last auto "$@"; }
ref() { "$python" scripts/bench_reference.py --device "$device" "$@"; }
best() { awk -v a="$1" -v b="${2:-0}" 'BEGIN {print (b > a ? b : a)}'; }
# measure KEY CMD...: the value of KEY in CMD's output; a run that fails says so on stderr (its last line) and counts
# as 0 ("-" in the table), so one failing configuration does not cost the rest of the table.
measure() {
  local key=$1 out rc
  shift
  out=$("$@" 2>&1) && rc=0 || rc=$?
  if ((rc)) || [[ -z $(val "$key" <<<"$out") ]]; then
    echo "bench_gpu: $* failed (rc $rc): $(tail -1 <<<"$out")" >&2
    echo 0
  else
    val "$key" <<<"$out"
  fi
}

echo "device: $("$python" -c "import torch; d = torch.device('$device'); print(torch.cuda.get_device_name(d) if d.type == 'cuda' else 'cpu')"), torch $("$python" -c 'import torch; print(torch.__version__)')"
printf '%-34s %9s %9s %7s %11s %13s %11s %7s\n' "training step ($device)" "ref img/s" "img/s" "ratio" "eager img/s" \
  "ref bf16 img/s" "bf16 img/s" "ratio"
graph_state=""
row() {  # label, then model arguments
  local label=$1; shift
  local ri=0 oi=0 ei=0 bi=0 rbi=0 out
  for ((r = 0; r < rounds; ++r)); do
    ri=$(best "$ri" "$(measure ref.img_per_s ref --steps "$steps" --warmup "$warmup" "$@")")
    out=$(ours --steps "$steps" --warmup "$warmup" "$@" 2>&1) ||
      echo "bench_gpu: gan-bench step $* failed: $(tail -1 <<<"$out")" >&2
    oi=$(best "$oi" "$(val step.img_per_s <<<"$out")")
    if [[ $device == cuda* ]]; then
      graph_state="$label: $(grep '^step.cuda_graph ' <<<"$out" | cut -d' ' -f2-)"
      ei=$(best "$ei" "$(measure step.img_per_s ours --steps "$steps" --warmup "$warmup" --cuda-graphs off "$@")")
      bi=$(best "$bi" "$(measure step.img_per_s ours --steps "$steps" --warmup "$warmup" --amp bf16 "$@")")
      rbi=$(best "$rbi" "$(measure ref.img_per_s ref --steps "$steps" --warmup "$warmup" --amp bf16 "$@")")
    fi
  done
  awk -v l="$label" -v ri="$ri" -v oi="$oi" -v ei="$ei" -v bi="$bi" -v rbi="$rbi" '
    function f(x) { return x > 0 ? sprintf("%.1f", x) : "-" }
    function q(a, b) { return a > 0 && b > 0 ? sprintf("%.2fx", a / b) : "-" }
    BEGIN { printf "%-34s %9s %9s %7s %11s %13s %11s %7s\n", l, f(ri), f(oi), q(oi, ri), f(ei), f(rbi), f(bi), q(bi, rbi) }'
  [[ -z $graph_state ]] || echo "  CUDA graph: $graph_state"
}
row "64x64 RGB ngf=ndf=64 batch 128" --image-size 64 --channels 3 --batch 128
row "128x128 RGB ngf=ndf=64 batch 64" --image-size 128 --channels 3 --batch 64
echo
key=step.peak_device_mib; rkey=ref.peak_device_mib
[[ $device == cuda* ]] || { key=step.peak_rss_mib; rkey=ref.peak_rss_mib; }
printf '%-28s %12s %12s\n' "peak memory, 64x64 RGB" "ref MiB" "ours MiB"
mem() { local v; v=$(measure "$@"); [[ $v == 0 ]] && v=-; echo "$v"; }
for b in 64 128 256; do
  printf '%-28s %12s %12s\n' "batch $b ($key)" "$(mem "$rkey" ref --image-size 64 --batch "$b" --steps 2 --warmup 1)" \
    "$(mem "$key" ours --image-size 64 --batch "$b" --steps 2 --warmup 1)"
done

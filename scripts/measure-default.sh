#!/usr/bin/env bash
# The shipped configs/fashion-mnist.cfg against the previous default (the same config with BASE's overrides) on
# Fashion-MNIST cut to N images (data.max_images; 0 = all 60,000), both trained at the same time with one thread each
# for the same wall time, then scored with gan-eval (5,000 samples, latent seed 0) against the full training set with
# its cached classifier (README "Training quality", small data).
#   bash scripts/measure-default.sh           N = 1000, 5000 and all, 6 minutes each (~25 minutes on 2 cores)
# Environment: SIZES (default "1000 5000 0"), MINUTES (default 6), BASE (the first run's overrides; default
#   "train.r1_gamma=0": the default before R1 was added to it), VARIANT (the second run's overrides; default none: the
#   config as shipped), LABELS (the two runs' names in the table), OUT (default runs/measure-default).
# scripts/measure-augment.sh runs this with other overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
out=${OUT:-runs/measure-default}
minutes=${MINUTES:-6}
base=(${BASE-train.r1_gamma=0})
variant=(${VARIANT-})
labels=(${LABELS:-previous default})
bash scripts/setup.sh --no-tests >/dev/null
mkdir -p "$out"
train() {  # name, size, extra --set
  "$build/gan-train" -q --config configs/fashion-mnist.cfg --out "$out" --name "$1" --set data.max_images="$2" \
    --set train.epochs=1000000 --set train.max_time="${minutes}m" --set train.threads=1 --set data.workers=1 \
    --set eval.every=0 --set output.checkpoint_every=500 "${@:3}" || [[ $? -eq 75 ]]  # 75: reached train.max_time
}
score() {  # name -> "steps FD KID precision recall"
  local ckpt="$out/$1/checkpoints/latest.pt"
  "$build/gan-eval" --checkpoint "$ckpt" --samples 5000 --set data.max_images=0 --json "$out/$1.eval.json" >/dev/null
  python3 - "$out/$1.eval.json" "$out/$1/summary.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
print(s["steps"], "%.3f %.4f %.3f %.3f" % (e["fd"], e["kid"], e["precision"], e["recall"]))
PY
}
base_sets=() variant_sets=()
for kv in "${base[@]}"; do base_sets+=(--set "$kv"); done
for kv in "${variant[@]}"; do variant_sets+=(--set "$kv"); done
echo "| images | run | steps | FD | KID | precision | recall |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for n in ${SIZES:-1000 5000 0}; do
  train "${labels[0]}-$n" "$n" "${base_sets[@]}" &
  a=$!
  train "${labels[1]}-$n" "$n" "${variant_sets[@]}" &
  b=$!
  wait $a; wait $b
  for k in 0 1; do
    read -r steps fd kid p r < <(score "${labels[$k]}-$n")
    sets=$([[ $k == 0 ]] && echo "${base[*]}" || echo "${variant[*]}")
    echo "| $([[ $n == 0 ]] && echo all || echo "$n") | ${labels[$k]}${sets:+ ($sets)} | $steps | $fd | $kid | $p | $r |"
  done
done

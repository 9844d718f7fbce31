#!/usr/bin/env bash
# Small data: configs/fashion-mnist.cfg without augmentation (train.augment off) against the same with ADA
# (train.augment ada) on Fashion-MNIST cut to N images (data.max_images), trained at the same time with one thread
# each for the same wall time, then scored with gan-eval (5,000 samples, latent seed 0) against the full training
# set with its cached classifier.
#   bash scripts/measure-augment.sh                 N = 1000 and 5000, 6 minutes each (~15 minutes on 2 cores)
# Environment: SIZES (default "1000 5000"), MINUTES (default 6), OUT (default runs/measure-augment).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
out=${OUT:-runs/measure-augment}
minutes=${MINUTES:-6}
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
echo "| images | run | steps | FD | KID | precision | recall |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for n in ${SIZES:-1000 5000}; do
  train "off-$n" "$n" --set train.augment=off &
  a=$!
  train "ada-$n" "$n" --set train.augment=ada &
  b=$!
  wait $a; wait $b
  for run in off ada; do
    read -r steps fd kid p r < <(score "$run-$n")
    echo "| $n | $([[ $run == off ]] && echo "augment off" || echo "ADA") | $steps | $fd | $kid | $p | $r |"
  done
done

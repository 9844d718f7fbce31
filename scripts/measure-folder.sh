#!/usr/bin/env bash
# A real RGB folder: configs/folder-64.cfg without augmentation and with DiffAugment (color,translation,cutout on
# every image D sees), trained at the same time with one thread each for the same wall time, then scored with gan-eval (5,000 samples, latent seed 0; the folder's class sub-folders train
# gan-eval's classifier, cached like the Fashion-MNIST one).
#   bash scripts/measure-folder.sh DIR          e.g. data/emoji/by-category from scripts/emoji-folder.sh: the 64x64
#                                               icons of the npm package emoji-datasource-google, one sub-folder per
#                                               emoji.json category (README "Training quality")
# Environment: MINUTES (default 30), OUT (default runs/measure-folder), EXTRA (more --set arguments for both runs),
#   VARIANT (the second run's --set arguments; default "--set train.augment=diffaug").
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -eq 1 && -d $1 ]] || { echo "usage: bash scripts/measure-folder.sh IMAGE_FOLDER" >&2; exit 2; }
folder=$1
build=${BUILD_DIR:-build}
out=${OUT:-runs/measure-folder}
minutes=${MINUTES:-30}
bash scripts/setup.sh --no-tests >/dev/null
mkdir -p "$out"
# The folder's cache first, once (both runs read it).
"$build/gan-data" prepare --config configs/folder-64.cfg --folder "$folder" >/dev/null
train() {  # name, extra --set
  # shellcheck disable=SC2086
  "$build/gan-train" -q --config configs/folder-64.cfg --set data.path="$folder" --out "$out" --name "$1" \
    --set train.max_time="${minutes}m" --set train.threads=1 --set data.workers=1 ${EXTRA:-} "${@:2}" \
    || [[ $? -eq 75 ]]  # 75: reached train.max_time
}
train off --set train.augment=off &
a=$!
# shellcheck disable=SC2086
train aug ${VARIANT:---set train.augment=diffaug} &
b=$!
wait $a; wait $b
echo "| run | steps | kimg | FD | KID | precision | recall | classes covered |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for run in off aug; do
  "$build/gan-eval" --checkpoint "$out/$run" --samples 5000 --json "$out/$run.eval.json" >/dev/null
  python3 - "$out/$run.eval.json" "$out/$run/summary.json" "$run" <<'PY'
import json, sys
e = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
print("| %s | %d | %.0f | %.3f | %.4f | %.3f | %.3f | %d/%d |" % (sys.argv[3], s["steps"], s["steps"] * 64 / 1000,
      e["fd"], e["kid"], e["precision"], e["recall"], e["classes_covered"], len(e["class_hist"])))
PY
done

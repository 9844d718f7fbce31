#!/usr/bin/env bash
# Speed table: the trainer's CPU training step against the Python reference (scripts/bench_reference.py, Debian's
# python3-torch: the same libtorch), each as img/s, ratio and fraction of this machine's measured convolution peak;
# our step by option (G's and D's convolution forms); peak memory per batch size; the shipped folder and CelebA
# configs in gan-train against glibc's kept heap (the allocator with the trainer's whole allocation pattern); step time
# per image size; the transposed-convolution forms per layer; data loading.
#   bash scripts/bench.sh                 everything (~15 minutes on 2 cores)
# Environment: THREADS (default: all cores), STEPS (timed steps per run, default 8), ROUNDS (times the two sides
#   alternate in the speed table, each keeping its best; default 3),
#   BENCH_FOLDER=DIR  time decoding that image folder and streaming its cache instead of a synthetic cache
#   (gan-data bench); decoding CelebA-sized JPEGs is always measured on generated ones (gan-data bench --photos).
# Both sides run with the same threads and the same OpenBLAS kernel (gan-bench blas prints the one it uses).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
bash scripts/setup.sh --no-tests >/dev/null
cmake --build "$build" -j "$(nproc)" --target gan-bench gan-data gan-train >/dev/null
# python3-torch for the reference; time (/usr/bin/time) for the gan-train rows' max RSS
missing=()
[[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c "import torch" 2>/dev/null || missing+=(python3-torch)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
  echo "bench: installing ${missing[*]}"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
threads=${THREADS:-$(nproc)}
steps=${STEPS:-8}
rounds=${ROUNDS:-3}
bench="$build/gan-bench"
core=$("$bench" blas)
[[ -n "$core" ]] && export OPENBLAS_CORETYPE=$core
val() { awk -v k="$1" '$1 == k {print $2}'; }  # value of "key value" lines
ours() { "$bench" step --threads "$threads" "$@"; }  # callers give --steps
ref() { /usr/bin/python3 scripts/bench_reference.py --threads "$threads" "$@"; }

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, threads $threads, OPENBLAS_CORETYPE=${core:-<OpenBLAS default>}"
peak=$("$bench" peak --threads "$threads")
conv_peak=$(val peak.conv_gflop_per_s <<<"$peak")
echo "peak: GEMM $(val peak.gemm_gflop_per_s <<<"$peak") GFLOP/s, convolution $conv_peak GFLOP/s"
echo
printf '%-34s %9s %9s %7s %9s %9s\n' "training step (CPU)" "ref img/s" "img/s" "ratio" "ref %pk" "ours %pk"
row() {  # label, then model arguments; OURS_ONLY / REF_ONLY: arguments for one side alone
  local label=$1; shift
  local o ri=0 oi=0 gf x
  for ((r = 0; r < rounds; ++r)); do  # alternate the two sides and keep each side's best: the machine's speed drifts
    # shellcheck disable=SC2086
    x=$(ref --steps "$steps" "$@" ${REF_ONLY:-} | val ref.img_per_s)
    ri=$(awk -v a="$ri" -v b="$x" 'BEGIN {print (b > a ? b : a)}')
    # shellcheck disable=SC2086
    o=$(ours --steps "$steps" "$@" ${OURS_ONLY:-})
    x=$(val step.img_per_s <<<"$o"); oi=$(awk -v a="$oi" -v b="$x" 'BEGIN {print (b > a ? b : a)}')
  done
  gf=$(val step.gflop_per_image <<<"$o")
  awk -v l="$label" -v ri="$ri" -v oi="$oi" -v gf="$gf" -v pk="$conv_peak" 'BEGIN {
    printf "%-34s %9.1f %9.1f %6.2fx %8.0f%% %8.0f%%\n", l, ri, oi, oi / ri, 100 * ri * gf / pk, 100 * oi * gf / pk }'
}
row "64x64 RGB ngf=ndf=64 batch 64" --image-size 64 --channels 3 --batch 64
row "32x32 gray ngf=ndf=64 batch 128" --image-size 32 --channels 1 --batch 128
row "128x128 RGB ngf=ndf=64 batch 64" --image-size 128 --channels 3 --batch 64
if [[ -n "$(grep -m1 -woE 'avx512_bf16|amx_bf16' /proc/cpuinfo)" ]]; then  # train.amp auto: bf16 through oneDNN
  OURS_ONLY="--amp bf16" row "64x64 RGB batch 64, ours bf16" --image-size 64 --channels 3 --batch 64
  OURS_ONLY="--amp bf16" row "32x32 gray batch 128, ours bf16" --image-size 32 --channels 1 --batch 128
  OURS_ONLY="--amp bf16" REF_ONLY="--amp bf16" row "64x64 RGB batch 64, both bf16" --image-size 64 --channels 3 \
    --batch 64
  OURS_ONLY="--amp bf16" REF_ONLY="--amp bf16" row "32x32 gray batch 128, both bf16" --image-size 32 --channels 1 \
    --batch 128
else
  echo "(no bf16 rows: this processor has no native bf16, AVX512-BF16 or AMX; train.amp auto keeps float32)"
fi
echo "(%pk: reference-step FLOPs per image x img/s / convolution peak; ours skips D's weight gradients in the G update;"
echo " the reference is float32 except in the 'both bf16' rows, where its forward passes run under torch.autocast"
echo " (bf16; torch 1.13 leaves ConvTranspose2d in float32); the bf16 rows' %pk is against the float32 peak)"
echo
echo "our step, by option (64x64 RGB, batch 64):"
for opt in "--upconv transposed --downconv direct" "--upconv auto --downconv direct" "--upconv auto --downconv auto" \
  "--upconv auto --downconv auto --channels-last on" "--upconv phase --downconv auto" "--upconv gemm --downconv auto" \
  "--upconv winograd --downconv auto"; do
  # shellcheck disable=SC2086
  printf '  %-40s %7.1f img/s\n' "$opt" "$(ours --steps "$steps" --image-size 64 --channels 3 --batch 64 $opt | val step.img_per_s)"
done
echo
echo "generator layers, forward+backward ms (64x64 RGB, batch 64; train.upconv auto measures the same at start-up):"
"$bench" layers --threads "$threads" --image-size 64 --channels 3 --batch 64 | grep '^layer' | sed 's/^/  /'
echo
echo "peak RSS and speed by batch (64x64 RGB, 4 steps after 2): ours with its caching CPU allocator, and with glibc's"
echo "malloc kept (GAN_KEEP_FREED_MEMORY=heap, the earlier setting) or as it is (GAN_KEEP_FREED_MEMORY=0):"
printf '  %-10s %9s %9s %9s %9s %11s %11s %11s %11s\n' "" "ref MiB" "ours MiB" "ref img/s" "img/s" "heap MiB" "heap img/s" \
  "glibc MiB" "glibc img/s"
for b in 64 128 256; do
  mem=(--image-size 64 --batch "$b" --steps 4 --warmup 2)
  r=$(ref "${mem[@]}"); o=$(ours "${mem[@]}")
  h=$(GAN_KEEP_FREED_MEMORY=heap ours "${mem[@]}"); g=$(GAN_KEEP_FREED_MEMORY=0 ours "${mem[@]}")
  printf '  %-10s %9s %9s %9.1f %9.1f %11s %11.1f %11s %11.1f\n' "batch $b" "$(val ref.peak_rss_mib <<<"$r")" \
    "$(val step.peak_rss_mib <<<"$o")" "$(val ref.img_per_s <<<"$r")" "$(val step.img_per_s <<<"$o")" \
    "$(val step.peak_rss_mib <<<"$h")" "$(val step.img_per_s <<<"$h")" "$(val step.peak_rss_mib <<<"$g")" \
    "$(val step.img_per_s <<<"$g")"
  grep '^step.cpu_blocks' <<<"$o" | sed 's/^step.cpu_blocks/             allocator:/'
done
echo
# gan-bench's step lacks gan-train's other allocations (the loader thread, EMA, health checks): these rows run the real
# trainer, so that an allocator that churns on a shipped config shows (it once ran the folder config at 40% speed).
# The second half of each run is past warm-up: its moves and time spent moving pages should stay near zero.
echo "gan-train on shipped configs, on 2,048 generated 64x64 images: ours against glibc's kept heap"
echo "(GAN_KEEP_FREED_MEMORY=heap), max RSS, and our allocator over the second half of the run:"
folder=$build/bench-folder
[[ -f $folder/02047.bmp ]] || /usr/bin/python3 - "$folder" <<'EOF'
import os, random, struct, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = random.Random(7)
for i in range(2048):  # 64x64 24-bit BMPs: a gradient and a disc or a square
    c0, c1 = [rng.randrange(256) for _ in range(3)], [rng.randrange(256) for _ in range(3)]
    cy, cx, r, disc = rng.randrange(12, 52), rng.randrange(12, 52), rng.randrange(6, 14), i % 3 > 0
    rows = []
    for y in range(63, -1, -1):  # bottom-up
        row = bytearray()
        for x in range(64):
            inside = (y - cy) ** 2 + (x - cx) ** 2 < r * r if disc else abs(y - cy) < r and abs(x - cx) < r
            px = c1 if inside else [min(255, c + (x if i % 2 else y)) for c in c0]
            row += bytes((px[2], px[1], px[0]))
        rows.append(bytes(row))
    pixels = b"".join(rows)
    header = b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, 64, 64, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    with open(f"{out}/{i:05d}.bmp", "wb") as f:
        f.write(header + info + pixels)
EOF
printf '  %-44s %9s %9s %6s %9s %9s %14s\n' "" "img/s" "heap" "ratio" "MiB" "heap MiB" "moves/step"
for spec in "folder-64.cfg 300" "celeba.cfg 60"; do
  read -r cfg steps <<<"$spec"
  fips=(); rss=()
  for mode in 1 heap; do
    rm -rf "$build/bench-runs"
    log=$(GAN_KEEP_FREED_MEMORY=$mode /usr/bin/time -f 'maxrss %M' "$build/gan-train" --config "configs/$cfg" \
      --set data.path="$folder" --steps "$steps" --set eval.every=0 --set train.augment=off \
      --set output.log_every=$((steps / 2)) \
      --set train.threads="$threads" --out "$build/bench-runs" --name bench -v 2>&1)
    fips+=("$(/usr/bin/python3 -c "import json; print(json.load(open('$build/bench-runs/bench/summary.json'))['img_per_s'])")")
    rss+=("$(awk '/^maxrss/ { printf "%.0f", $2 / 1024 }' <<<"$log")")
    [[ $mode == 1 ]] && alloc=$(grep -o 'CPU allocator at step .*' <<<"$log")
  done
  # moves and ms spent moving between the two allocator lines (steps/2 and steps), per step
  churn=$(awk -v n=$((steps - steps / 2)) '{ for (i = 1; i <= NF; ++i) { split($i, kv, "="); v[NR, kv[1]] = kv[2] } }
    END { printf "%.1f (%.1f ms)", (v[2, "moves"] - v[1, "moves"]) / n, (v[2, "moving_ms"] - v[1, "moving_ms"]) / n }' \
    <<<"$alloc")
  awk -v l="$cfg, $steps steps" -v o="${fips[0]}" -v h="${fips[1]}" -v r="${rss[0]}" -v hr="${rss[1]}" -v c="$churn" \
    'BEGIN { printf "  %-44s %9.1f %9.1f %5.2fx %9s %9s %14s\n", l, o, h, o / h, r, hr, c }'
  echo "    allocator at the end:$(tail -1 <<<"$alloc" | cut -d: -f2-)"
done
rm -rf "$build/bench-runs"
echo
# Augmentation: the folder config's model (ngf=ndf=32, float32) unaugmented, with DiffAugment and with ADA at p 0.5,
# alternated (best of the rounds); then ADA's ops alone, fused against the op-by-op definition, in one run.
echo "augmentation (train.augment), 64x64 RGB batch 64, ngf=ndf=32, float32:"
declare -A aug_best=()
for ((r = 0; r < rounds; ++r)); do
  for a in off diffaug ada; do
    x=$(ours --image-size 64 --batch 64 --ngf 32 --ndf 32 --steps "$steps" --augment "$a" | val step.img_per_s)
    aug_best[$a]=$(awk -v a="${aug_best[$a]:-0}" -v b="$x" 'BEGIN {print (b > a ? b : a)}')
  done
done
for a in off diffaug ada; do
  awk -v l="$a$([[ $a == ada ]] && echo ' p 0.5')" -v x="${aug_best[$a]}" -v o="${aug_best[off]}" \
    'BEGIN { printf "  %-20s %9.1f img/s %6.2fx unaugmented\n", l, x, x / o }'
done
"$bench" augment --threads "$threads" --image-size 64 --batch 64 --augment ada --augment-p 0.5 |
  grep -E '^augment\.(op_by_op|fused|speedup)' | sed 's/^/  /'
echo
printf '%-28s %12s %12s\n' "step time (RGB, batch 64)" "ms/step" "ms/image"
for s in 32 64 128; do
  ms=$(ours --image-size "$s" --batch 64 --steps 3 --warmup 1 | val step.ms)
  awk -v s="$s" -v ms="$ms" 'BEGIN { printf "%-28s %12.0f %12.2f\n", s "x" s, ms, ms / 64 }'
done
echo
echo "data loading (gan-data bench):"
echo "  decoding 3,000 photo-like 178x218 JPEGs to 64x64 RGB through the loader, libjpeg-turbo vs stb_image:"
"$build/gan-data" bench --photos 3000 2>/dev/null | grep -E '^data\.(photo_file|decode)' | sed 's/^/    /' ||
  echo "    (gan-data bench --photos failed)"
args=(--synthetic 20000)
[[ -n "${BENCH_FOLDER:-}" ]] && args=(--folder "$BENCH_FOLDER")
echo "  ${args[*]}:"
"$build/gan-data" bench "${args[@]}" 2>/dev/null | grep '^data\.' | sed 's/^/    /' || echo "    (gan-data bench failed)"

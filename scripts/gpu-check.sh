#!/usr/bin/env bash
# The one prepared GPU check: on a machine with a CUDA PyTorch 2.x (and no package registry, like the lent GPU
# machines), build the trainer against that PyTorch, run the test suite with the CUDA tests enabled, train 300 steps of
# 64x64 RGB on generated images, benchmark against the Python eager reference on the same GPU, and time gan-eval's FID
# Inception there; print one table and write it into docs/PERFORMANCE.md's GPU section (and $OUT/gpu-check.md when
# OUT is set).
#
#   bash scripts/gpu-check.sh --prepare   where Debian's packages can be downloaded (a development machine): fetch the
#                                         Debian packages that a PyTorch image lacks (yaml-cpp, spdlog, fmt, CLI11,
#                                         stb, GoogleTest, protobuf and protoc, zlib's and gloo's headers) and unpack them into .deps/
#                                         (git-ignored, under 60 MiB), to travel with the call
#   bash scripts/gpu-check.sh             on the GPU machine, in the repository (with .deps/): everything else
#   bash scripts/gpu-check.sh --device cpu --quick   the same steps on the CPU at small sizes (checks this script)
#
# Environment: PYTHON (default python3: the one with CUDA PyTorch), BUILD_DIR (default build-gpu), JOBS,
#   GPU_CHECK_BUDGET (seconds for the whole check, default 560: the device tool stops a call at 600), ROUNDS (of the
#   speed table, default 1), TEST_SHARDS.
set -euo pipefail
cd "$(dirname "$0")/.."
deps=.deps
device=cuda
quick=0
prepare=0
while (($#)); do
  case "$1" in
    --prepare) prepare=1 ;;
    --device) device=${2:?}; shift ;;
    --quick) quick=1 ;;
    *) echo "gpu-check: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done

if ((prepare)); then
  # Debian bookworm builds: C++11 ABI like PyTorch >= 2.7, glibc 2.36 (older than the GPU images'), x86-64.
  packages=(libyaml-cpp-dev libyaml-cpp0.7 libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libcli11-dev libstb-dev libstb0
            libturbojpeg0-dev libturbojpeg0
            libgtest-dev zlib1g-dev libgloo-dev libprotobuf-dev libprotobuf32 libprotobuf-lite32 protobuf-compiler
            libprotoc32)
  rm -rf "$deps" && mkdir -p "$deps/debs"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  (cd "$deps/debs" && apt-get download -qq -o APT::Sandbox::User=root "${packages[@]}")
  for d in "$deps"/debs/*.deb; do dpkg-deb -x "$d" "$deps"; done
  rm -rf "$deps/debs" "$deps/usr/share/doc" "$deps/usr/share/man" "$deps/usr/src"
  grep -qx '/.deps/' .git/info/exclude 2>/dev/null || grep -qx '/.deps/' .gitignore ||
    echo "gpu-check: note: .deps/ is not ignored by git here" >&2
  echo "gpu-check: prepared $deps: $(du -sh "$deps" | cut -f1) ($(ls "$deps/usr/include" | tr '\n' ' '))"
  exit 0
fi

python=${PYTHON:-python3}
build=${BUILD_DIR:-build-gpu}
t0=$(date +%s)
elapsed() { echo $(($(date +%s) - t0)); }
# The whole check keeps to a budget (the device tool stops a call at 600 s): each step runs under `timeout` with what
# is left, the steps that say most come first (build, the CUDA tests, training, the speed table) and the rest of the
# test suite (which CI runs on the CPU) last, in the time that remains; the table is rewritten after every step.
budget=${GPU_CHECK_BUDGET:-560}
left() { echo $((budget - $(elapsed))); }
# limited MOST RESERVE CMD...: runs CMD for at most MOST seconds and never past the budget less RESERVE seconds (kept
# for the steps after it); 124 when it was stopped.
limited() {
  local most=$1 reserve=$2
  shift 2
  local s=$(($(left) - reserve))
  ((s > most)) && s=$most
  ((s >= 5)) || { echo "gpu-check: no time left for: $*" >&2; return 124; }
  timeout --kill-after=5 "$s" "$@"
}
# With OUT set (the device tool's folder that comes back), each step's log is copied there as soon as it exists, so a
# run stopped at its time limit still brings back what it did.
save_out() { [[ -n "${OUT:-}" ]] || return 0; for f in "$@"; do cp "$build/$f" "$OUT/" 2>/dev/null || true; done; }
[[ -d "$deps/usr/include" ]] || { echo "gpu-check: no $deps/: run scripts/gpu-check.sh --prepare where Debian's packages can be downloaded, and bring $deps along" >&2; exit 2; }
"$python" -c 'import numpy, PIL' 2>/dev/null ||
  { echo "gpu-check: $python lacks numpy or Pillow, which make the training images (Debian: python3-pil)" >&2; exit 2; }
if [[ $device == cuda* ]]; then
  "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' ||
    { echo "gpu-check: $python's torch sees no CUDA device (use --device cpu to check the script)" >&2; exit 2; }
fi
chmod +x "$deps"/usr/bin/protoc* 2>/dev/null || true  # in case the copy lost the mode
gpu=$("$python" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')")
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 || echo "-")
torch_version=$("$python" -c 'import torch; print(torch.__version__)')
nvcc_version=$( (nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>/dev/null | grep -o 'release [0-9.]*' | cut -d' ' -f2 || true)
tools="cmake $(cmake --version 2>/dev/null | head -1 | awk '{print $3}'), $(c++ --version 2>/dev/null | head -1 || echo 'no c++'),"
tools+=" $(command -v make >/dev/null && echo make || echo 'no make'),"
tools+=" $(command -v ninja >/dev/null && echo "ninja $(ninja --version)" || echo 'no ninja'), nvcc ${nvcc_version:-none}"
echo "gpu-check: $gpu, driver ${driver:--}, torch $torch_version, $(nproc) CPU cores; $tools; budget $budget s"

table=$build/gpu-check.md
mkdir -p "$build"
rm -f "$build/bench.txt"
rows=()
# The table as it stands: written after each step (and into $OUT), so a check stopped early still says what it saw.
write_table() {
  {
    echo "GPU check, $(date -u +%Y-%m-%d): $gpu, driver ${driver:--}, torch $torch_version, $(nproc) CPU cores" \
      "(\`bash scripts/gpu-check.sh\`); $tools"
    echo
    if [[ -s "$build/bench.txt" ]]; then
      echo '```'
      cat "$build/bench.txt"
      echo '```'
      echo
    fi
    echo "| step | result | seconds since the start |"
    echo "| --- | --- | --- |"
    if ((${#rows[@]})); then printf '%s\n' "${rows[@]}"; fi
  } >"$table"
  save_out gpu-check.md
}
trap write_table EXIT
result() { case $1 in 0) echo "rc 0" ;; 124 | 137) echo "stopped at its time limit" ;; *) echo "rc $1" ;; esac; }

# 1. Build against this Python's LibTorch, with the prepared packages instead of a registry.
set +e
limited 400 120 env GAN_DEPS="$deps" BUILD_DIR="$build" PYTHON="$python" bash scripts/setup-pytorch.sh 2>&1 |
  tee "$build/build.log"
build_rc=${PIPESTATUS[0]}
set -e
rows+=("| build against this PyTorch (scripts/setup-pytorch.sh) | $(result "$build_rc") | $(elapsed) |")
if ((build_rc)); then
  save_out build.log configure.log
  echo "gpu-check: the build failed ($(elapsed) s)" >&2
  exit 1
fi
# Which bundled headers the wheel carries beside its own (fmt, gloo, protobuf's google/ would shadow the distribution's
# or .deps' copies), and which copies the build took (CMakeLists.txt, scripts/check_wheel_layout.sh).
echo "gpu-check: the LibTorch's include folder holds: $("$python" -c 'import os, torch
print(" ".join(sorted(os.listdir(os.path.join(os.path.dirname(torch.__file__), "include")))))' 2>/dev/null || echo "?")"
grep -E '^-- (fmt|gloo) headers' "$build/configure.log" || true
save_out configure.log build.log

export LD_LIBRARY_PATH="$PWD/$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
count() { grep -cE "^\[ *$2 *\] .* \([0-9]+ ms\)$" "$1" || true; }  # result lines with a duration
summary() { echo "$(count "$1" OK) passed, $(count "$1" FAILED) failed, $(count "$1" SKIPPED) skipped"; }

# 2. The CUDA tests (tests/test_cuda.cpp) first, in one process (they share the GPU).
cuda_filter='Cuda.*'
((quick)) && cuda_filter='Cuda.*:DeviceAdam.*'
echo "gpu-check: CUDA tests ($(elapsed) s)"
set +e
limited 150 150 "$build/gan-tests" --gtest_filter="$cuda_filter" >"$build/tests-cuda.log" 2>&1
cuda_rc=$?
set -e
grep -E '^(cuda|CUDA|capture) ' "$build/tests-cuda.log" || true  # the CUDA tests' printed figures
grep -E '^\[  FAILED  \] .*\([0-9]+ ms\)$' "$build/tests-cuda.log" || true
rows+=("| CUDA tests (\`gan-tests --gtest_filter=$cuda_filter\`) | $(result "$cuda_rc"): $(summary "$build/tests-cuda.log") | $(elapsed) |")
save_out tests-cuda.log
write_table

# 3. 300 training steps of 64x64 RGB on generated images (coloured discs and squares on gradients).
data=$build/gpu-check-images
echo "gpu-check: training ($(elapsed) s)"
set +e
limited 60 150 "$python" - "$data" <<'EOF'
import os, sys
import numpy as np
from PIL import Image
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
yy, xx = np.mgrid[0:64, 0:64]
for i in range(2048):
    base = np.stack([np.full((64, 64), rng.integers(0, 256)) + (xx if i % 2 else yy) * rng.integers(0, 2) for _ in range(3)], -1)
    cy, cx, r = rng.integers(12, 52), rng.integers(12, 52), rng.integers(6, 14)
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r if i % 3 else (abs(yy - cy) < r) & (abs(xx - cx) < r)
    base[mask] = rng.integers(0, 256, 3)
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(f"{out}/{i:05d}.png")
EOF
steps=300
((quick)) && steps=6
rm -rf "$build/gpu-check-runs"
limited 150 120 "$build/gan-train" --device "$device" --steps "$steps" --out "$build/gpu-check-runs" --name train \
  --set data.source=folder --set data.path="$data" --set model.image_size=64 --set model.channels=3 \
  --set train.batch_size=64 --set output.log_every=100 --set output.checkpoint_every=100 >"$build/train.log" 2>&1
train_rc=$?
# What train.cuda_graphs (auto) did: the capture line, or the warning that says why the step ran eagerly.
graph_line=$(grep -oE "CUDA graphs( are off|:).*" "$build/train.log" | tail -1 | tr -d '|')
train_ips=$("$python" -c "import json; print(json.load(open('$build/gpu-check-runs/train/summary.json'))['img_per_s'])" 2>/dev/null || echo "-")
# The checkpoint trained on the device samples on the CPU.
limited 60 100 "$build/gan-sample" --checkpoint "$build/gpu-check-runs/train/checkpoints/latest.pt" --device cpu \
  --n 16 --out "$build/gpu-check-sample.png" > >(sed 's/^/gan-sample: /' >>"$build/train.log") 2>&1
sample_rc=$?
set -e
((train_rc == 0)) || tail -3 "$build/train.log"
rows+=("| $steps steps of 64x64 RGB batch 64 on generated images | $(result "$train_rc"), $train_ips img/s in training steps (${graph_line:-no CUDA graph line}); CPU sampling from its checkpoint $(result "$sample_rc") | $(elapsed) |")
sleep 1  # the sampler's lines into train.log (one file less for $OUT, which brings back 8)
save_out train.log
write_table

# 4. Speed against the Python eager reference on the same device, and peak memory (into $OUT as it comes).
bench_env=(BUILD_DIR="$build" PYTHON="$python" DEVICE="$device" ROUNDS="${ROUNDS:-1}")
((quick)) && bench_env+=(ROUNDS=1 STEPS=1 WARMUP=1)
echo "gpu-check: speed table ($(elapsed) s)"
set +e
copies=("$build/bench.txt")
[[ -n "${OUT:-}" ]] && copies+=("$OUT/bench.txt")
limited 200 20 env "${bench_env[@]}" bash scripts/bench_gpu.sh 2>&1 | tee "${copies[@]}"
bench_rc=${PIPESTATUS[0]}
set -e
rows+=("| speed table (scripts/bench_gpu.sh) | $(result "$bench_rc"), above | $(elapsed) |")
save_out bench.txt
write_table

# 5. gan-eval's standard-FID extractor (the FID Inception-v3, random weights: the same work) on the device: img/s.
inc_batch=256
((quick)) && inc_batch=4
set +e
inception_line=$(limited 60 5 "$build/gan-bench" inception --device "$device" --batch "$inc_batch" --chunk 64 --reps 2 2>&1 |
  grep -E '^inception\.(nchw|channels_last)' | sed 's/^inception\.//' | paste -sd ';' | sed 's/;/; /g')
set -e
rows+=("| FID Inception features of $inc_batch 64x64 RGB images, chunks of 64 (gan-bench inception) | ${inception_line:--} | $(elapsed) |")
write_table

# 6. The rest of the test suite (CI runs it on the CPU; here against this LibTorch), in the time left. The two tests
#    that need Debian's Fashion-MNIST package are left out (it is not among the prepared packages). In shards
#    (GoogleTest's GTEST_TOTAL_SHARDS/GTEST_SHARD_INDEX), one process each, side by side; every test makes its own
#    folders and ports.
rest_rc=0
if ((quick)); then
  rows+=("| the rest of the test suite | not run (--quick) | $(elapsed) |")
else
  cores=$(nproc)
  shards=${TEST_SHARDS:-$((cores >= 16 ? 8 : cores > 2 ? cores / 2 : 1))}
  echo "gpu-check: the rest of the tests in $shards shards, $(left) s left ($(elapsed) s)"
  pids=()
  for ((i = 0; i < shards; ++i)); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i OMP_NUM_THREADS=$(((cores + shards - 1) / shards)) \
      limited 600 10 "$build/gan-tests" --gtest_filter='-Cuda.*:Idx.FashionMnistFromDebianPackage' \
      >"$build/tests.$i.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rest_rc=$?; done
  for ((i = 0; i < shards; ++i)); do cat "$build/tests.$i.log"; done >"$build/tests.log"
  grep -E '^\[  FAILED  \] .*\([0-9]+ ms\)$' "$build/tests.log" || true
  rows+=("| the rest of the test suite, $shards shards | $(result "$rest_rc"): $(summary "$build/tests.log") | $(elapsed) |")
  save_out tests.log
fi
write_table
cat "$table"
if [[ $device == cuda* ]]; then  # docs/PERFORMANCE.md: the table between the markers of its GPU section
  "$python" - "$table" docs/PERFORMANCE.md <<'EOF'
import sys
table, doc = open(sys.argv[1]).read(), sys.argv[2]
text = open(doc).read()
begin, end = "<!-- gpu-check begin -->", "<!-- gpu-check end -->"
if begin in text and end in text:
    text = text[:text.index(begin) + len(begin)] + "\n" + table + text[text.index(end):]
else:
    text += "\n## GPU check\n\n" + begin + "\n" + table + end + "\n"
open(doc, "w").write(text)
EOF
fi
echo "gpu-check: done in $(elapsed) s"
[[ $cuda_rc -eq 0 && $train_rc -eq 0 && $sample_rc -eq 0 && $bench_rc -eq 0 && $rest_rc -eq 0 ]]

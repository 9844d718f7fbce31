#!/usr/bin/env bash
# Sets everything up and trains the default model on Fashion-MNIST (configs/fashion-mnist.cfg).
# Extra arguments go to gan-train, e.g. scripts/train-default.sh --epochs 5 --device cuda
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-tests
"${BUILD_DIR:-build}/gan-train" --config configs/fashion-mnist.cfg "$@"

#!/usr/bin/env bash
# Small data: configs/fashion-mnist.cfg without augmentation (train.augment off) against the same with ADA
# (train.augment ada) on Fashion-MNIST cut to N images (data.max_images), trained at the same time with one thread
# each for the same wall time, then scored with gan-eval (5,000 samples, latent seed 0) against the full training
# set with its cached classifier (scripts/measure-default.sh does the runs and the scoring).
#   bash scripts/measure-augment.sh                 N = 1000 and 5000, 6 minutes each (~15 minutes on 2 cores)
# Environment: SIZES (default "1000 5000"), MINUTES (default 6), OUT (default runs/measure-augment).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-1000 5000} OUT=${OUT:-runs/measure-augment} BASE="train.augment=off" VARIANT="train.augment=ada" \
  LABELS="off ada" exec bash scripts/measure-default.sh

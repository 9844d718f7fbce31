#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (GoogleTest through ctest), then fuzzes the config loader
# and the torch.save reader for a short fixed budget each (scripts/fuzz.sh; FUZZ_SECONDS, default 60, 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "${JOBS:-$(nproc)}"
if [[ "${FUZZ_SECONDS:-60}" != 0 ]]; then bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"; fi

// gan-bench: training-step throughput, per-layer timings of the two transposed-convolution forms, and the
// machine's convolution/GEMM peak. scripts/bench.sh runs it next to the Python reference and prints ratios.
#pragma once

#include <cstdint>

#include "gan/config.h"

namespace gan {

// Forward-pass convolution FLOPs per image (multiply-add = 2) of the generator and the discriminator.
struct ModelFlops {
  double g = 0, d = 0;
  // One reference training step per image: G forward + backward (3x), D three forwards + backwards (9x).
  double step() const { return 3 * g + 9 * d; }
};
ModelFlops model_flops(const ModelConfig& mc);

// Peak resident memory of this process so far, in MiB (VmHWM).
double peak_rss_mib();

int bench_main(int argc, char** argv);

}  // namespace gan

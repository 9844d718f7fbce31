// Start-up check of LibTorch's float32 maths on this machine against float64, so that a broken math library stops a
// run in its first second with one line, instead of hours later as "training diverged" or as a run that learns
// nothing. Seen: Debian trixie's oneDNN 3.7.2 (LibTorch 2.6) on an AVX-512 AMD EPYC gives float32 convolution input
// gradients off by a relative 3.06, and outputs wrong for some channel counts, also when capped at AVX2 or AVX
// (docs/PERFORMANCE.md "A wrong oneDNN and the start-up check").
#pragma once
#include <c10/core/Device.h>

#include <functional>
#include <string>

namespace at {
class Tensor;
}

namespace gan {

// A result is wrong when max |float32 - float64| exceeds this share of max |float64| (float32's own rounding on these
// sizes is ~1e-6, TF32 convolutions on CUDA ~1e-3; the oneDNN fault above gives 3.06).
constexpr double kMathsTolerance = 1e-2;

struct MathsCheck {
  bool ok = true;
  std::string failure;  // the first wrong result: "conv2d [1, 3, 4, 4] k3 s1 p1, input gradient: relative error 3.06"
  double worst = 0;     // the largest relative error of all results (inf for a non-finite one)
};

// Test hook: sees each float32 result (by its name, as in MathsCheck::failure) before it is compared; may change it.
using MathsTamper = std::function<void(const std::string& what, at::Tensor& result)>;

// Computes small convolutions (D's 4x4 stride 2 among them), a transposed convolution (G's), a linear layer and a
// training-mode batch norm, forward and backward, contiguous and channels_last, in float32 on `device` and in float64
// on the CPU, and compares every output and gradient (70 results; ~5 ms on a 2-vCPU AMD EPYC). Uses no random generator.
MathsCheck check_float32_maths(c10::Device device, const MathsTamper& tamper = {});

// The library versions for a message: "LibTorch 2.6.0, oneDNN v3.7.2".
std::string maths_libraries();

// The CPU check, run by the programs before they compute anything. When it fails and oneDNN does the convolutions:
// 1. unless the user set ONEDNN_MAX_CPU_ISA, restarts the program (`restart`, default execv of /proc/self/exe with
//    `argv`) with oneDNN capped at the next lower instruction set this CPU has: AVX2, then AVX, then SSE41 (other
//    kernels; the fault above is gone at SSE41). GAN_ONEDNN_CAPPED_FROM carries what each start saw;
// 2. when no lower cap is left, turns oneDNN off for this process (LibTorch's own kernels: slower convolutions) and
//    checks again.
// Returns "" when all was right first time, else a warning line saying what was wrong and what is used instead.
// Throws UserError(kExitMaths) naming the wrong result and the libraries when nothing passes.
// GAN_SELF_CHECK=0 skips the check (returns "").
std::string ensure_sound_cpu_maths(char** argv, const MathsTamper& tamper = {},
                                   const std::function<void()>& restart = {});

// What this process's ensure_sound_cpu_maths returned ("" when none): the trainer repeats it in the run's log.
const std::string& cpu_maths_note();

// The same for a CUDA device (nothing for the CPU, which ensure_sound_cpu_maths covers): when the check fails with
// cuDNN, turns cuDNN off and checks again. Returns "" or a warning line; throws UserError(kExitMaths).
std::string ensure_sound_device_maths(c10::Device device, const MathsTamper& tamper = {});

}  // namespace gan

// One DCGAN training step (discriminator update, then generator update), shared by the trainer and gan-bench so
// that the benchmark measures exactly what training runs.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <string>
#include <vector>

#include "gan/config.h"
#include "gan/models.h"

namespace torch::optim {
class Optimizer;
}

namespace gan {

// How the step computes; every choice gives the same function (up to float rounding).
struct StepOptions {
  UpconvMode upconv = UpconvMode::kAuto;
  bool channels_last = false;    // activations (and conv weights) in channels_last
  std::string amp = "off";       // off | bf16 | fp16 (CUDA only; fp16 scales the losses)
  bool check_every_step = true;  // read the finite flag every step (CPU: free); else only when stats are read
};

// The step's options from the config for `device` (auto choices resolved).
StepOptions step_options(const TrainConfig& train, const c10::Device& device);

// Applies the options to the models (call before the optimizers create their state).
void prepare_models(Generator& g, Discriminator& d, const StepOptions& opts);

struct StepResult {
  enum Status { kOk, kDivergedD, kDivergedG, kSkipped } status = kOk;  // kSkipped: fp16 overflow, scale lowered
  at::Tensor stats;  // [loss_d, loss_g, D(x), D(G(z)) before D's update, D(G(z)) after], on the device
};

class GanStep {
 public:
  GanStep(Generator g, Discriminator d, torch::optim::Optimizer& opt_g, torch::optim::Optimizer& opt_d,
          StepOptions opts);
  // real: [B, C, S, S] on the device; z: [B, nz] on the device. With `poison_d` the D loss becomes NaN (tests).
  // A non-finite loss or gradient is detected before its optimizer applies it (check_every_step) and the step
  // returns kDivergedD/G with no update made by that network.
  // `step` is the 1-based number of this step, for divergence reports.
  StepResult run(const at::Tensor& real, const at::Tensor& z, std::int64_t step, bool poison_d = false);
  // Without check_every_step: the first step since the last call whose loss or gradient was non-finite, and which
  // network ('D' or 'G'); {0, 0} when none. Reads one device value (a host sync): call it where stats are read.
  std::pair<std::int64_t, char> take_deferred_divergence();
  // fp16 loss scale (1 otherwise).
  double loss_scale() const { return scale_; }

 private:
  bool finite(const at::Tensor& loss, const std::vector<at::Tensor>& params) const;
  Generator g_;
  Discriminator d_;
  torch::optim::Optimizer& opt_g_;
  torch::optim::Optimizer& opt_d_;
  StepOptions opts_;
  std::vector<at::Tensor> d_params_, g_params_;
  at::Tensor first_bad_;  // [2] int64 on the device: step and network (1 = D, 2 = G) of the first non-finite one
  double scale_ = 1.0;
  int good_steps_ = 0;
};

}  // namespace gan

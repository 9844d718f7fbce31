// The trainer's Adam: torch::optim::Adam's mathematics, options and saved state, but with the step count and the bias
// corrections kept as tensors on the parameters' device, and the moment updates applied to all parameters of a group
// at once (multi-tensor). Nothing in a step reads a value back to the host, so a CUDA graph can capture it; on the
// CPU it gives bitwise the weights torch::optim::Adam gives (tests/test_adam.cpp). The learning rate is read from a
// device copy too, refreshed from the options when they change (a cosine schedule), outside any captured step.
#pragma once
#include <torch/optim/adam.h>

#include <cstdint>
#include <vector>

namespace gan {

class DeviceAdam : public torch::optim::Adam {
 public:
  DeviceAdam(std::vector<at::Tensor> params, torch::optim::AdamOptions options);
  // One update of every parameter that has a gradient. Weight decay and AMSGrad are not used by the trainer and are
  // refused at construction.
  at::Tensor step(LossClosure closure = nullptr) override;
  // As torch::optim::Adam's (the same archive layout: checkpoints move freely between the two); loading also resets
  // the device step counts from the loaded states.
  void load(torch::serialize::InputArchive& archive) override;
  // Copies each group's learning rate to its device tensor where the options changed since the last copy (call
  // before replaying a captured step; step() calls it too, so an eager step needs nothing).
  void refresh_device_lr();
  // Whether step() advances the saved states' host step counts (off while a step is captured: the capture runs
  // nothing), and how to advance them by `n` after `n` replayed updates.
  void set_count_on_host(bool on) { count_on_host_ = on; }
  void advance_host_steps(std::int64_t n);
  // Every tensor the updates change besides the parameters: the moments and the device step counts.
  std::vector<at::Tensor> state_tensors();

 private:
  std::vector<at::Tensor> steps_;  // per group: the step count as a 0-dim double tensor on the parameters' device
  std::vector<at::Tensor> lrs_;    // per group: the learning rate as a 0-dim double tensor on that device
  std::vector<double> lr_copied_;  // per group: the value lrs_ holds
  bool count_on_host_ = true;
};

}  // namespace gan

// The trainer's Adam: torch::optim::Adam's mathematics, options and saved state, but with the step count and the bias
// corrections kept as tensors on the parameters' device, and the moment updates applied to all parameters of a group
// at once (multi-tensor). Nothing in a step reads a value back to the host, so a CUDA graph can capture it; on the
// CPU it gives bitwise the weights torch::optim::Adam gives (tests/test_adam.cpp).
#pragma once
#include <torch/optim/adam.h>

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

 private:
  std::vector<at::Tensor> steps_;  // per group: the step count as a 0-dim double tensor on the parameters' device
};

}  // namespace gan

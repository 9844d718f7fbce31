// Batch normalisation over the global batch of a data-parallel run (model.sync_bn): LibTorch C++ has no
// SyncBatchNorm, so this is our own autograd function around a sum across processes.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <functional>

namespace gan {

// Sums a tensor in place over every process of a data-parallel run; every process must call it at the same point.
// (The distributed context provides one; models never see the process group itself.)
using AllReduceSum = std::function<void(at::Tensor&)>;

// BatchNorm2d with the same parameters, buffers, defaults (eps 1e-5, momentum 0.1) and state_dict names (weight, bias,
// running_mean, running_var, num_batches_tracked), so that checkpoints and exported weights do not depend on it.
// In training mode with a `reduce` set, the mean and variance are those of the global batch: two sums across
// processes in the forward pass (the mean, then the squared deviations from it) and one in the backward pass, whose
// input gradient is then the global batch's. Without `reduce`, or in eval mode, it computes what BatchNorm2d does.
class SyncBatchNorm2dImpl : public torch::nn::Module {
 public:
  explicit SyncBatchNorm2dImpl(int channels);
  torch::Tensor forward(const torch::Tensor& x);  // [N, C, H, W] -> [N, C, H, W]
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  double eps = 1e-5, momentum = 0.1;
  AllReduceSum reduce;  // unset: per-process statistics
};
TORCH_MODULE(SyncBatchNorm2d);

}  // namespace gan

#include "gan/sync_batch_norm.h"

#include <torch/torch.h>

namespace gan {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const std::vector<std::int64_t> kReduceDims{0, 2, 3};  // everything but the channel

// Per-channel sums of x [N, C, H, W] accumulated in double: [C].
at::Tensor channel_sum(const at::Tensor& x) { return x.sum(kReduceDims, /*keepdim=*/false, at::kDouble); }

// [C] -> [1, C, 1, 1] in `like`'s dtype, for broadcasting against activations.
at::Tensor per_channel(const at::Tensor& v, const at::Tensor& like) { return v.to(like.scalar_type()).view({1, -1, 1, 1}); }

// y = (x - mean) / sqrt(var + eps) * weight + bias with the global batch's mean and biased variance.
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            at::Tensor running_mean, at::Tensor running_var, at::Tensor num_batches_tracked,
                            double eps, double momentum, const AllReduceSum* reduce) {
    const std::int64_t c = x.size(1);
    // Pass 1: the global mean. [sum over channels..., count]
    at::Tensor sums = torch::cat({channel_sum(x), torch::full({1}, static_cast<double>(x.numel() / c),
                                                               x.options().dtype(at::kDouble))});  // [C + 1]
    (*reduce)(sums);
    const at::Tensor count = sums.narrow(0, c, 1);                       // [1], global N*H*W
    const at::Tensor mean = sums.narrow(0, 0, c) / count;                // [C], double
    // Pass 2: the squared deviations from it (no cancellation, unlike E[x^2] - E[x]^2).
    at::Tensor m2 = channel_sum((x - per_channel(mean, x)).square());   // [C]
    (*reduce)(m2);
    const at::Tensor var = m2 / count;                                   // [C], biased: what normalises
    const at::Tensor invstd = (var + eps).rsqrt();                        // [C]
    {
      torch::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
      const at::Tensor unbiased = m2 / (count - 1).clamp_min(1);  // no read-back: on CUDA that would be a host sync
      running_var.mul_(1 - momentum).add_(unbiased.to(running_var.scalar_type()), momentum);
      num_batches_tracked.add_(1);
    }
    const at::Tensor xhat = (x - per_channel(mean, x)) * per_channel(invstd, x);  // [N, C, H, W]
    ctx->save_for_backward({x, weight});
    ctx->saved_data["mean"] = mean;
    ctx->saved_data["invstd"] = invstd;
    ctx->saved_data["count"] = count;
    ctx->saved_data["reduce"] = static_cast<std::int64_t>(reinterpret_cast<std::intptr_t>(reduce));
    return xhat * per_channel(weight, x) + per_channel(bias, x);  // [N, C, H, W]
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor gy = grads[0].contiguous(x.suggest_memory_format());  // [N, C, H, W]
    const at::Tensor mean = ctx->saved_data["mean"].toTensor(), invstd = ctx->saved_data["invstd"].toTensor();
    const at::Tensor count = ctx->saved_data["count"].toTensor();
    const auto* reduce = reinterpret_cast<const AllReduceSum*>(
        static_cast<std::intptr_t>(ctx->saved_data["reduce"].toInt()));
    const std::int64_t c = x.size(1);
    const at::Tensor xhat = (x - per_channel(mean, x)) * per_channel(invstd, x);  // [N, C, H, W]
    // This process's sums give its weight and bias gradients (averaged across processes with the other gradients);
    // the global sums give the input gradient through the global statistics.
    const at::Tensor local = torch::cat({channel_sum(gy), channel_sum(gy * xhat)});  // [2C]: sum dy, sum dy*xhat
    at::Tensor global = local.clone();
    (*reduce)(global);
    const at::Tensor mean_dy = global.narrow(0, 0, c) / count, mean_dy_xhat = global.narrow(0, c, c) / count;  // [C]
    const at::Tensor gx = (gy - per_channel(mean_dy, x) - xhat * per_channel(mean_dy_xhat, x)) *
                          per_channel(invstd * weight.to(at::kDouble), x);  // [N, C, H, W]
    const at::Tensor gw = local.narrow(0, c, c).to(weight.scalar_type());
    const at::Tensor gb = local.narrow(0, 0, c).to(weight.scalar_type());
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

SyncBatchNorm2dImpl::SyncBatchNorm2dImpl(int channels) {
  // The same names, order and initial values as torch::nn::BatchNorm2d.
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
  running_mean = register_buffer("running_mean", torch::zeros({channels}));
  running_var = register_buffer("running_var", torch::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::tensor(0, torch::dtype(torch::kLong)));
}

torch::Tensor SyncBatchNorm2dImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "SyncBatchNorm2d expects [N, C, H, W], got ", x.sizes());
  if (!is_training() || !reduce) {
    if (is_training()) {
      torch::NoGradGuard no_grad;
      num_batches_tracked.add_(1);
    }
    return torch::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum, eps,
                             at::globalContext().userEnabledCuDNN());  // [N, C, H, W]
  }
  return SyncBatchNormFunction::apply(x, weight, bias, running_mean, running_var, num_batches_tracked, eps, momentum,
                                      &reduce);  // [N, C, H, W]
}

}  // namespace gan

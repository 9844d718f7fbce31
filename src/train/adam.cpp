#include "gan/adam.h"

#include <torch/torch.h>

#include <sstream>
#include <type_traits>

#include "gan/cuda_graph.h"

namespace gan {
namespace {

using torch::optim::AdamOptions;
using torch::optim::AdamParamState;

// The key of a parameter's state: LibTorch 1.13 keys by the TensorImpl address as text (written by an ostringstream,
// as its c10::guts::to_string did; 2.x has no such function), 2.x by the address itself.
template <typename Map>
typename Map::key_type state_key(const Map&, const at::Tensor& p) {
  if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
    std::ostringstream text;
    text << p.unsafeGetTensorImpl();
    return text.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

}  // namespace

DeviceAdam::DeviceAdam(std::vector<at::Tensor> params, AdamOptions options)
    : torch::optim::Adam(std::move(params), options) {
  TORCH_CHECK(options.weight_decay() == 0 && !options.amsgrad(),
              "DeviceAdam implements Adam without weight decay and AMSGrad (the trainer uses neither)");
}

at::Tensor DeviceAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  at::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  steps_.resize(param_groups().size());
  refresh_device_lr();
  auto& states = state();
  for (size_t g = 0; g < param_groups().size(); ++g) {
    auto& group = param_groups()[g];
    const auto& o = static_cast<const AdamOptions&>(group.options());
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto key = state_key(states, p);
      auto it = states.find(key);
      if (it == states.end()) {
        auto s = std::make_unique<AdamParamState>();
        s->step(0);
        s->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        s->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        it = states.emplace(key, std::move(s)).first;
      }
      auto& s = static_cast<AdamParamState&>(*it->second);
      if (!steps_[g].defined())  // first step, or after load(): the count the states hold
        steps_[g] = torch::full({}, static_cast<double>(s.step()), p.options().dtype(at::kDouble));
      // The host copy of the count, for checkpoints: no device read. (Not while a stand-in graph replays: a real
      // replay runs no host code, and GanStep advances the host counts after it.)
      if (count_on_host_ && !CudaGraph::replaying()) s.step(s.step() + 1);
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(s.exp_avg());
      exp_avg_sqs.push_back(s.exp_avg_sq());
    }
    if (params.empty()) continue;
    // Bias corrections on the device, in double as torch::optim::Adam computes them on the host.
    at::Tensor& t = steps_[g];
    t.add_(1);
    const at::Tensor bc1 = 1 - torch::pow(beta1, t), bc2 = 1 - torch::pow(beta2, t);  // 0-dim
    // -lr / bc1 with lr read on the device: the same division (a host -lr becomes a tensor filled with it)
    const at::Tensor sqrt_bc2 = bc2.sqrt(), neg_step_size = lrs_[g].neg().div(bc1);     // 0-dim
    // m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
    at::_foreach_mul_(exp_avgs, beta1);
    at::_foreach_add_(exp_avgs, grads, 1 - beta1);
    at::_foreach_mul_(exp_avg_sqs, beta2);
    at::_foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2);
    // denom = sqrt(v) / sqrt(bc2) + eps;  p += (-lr / bc1) * m / denom, rounded as torch's addcdiv_ rounds it
    std::vector<at::Tensor> denoms = at::_foreach_sqrt(exp_avg_sqs);
    for (auto& d : denoms) d.div_(sqrt_bc2);
    at::_foreach_add_(denoms, o.eps());
    std::vector<at::Tensor> updates(params.size());
    for (size_t k = 0; k < params.size(); ++k) updates[k] = (exp_avgs[k] * neg_step_size).div_(denoms[k]);
    at::_foreach_add_(params, updates);
  }
  return loss;
}

void DeviceAdam::load(torch::serialize::InputArchive& archive) {
  torch::optim::Adam::load(archive);
  steps_.clear();  // taken from the loaded states at the next step
}

void DeviceAdam::refresh_device_lr() {
  lrs_.resize(param_groups().size());
  lr_copied_.resize(param_groups().size());
  for (size_t g = 0; g < param_groups().size(); ++g) {
    auto& group = param_groups()[g];
    if (group.params().empty()) continue;
    const double lr = static_cast<const AdamOptions&>(group.options()).lr();
    if (!lrs_[g].defined()) {
      lrs_[g] = torch::full({}, lr, group.params().front().options().dtype(at::kDouble));
    } else if (lr_copied_[g] != lr) {
      lrs_[g].fill_(lr);  // a kernel with the value as its argument: no host sync
    }
    lr_copied_[g] = lr;
  }
}

void DeviceAdam::advance_host_steps(std::int64_t n) {
  for (auto& kv : state()) {
    auto& s = static_cast<AdamParamState&>(*kv.second);
    s.step(s.step() + n);
  }
}

std::vector<at::Tensor> DeviceAdam::state_tensors() {
  std::vector<at::Tensor> out;
  for (auto& group : param_groups())
    for (auto& p : group.params()) {
      auto it = state().find(state_key(state(), p));
      if (it == state().end()) continue;
      auto& s = static_cast<AdamParamState&>(*it->second);
      out.push_back(s.exp_avg());
      out.push_back(s.exp_avg_sq());
    }
  for (auto& t : steps_)
    if (t.defined()) out.push_back(t);
  return out;
}

}  // namespace gan

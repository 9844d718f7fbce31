#include "gan/step.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>

namespace gan {
namespace {

constexpr double kInitialScale = 65536.0;  // fp16 loss scale: start, halve on overflow, double after
constexpr int kGrowthInterval = 2000;      // this many overflow-free steps (as torch.cuda.amp.GradScaler)

// Autocast on CUDA for the scope (no-op when `dtype` is undefined). The API changed in LibTorch 2.4.
class AutocastScope {
 public:
  explicit AutocastScope(c10::optional<at::ScalarType> dtype) : on_(dtype.has_value()) {
    if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_dtype(at::kCUDA, *dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    at::autocast::set_autocast_gpu_dtype(*dtype);
    at::autocast::set_enabled(true);
#endif
  }
  ~AutocastScope() {
    if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool on_;
};

// Sum of the loss and every gradient: NaN or Inf anywhere propagates into it.
at::Tensor poison_sum(const at::Tensor& loss, const std::vector<at::Tensor>& params) {
  at::Tensor sum = loss.detach().to(at::kFloat).clone();
  for (const auto& p : params)
    if (p.grad().defined()) sum += p.grad().sum();
  return sum;
}

void set_requires_grad(std::vector<at::Tensor>& params, bool on) {
  for (auto& p : params) p.requires_grad_(on);
}

// Gradients are dropped rather than zeroed: the next backward writes them fresh (no memset, no accumulate).
void drop_grads(std::vector<at::Tensor>& params) {
  for (auto& p : params) p.mutable_grad().reset();
}

}  // namespace

StepOptions step_options(const TrainConfig& train, const c10::Device& device) {
  StepOptions o;
  o.upconv = train.upconv == "transposed" ? UpconvMode::kTransposed
             : train.upconv == "phase"    ? UpconvMode::kPhase
             : train.upconv == "gemm"     ? UpconvMode::kGemm
                                          : UpconvMode::kAuto;
  o.channels_last = train.channels_last == "on" || (train.channels_last == "auto" && device.is_cuda());
  o.amp = device.is_cuda() ? train.amp : "off";
  o.check_every_step = !device.is_cuda();  // on CUDA a per-step check would be a host sync
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(train.cudnn_benchmark);
  return o;
}

void prepare_models(Generator& g, Discriminator& d, const StepOptions& opts) {
  g->set_upconv_mode(opts.upconv);
  set_channels_last(*g, opts.channels_last);
  set_channels_last(*d, opts.channels_last);
}

GanStep::GanStep(Generator g, Discriminator d, torch::optim::Optimizer& opt_g, torch::optim::Optimizer& opt_d,
                 StepOptions opts)
    : g_(std::move(g)), d_(std::move(d)), opt_g_(opt_g), opt_d_(opt_d), opts_(std::move(opts)),
      d_params_(d_->parameters()), g_params_(g_->parameters()) {
  if (opts_.amp == "fp16") scale_ = kInitialScale;
  first_bad_ = torch::zeros({2}, torch::TensorOptions().dtype(torch::kLong).device(d_params_.front().device()));
}

bool GanStep::finite(const at::Tensor& loss, const std::vector<at::Tensor>& params) const {
  return std::isfinite(poison_sum(loss, params).item<double>());
}

std::pair<std::int64_t, char> GanStep::take_deferred_divergence() {
  auto v = first_bad_.cpu();
  const std::int64_t step = v[0].item<std::int64_t>(), net = v[1].item<std::int64_t>();
  if (step == 0) return {0, 0};
  first_bad_.zero_();
  return {step, net == 1 ? 'D' : 'G'};
}

StepResult GanStep::run(const at::Tensor& real_in, const at::Tensor& z, std::int64_t step, bool poison_d) {
  StepResult result;
  const auto fmt = opts_.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor real = real_in.contiguous(fmt);  // [B, C, S, S]
  const std::int64_t b = real.size(0);
  const auto fopts = torch::TensorOptions().device(real.device());
  const at::Tensor ones = torch::ones({b}, fopts), zeros = torch::zeros({b}, fopts);
  c10::optional<at::ScalarType> amp;
  if (opts_.amp == "bf16") amp = at::kBFloat16;
  if (opts_.amp == "fp16") amp = at::kHalf;

  // fp16: a scaled loss's gradients are unscaled in place; an overflow skips the step and halves the scale.
  auto unscale = [&](std::vector<at::Tensor>& params) {
    if (opts_.amp != "fp16") return;
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().mul_(1.0 / scale_);
  };
  // Returns false when the update must not be applied. Deferred mode (CUDA without fp16) only records the first
  // non-finite step on the device; fp16 must decide now (as torch.cuda.amp.GradScaler does).
  auto check = [&](const at::Tensor& loss, std::vector<at::Tensor>& params, int net) -> bool {
    if (!opts_.check_every_step && opts_.amp != "fp16") {
      at::Tensor bad = torch::logical_not(torch::isfinite(poison_sum(loss, params))) & (first_bad_[0] == 0);
      // [step, net] built on the device (a host tensor copied over would be a sync point).
      at::Tensor here = torch::arange(2, first_bad_.options()) * (net - step) + step;
      first_bad_ = torch::where(bad, here, first_bad_);
      return true;
    }
    if (finite(loss, params)) return true;
    if (opts_.amp == "fp16" && scale_ > 1.0) {  // an overflow of the scaled loss: skip, retry with a lower scale
      scale_ /= 2;
      good_steps_ = 0;
      result.status = StepResult::kSkipped;
    } else {
      result.status = net == 1 ? StepResult::kDivergedD : StepResult::kDivergedG;
    }
    return false;
  };

  // Discriminator: maximise log D(x) + log(1 - D(G(z))).
  at::Tensor fake, real_logits, fake_logits, loss_d;
  {
    AutocastScope autocast(amp);
    fake = g_->forward(z).contiguous(fmt);          // [B, C, S, S]
    real_logits = d_->forward(real);                // [B]
    fake_logits = d_->forward(fake.detach());       // [B]
    loss_d = torch::binary_cross_entropy_with_logits(real_logits.to(at::kFloat), ones) +
             torch::binary_cross_entropy_with_logits(fake_logits.to(at::kFloat), zeros);
  }
  if (poison_d) loss_d = loss_d * std::nan("");
  drop_grads(d_params_);
  (opts_.amp == "fp16" ? loss_d * scale_ : loss_d).backward();
  unscale(d_params_);
  if (!check(loss_d, d_params_, 1)) return result;
  opt_d_.step();

  // Generator: non-saturating loss, maximise log D(G(z)). D's weight gradients are not needed here.
  at::Tensor fake_logits_g, loss_g;
  set_requires_grad(d_params_, false);
  {
    AutocastScope autocast(amp);
    fake_logits_g = d_->forward(fake);  // [B]
    loss_g = torch::binary_cross_entropy_with_logits(fake_logits_g.to(at::kFloat), ones);
  }
  drop_grads(g_params_);
  (opts_.amp == "fp16" ? loss_g * scale_ : loss_g).backward();
  set_requires_grad(d_params_, true);
  unscale(g_params_);
  if (!check(loss_g, g_params_, 2)) return result;
  opt_g_.step();
  if (opts_.amp == "fp16" && ++good_steps_ >= kGrowthInterval) {
    scale_ *= 2;
    good_steps_ = 0;
  }

  torch::NoGradGuard no_grad;
  result.stats = torch::stack({loss_d.detach(), loss_g.detach(), torch::sigmoid(real_logits.detach()).mean(),
                               torch::sigmoid(fake_logits.detach()).mean(),
                               torch::sigmoid(fake_logits_g.detach()).mean()})
                     .to(at::kFloat);
  return result;
}

}  // namespace gan

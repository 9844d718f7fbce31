#include "gan/step.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gan/adam.h"
#include "gan/cuda_graph.h"
#include "gan/errors.h"
#include "gan/platform.h"

namespace gan {
namespace {

constexpr double kInitialScale = 65536.0;  // fp16 loss scale: start, halve on overflow, double after
constexpr int kGrowthInterval = 2000;      // this many overflow-free steps (as torch.cuda.amp.GradScaler)

// Autocast on `device` (CUDA, or the CPU for bf16 through oneDNN) for the scope; a no-op when `dtype` is undefined.
// The API changed in LibTorch 2.4.
class AutocastScope {
 public:
  AutocastScope(c10::optional<at::ScalarType> dtype, at::DeviceType device)
      : on_(dtype.has_value()), cpu_(device == at::kCPU) {
    if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_dtype(device, *dtype);
    at::autocast::set_autocast_enabled(device, true);
#else
    if (cpu_) {
      at::autocast::set_autocast_cpu_dtype(*dtype);
      at::autocast::set_cpu_enabled(true);
    } else {
      at::autocast::set_autocast_gpu_dtype(*dtype);
      at::autocast::set_enabled(true);
    }
#endif
  }
  ~AutocastScope() {
    if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(cpu_ ? at::kCPU : at::kCUDA, false);
#else
    if (cpu_)
      at::autocast::set_cpu_enabled(false);
    else
      at::autocast::set_enabled(false);
#endif
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool on_, cpu_;
};

// Sum of the loss and every gradient: NaN or Inf anywhere propagates into it.
at::Tensor poison_sum(const at::Tensor& loss, const std::vector<at::Tensor>& params) {
  at::Tensor sum = loss.detach().to(at::kFloat).clone();
  for (const auto& p : params)
    if (p.grad().defined()) sum += p.grad().sum();
  return sum;
}

// fp16/bf16 -> float; float and double stay.
at::Tensor at_least_float(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble || t.scalar_type() == at::kFloat ? t : t.to(at::kFloat);
}

void set_requires_grad(std::vector<at::Tensor>& params, bool on) {
  for (auto& p : params) p.requires_grad_(on);
}

// Gradients are dropped rather than zeroed: the next backward writes them fresh (no memset, no accumulate).
void drop_grads(std::vector<at::Tensor>& params) {
  for (auto& p : params) p.mutable_grad().reset();
}

}  // namespace

std::string cuda_graph_blocker(const TrainConfig& train, int world_size) {
  if (train.loss == "wgan-gp") return "train.loss wgan-gp (its gradient penalty differentiates twice)";
  if (train.r1_gamma > 0) return "train.r1_gamma (R1 differentiates twice)";
  if (train.r2_gamma > 0) return "train.r2_gamma (R2 differentiates twice)";
  if (train.amp == "fp16") return "train.amp fp16 (its loss scale is decided on the host)";
  // (auto runs unaugmented until it switches ADA on: captured until then, see GanStep::stop_graph)
  if (train.augment == "diffaug" || train.augment == "ada")
    return "train.augment " + train.augment + " (its transforms are drawn on the CPU)";
  if (train.beta2_final >= 0) return "train.beta2_final (the beta2 schedule is a host number)";
  if (world_size > 1) return "a distributed run (the gradient all-reduce runs outside the step)";
  return "";
}

std::string resolve_amp(const std::string& amp, const c10::Device& device, const std::string& cpu_bf16,
                        std::string* note) {
  note->clear();
  if (device.is_cuda()) return amp == "auto" ? "off" : amp;
  if (amp == "fp16") {
    *note = "train.amp fp16 is for CUDA; on the CPU the step stays float32 (bf16 is the CPU's mixed precision)";
    return "off";
  }
  if (amp == "bf16" || amp == "auto") {
    if (!cpu_bf16.empty()) return "bf16";
    if (amp == "bf16")
      *note = "train.amp bf16: this processor has no native bf16 (AVX512-BF16 or AMX), where bf16 would be emulated "
              "and slower; the step stays float32";
    return "off";
  }
  return "off";
}

StepOptions step_options(const TrainConfig& train, const c10::Device& device, int world_size) {
  StepOptions o;
  o.upconv = upconv_mode(train.upconv);  // (validated with the config)
  // Gradient penalties differentiate D's input gradient again, which the Winograd form does not support.
  const bool penalty = train.loss == "wgan-gp" || train.r1_gamma > 0 || train.r2_gamma > 0;
  o.downconv = train.downconv == "direct" || penalty ? DownconvMode::kDirect
               : train.downconv == "winograd"       ? DownconvMode::kWinograd
                                                    : DownconvMode::kAuto;
  o.channels_last = train.channels_last == "on" || (train.channels_last == "auto" && device.is_cuda());
  o.amp = resolve_amp(train.amp, device, device.is_cuda() ? "" : cpu_bf16_features(), &o.amp_note);
  // bf16 on the CPU is oneDNN's: D's Winograd form computes in float32 (and would be autocast piecemeal).
  if (o.amp == "bf16" && !device.is_cuda()) {
    o.downconv = DownconvMode::kDirect;
    if (o.upconv == UpconvMode::kWinograd) o.upconv = UpconvMode::kPhase;  // G's likewise
  }
  o.check_every_step = !device.is_cuda();  // on CUDA a per-step check would be a host sync
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(train.cudnn_benchmark);
  o.loss = train.loss;
  o.gp_weight = train.gp_weight;
  o.r1_gamma = train.r1_gamma;
  o.r2_gamma = train.r2_gamma;
  o.label_smoothing = train.label_smoothing;
  if (train.augment != "off")  // auto: ADA's ops, at p = 0 (no augmentation) until the run switches them on
    o.augment = parse_augment_policy(train.augment_policy, train.augment == "auto" ? "ada" : train.augment);
  if (device.is_cuda() && train.cuda_graphs != "off") {
    const std::string why = cuda_graph_blocker(train, world_size);
    if (why.empty()) {
      o.cuda_graph = o.device_scalars = true;
    } else if (train.cuda_graphs == "on") {
      throw UserError(kExitUsage, "train.cuda_graphs on: the step cannot be captured with " + why +
                                      "; set train.cuda_graphs auto (captures where possible) or off");
    }
  }
  if (o.amp == "fp16" && (o.loss == "wgan-gp" || o.r1_gamma > 0 || o.r2_gamma > 0))
    throw UserError(kExitUsage, "train.amp fp16 cannot scale the gradient penalty of " +
                                    std::string(o.loss == "wgan-gp" ? "train.loss wgan-gp"
                                                : o.r1_gamma > 0    ? "train.r1_gamma"
                                                                    : "train.r2_gamma") +
                                    "; use train.amp bf16 or off");
  return o;
}

void prepare_models(Generator& g, Discriminator& d, const StepOptions& opts) {
  g->set_upconv_mode(opts.upconv);
  d->set_downconv_mode(opts.downconv);
  set_channels_last(*g, opts.channels_last);
  set_channels_last(*d, opts.channels_last);
}

at::Tensor d_loss(const std::string& loss, const at::Tensor& r, const at::Tensor& f, double smoothing) {
  const at::Tensor real = r.to(at::kFloat), fake = f.to(at::kFloat);  // [B] logits
  if (loss == "bce" || loss == "minimax")
    return torch::binary_cross_entropy_with_logits(real, torch::full_like(real, 1.0 - smoothing)) +
           torch::binary_cross_entropy_with_logits(fake, torch::zeros_like(fake));
  if (loss == "lsgan") return 0.5 * (real - (1.0 - smoothing)).pow(2).mean() + 0.5 * fake.pow(2).mean();
  if (loss == "hinge") return torch::relu(1.0 - real).mean() + torch::relu(1.0 + fake).mean();
  if (loss == "wgan-gp") return fake.mean() - real.mean();
  if (loss == "rpgan") return torch::softplus(-(real - fake)).mean();
  throw UserError(kExitUsage, "train.loss = '" + loss + "' is not bce, minimax, lsgan, hinge, wgan-gp or rpgan");
}

at::Tensor g_loss(const std::string& loss, const at::Tensor& f, const at::Tensor& r) {
  const at::Tensor fake = f.to(at::kFloat);  // [B] logits
  if (loss == "rpgan") {
    TORCH_CHECK(r.defined(), "g_loss: rpgan needs D's output on the paired real images");
    return torch::softplus(-(fake - r.to(at::kFloat))).mean();
  }
  if (loss == "bce") return torch::binary_cross_entropy_with_logits(fake, torch::ones_like(fake));
  if (loss == "minimax") return -torch::softplus(fake).mean();  // minimise log(1 - D(G(z))) = -softplus(logit)
  if (loss == "lsgan") return 0.5 * (fake - 1.0).pow(2).mean();
  if (loss == "hinge" || loss == "wgan-gp") return -fake.mean();
  throw UserError(kExitUsage, "train.loss = '" + loss + "' is not bce, minimax, lsgan, hinge, wgan-gp or rpgan");
}

at::Tensor d_score(const std::string& loss, const at::Tensor& logits) {
  const at::Tensor l = logits.detach().to(at::kFloat);
  return loss == "bce" || loss == "minimax" ? torch::sigmoid(l).mean() : l.mean();
}

at::Tensor gradient_penalty(Discriminator& d, const at::Tensor& real, const at::Tensor& fake, const at::Tensor& labels,
                            const at::Tensor& eps) {
  const std::int64_t b = real.size(0);
  at::Tensor e = eps.to(real.dtype()).view({b, 1, 1, 1});
  at::Tensor x = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(true);  // [B, C, S, S]
  at::Tensor out = d->forward(x, labels);                                               // [B]
  at::Tensor grad = torch::autograd::grad({out.sum()}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
  at::Tensor norm = at_least_float(grad.reshape({b, -1})).norm(2, 1);  // [B]
  return (norm - 1).pow(2).mean();
}

at::Tensor r1_penalty(Discriminator& d, const at::Tensor& real, const at::Tensor& labels) {
  at::Tensor x = real.detach().requires_grad_(true);  // [B, C, S, S]
  return r1_penalty(d->forward(x, labels), x);
}

at::Tensor r1_penalty(const at::Tensor& real_logits, const at::Tensor& x) {
  at::Tensor grad = torch::autograd::grad({real_logits.sum()}, {x}, {}, true, true)[0];  // [B, C, S, S]
  return at_least_float(grad.reshape({x.size(0), -1})).pow(2).sum(1).mean();
}

double ema_beta(double decay, bool rampup, std::int64_t step) {
  if (!rampup) return decay;
  return std::min(decay, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
}

namespace {

// ema = ema + w (g - ema) for parameters (w = 1 - beta: a number, or a 0-dim device tensor for device_scalars);
// buffers (batch-norm statistics) copied.
template <typename Weight>
void ema_lerp(torch::nn::Module& ema, torch::nn::Module& g, const Weight& w) {
  torch::NoGradGuard no_grad;
  auto ep = ema.parameters(), gp = g.parameters();
  for (size_t i = 0; i < ep.size(); ++i) ep[i].lerp_(gp[i], w);
  auto eb = ema.buffers(), gb = g.buffers();
  for (size_t i = 0; i < eb.size(); ++i) eb[i].copy_(gb[i]);
}

}  // namespace

void ema_update(torch::nn::Module& ema, torch::nn::Module& g, double beta) { ema_lerp(ema, g, 1.0 - beta); }

double cosine_schedule(double start, double end, double progress) {
  const double t = std::clamp(progress, 0.0, 1.0);
  return end + (start - end) * 0.5 * (1.0 + std::cos(M_PI * t));
}

double instance_noise_std(const TrainConfig& train, std::int64_t step, std::int64_t total) {
  if (train.instance_noise <= 0) return 0;
  const std::int64_t span = train.instance_noise_steps > 0 ? train.instance_noise_steps : total;
  if (span <= 0 || step >= span) return 0;
  return train.instance_noise * (1.0 - static_cast<double>(step) / static_cast<double>(span));
}

// The CUDA graph of the step (StepOptions::cuda_graph): its inputs and outputs live at fixed addresses, copied in
// before and read after every replay.
struct GanStep::Graph {
  DeviceAdam* adam_g = nullptr;
  DeviceAdam* adam_d = nullptr;
  std::unique_ptr<CudaGraph> cuda;
  int warm = 0;          // eager steps since the start or the last reset
  bool captured = false;
  std::string off;       // why the step runs eagerly ("" = it does not)
  StepInput in;          // the graph's inputs
  at::Tensor stats;      // the graph's statistics output
};

GanStep::GanStep(Generator g, Discriminator d, torch::optim::Optimizer& opt_g, torch::optim::Optimizer& opt_d,
                 StepOptions opts)
    : g_(std::move(g)), d_(std::move(d)), opt_g_(opt_g), opt_d_(opt_d), opts_(std::move(opts)),
      d_params_(d_->parameters()), g_params_(g_->parameters()) {
  if (opts_.amp == "fp16") scale_ = kInitialScale;
  const c10::Device device = d_params_.front().device();
  first_bad_ = torch::zeros({2}, torch::TensorOptions().dtype(torch::kLong).device(device));
  if (opts_.device_scalars || opts_.cuda_graph) {
    opts_.device_scalars = true;
    noise_std_t_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device));
    ema_w_t_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device));
    step_t_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device));
  }
  if (opts_.cuda_graph && (device.is_cuda() || CudaGraph::available(device))) {  // (the CPU: tests' stand-in)
    graph_ = std::make_unique<Graph>();
    graph_->adam_g = dynamic_cast<DeviceAdam*>(&opt_g_);
    graph_->adam_d = dynamic_cast<DeviceAdam*>(&opt_d_);
    if (!graph_->adam_g || !graph_->adam_d) graph_->off = "the optimizers keep their step counts on the host";
    if (!CudaGraph::available(device)) graph_->off = "this build has no CUDA graphs";
    if (opts_.check_every_step) graph_->off = "every step reads its finite check on the host";
  }
}

GanStep::~GanStep() = default;

std::string GanStep::graph_state() const {
  if (!graph_) return "off";
  if (!graph_->off.empty()) return "off: " + graph_->off;
  return graph_->captured ? "captured" : "warming up";
}

void GanStep::reset_graph() {
  if (!graph_ || !graph_->off.empty()) return;
  graph_->cuda.reset();
  graph_->captured = false;
  graph_->warm = 0;
  graph_->in = StepInput();
  graph_->stats = at::Tensor();
}

void GanStep::set_ema(Generator ema, double decay, bool rampup) {
  ema_ = std::move(ema);
  ema_decay_ = decay;
  ema_rampup_ = rampup;
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

StepResult GanStep::run(const at::Tensor& real, const at::Tensor& z, std::int64_t step, bool poison_d) {
  StepInput in;
  in.real = {real};
  in.z = {z};
  return run(in, step, poison_d);
}

void GanStep::fill_device_scalars(const StepInput& in, std::int64_t step) {
  // Kernels that take the value as an argument: queued like any other, no host sync.
  noise_std_t_.fill_(in.noise_std);
  if (ema_) ema_w_t_.fill_(1.0 - ema_beta(ema_decay_, ema_rampup_, step));
  step_t_.fill_(step);
}

void GanStep::stop_graph(const std::string& why) {
  if (!graph_ || !graph_->off.empty()) return;
  reset_graph();
  graph_->off = why;
}

StepResult GanStep::run(const StepInput& in, std::int64_t step, bool poison_d) {
  // A graph replays the step it captured: one without augmentation (the trainer stops it when auto switches ADA on).
  if (in.augment_p > 0 && graph_ && graph_->off.empty())
    stop_graph("augmentation is on (its transforms are drawn on the CPU)");
  if (opts_.device_scalars) fill_device_scalars(in, step);
  if (graph_ && graph_->off.empty() && !poison_d) return graphed(in, step);
  return eager(in, step, poison_d);
}

// Every tensor a step changes, named for the report of a replay that differs from the eager step.
std::vector<std::pair<std::string, at::Tensor>> GanStep::state_tensors() {
  std::vector<std::pair<std::string, at::Tensor>> out;
  auto module = [&](const std::string& name, torch::nn::Module& m) {
    for (const auto& p : m.named_parameters()) out.emplace_back(name + "." + p.key(), p.value());
    for (const auto& b : m.named_buffers()) out.emplace_back(name + "." + b.key(), b.value());
  };
  module("G", *g_);
  module("D", *d_);
  if (ema_) module("G_ema", *ema_);
  if (graph_ && graph_->adam_g && graph_->adam_d) {
    int k = 0;
    for (auto& t : graph_->adam_g->state_tensors()) out.emplace_back("Adam(G) state " + std::to_string(k++), t);
    k = 0;
    for (auto& t : graph_->adam_d->state_tensors()) out.emplace_back("Adam(D) state " + std::to_string(k++), t);
  }
  out.emplace_back("divergence record", first_bad_);
  return out;
}

StepResult GanStep::graphed(const StepInput& in, std::int64_t step) {
  Graph& gr = *graph_;
  const c10::Device device = d_params_.front().device();
  if (!gr.cuda) gr.cuda = std::make_unique<CudaGraph>(device);
  StepResult result;
  if (gr.warm < kGraphWarmup) {  // eager steps on the graph's stream, where the capture will run
    ++gr.warm;
    gr.cuda->on_side_stream([&] { result = eager(in, step, false); });
    return result;
  }
  const size_t d_steps = in.real.size();
  auto off = [&](const std::string& why) {
    gr.off = why;
    gr.cuda.reset();
    gr.captured = false;
  };
  if (!gr.captured) {
    // The graph's inputs: copies of this step's, refilled before every replay.
    gr.in = in;
    for (auto* v : {&gr.in.real, &gr.in.z, &gr.in.real_labels, &gr.in.fake_labels})
      for (auto& t : *v) t = t.clone();
    gr.adam_g->set_count_on_host(false);  // the capture runs nothing: the replays count
    gr.adam_d->set_count_on_host(false);
    gr.adam_g->refresh_device_lr();  // now, so that no fill of a changed learning rate lands inside the graph
    gr.adam_d->refresh_device_lr();
    try {
      // (By value what a later stand-in replay needs: in a real capture the callable runs only now.)
      gr.cuda->capture([this, &gr, step] { gr.stats = eager(gr.in, step, false).stats; });
    } catch (const std::exception& e) {
      set_requires_grad(d_params_, true);  // a failure in G's half of the step left D's parameters frozen
      gr.adam_g->set_count_on_host(true);
      gr.adam_d->set_count_on_host(true);
      std::string what = e.what();
      what = what.substr(0, what.find('\n'));
      off("the capture failed: " + what);
      // A failed capture can leave the device's random generator in capture mode (LibTorch 2.6 resets it only after
      // a capture that ended well): every later draw on the device would throw. The run stops then, with the way out.
      try {
        at::empty({1}, at::TensorOptions().device(device)).normal_();
      } catch (const std::exception&) {
        throw UserError(kExitUsage, "train.cuda_graphs: the step could not be captured as a CUDA graph (" + what +
                                        ") and the device's random generator did not recover; run again with --set "
                                        "train.cuda_graphs=off (--resume auto continues from the last checkpoint)");
      }
      return eager(in, step, false);
    }
    gr.adam_g->set_count_on_host(true);
    gr.adam_d->set_count_on_host(true);
    gr.captured = true;

    // The first replay is checked against an eager step from the same state, inputs and random numbers; the eager
    // result is kept. A replay that differs by more than float rounding (relative to what the step changed) turns
    // the graph off for the run.
    auto tensors = state_tensors();
    std::vector<at::Tensor> before, replayed;
    const at::Tensor rng = gr.cuda->rng_state();
    {
      torch::NoGradGuard no_grad;  // the copies and the replay only: the eager step below needs autograd
      for (auto& t : tensors) before.push_back(t.second.clone());
      gr.cuda->replay();
      for (auto& t : tensors) replayed.push_back(t.second.clone());
      for (size_t i = 0; i < tensors.size(); ++i) tensors[i].second.copy_(before[i]);
    }
    gr.cuda->set_rng_state(rng);
    gr.cuda->on_side_stream([&] { result = eager(gr.in, step, false); });
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> figures;  // per tensor: |replay - eager|, |eager - before|, |eager|, all max
    for (size_t i = 0; i < tensors.size(); ++i) {
      const at::Tensor e = tensors[i].second.to(at::kDouble), r = replayed[i].to(at::kDouble),
                       b = before[i].to(at::kDouble);
      figures.push_back((r - e).abs().max());
      figures.push_back((e - b).abs().max());
      figures.push_back(e.abs().max());
    }
    const at::Tensor f = torch::stack(figures).cpu();  // one read, once per run
    const double tol = opts_.amp == "off" ? 0.05 : 0.1;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const double diff = f[3 * i].item<double>(), update = f[3 * i + 1].item<double>(),
                   scale = f[3 * i + 2].item<double>();
      if (!(diff <= tol * update + 1e-6 * (1 + scale))) {
        char buf[200];
        std::snprintf(buf, sizeof buf, "the replayed step differs from the eager one (%s: max |diff| %.3g, the step "
                                       "changed it by up to %.3g)", tensors[i].first.c_str(), diff, update);
        off(buf);
        break;
      }
    }
    return result;
  }
  // A replay: this step's inputs into the graph's, the learning rates onto the device, the kernels, the host counts.
  bool same = d_steps == gr.in.real.size();
  for (size_t k = 0; same && k < d_steps; ++k)
    same = in.real[k].sizes() == gr.in.real[k].sizes() && in.z[k].sizes() == gr.in.z[k].sizes();
  if (!same) return eager(in, step, false);  // another shape than the captured one
  for (size_t k = 0; k < d_steps; ++k) {
    gr.in.real[k].copy_(in.real[k], /*non_blocking=*/true);
    gr.in.z[k].copy_(in.z[k], true);
    if (k < in.real_labels.size()) gr.in.real_labels[k].copy_(in.real_labels[k], true);
    if (k < in.fake_labels.size()) gr.in.fake_labels[k].copy_(in.fake_labels[k], true);
  }
  gr.adam_g->refresh_device_lr();
  gr.adam_d->refresh_device_lr();
  gr.cuda->replay();
  gr.adam_d->advance_host_steps(static_cast<std::int64_t>(d_steps));
  gr.adam_g->advance_host_steps(1);
  result.stats = gr.stats.clone();  // the next replay overwrites the graph's own
  return result;
}

StepResult GanStep::eager(const StepInput& in, std::int64_t step, bool poison_d) {
  StepResult result;
  const auto fmt = opts_.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const bool cond = g_->config().conditional;
  const size_t d_steps = in.real.size();
  TORCH_CHECK(d_steps >= 1 && in.z.size() == d_steps, "StepInput: one z per real batch");
  TORCH_CHECK(!cond || (in.real_labels.size() == d_steps && in.fake_labels.size() == d_steps),
              "StepInput: a conditional model needs labels for every batch");
  c10::optional<at::ScalarType> amp;
  const at::DeviceType amp_device = in.real.front().device().type();
  if (opts_.amp == "bf16") amp = at::kBFloat16;
  if (opts_.amp == "fp16" && amp_device != at::kCPU) amp = at::kHalf;  // (on the CPU: only the loss scaling, in tests)
  const std::string& loss = opts_.loss;
  // Draws for the whole global batch, keeping this process's rows (all of them for one process).
  const std::int64_t global = in.global_batch > 0 ? in.global_batch : in.real.front().size(0);
  auto rows = [&](const at::Tensor& drawn, std::int64_t n) { return global == n ? drawn : drawn.narrow(0, in.row_begin, n); };
  // Instance noise: the same std on every D input, real and generated (Sonderby et al. 2016).
  auto noisy = [&](const at::Tensor& x) {
    if (in.noise_std <= 0) return x;
    std::vector<std::int64_t> shape = x.sizes().vec();
    shape[0] = global;
    at::Tensor n = rows(torch::randn(shape, x.options().memory_format(at::MemoryFormat::Contiguous)), x.size(0));
    return opts_.device_scalars ? x + n * noise_std_t_ : x + n * in.noise_std;
  };
  // Augmentation of every D input (train.augment), drawn for the global batch like the noise.
  const bool augmenting = !opts_.augment.empty() && in.augment_p > 0;
  auto augmented = [&](const at::Tensor& x) {
    return augmenting ? augment(x, opts_.augment, in.augment_p, in.row_begin, global).contiguous(fmt) : x;
  };
  const double r1_gamma = opts_.r1_gamma * gamma_scale_, r2_gamma = opts_.r2_gamma * gamma_scale_;

  // fp16: a scaled loss's gradients are unscaled in place; an overflow skips the step and halves the scale.
  auto unscale = [&](std::vector<at::Tensor>& params) {
    if (opts_.amp != "fp16") return;
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().mul_(1.0 / scale_);
  };
  // Returns false when the update must not be applied. Deferred mode (CUDA without fp16) only records the first
  // non-finite step on the device; fp16 must decide now (as torch.cuda.amp.GradScaler does).
  auto check = [&](const at::Tensor& l, std::vector<at::Tensor>& params, int net) -> bool {
    if (!opts_.check_every_step && opts_.amp != "fp16") {
      at::Tensor bad = torch::logical_not(torch::isfinite(poison_sum(l, params))) & (first_bad_[0] == 0);
      // [step, net] built on the device (a host tensor copied over would be a sync point), written in place.
      at::Tensor here = opts_.device_scalars ? torch::arange(2, first_bad_.options()) * (net - step_t_) + step_t_
                                             : torch::arange(2, first_bad_.options()) * (net - step) + step;
      first_bad_.copy_(torch::where(bad, here, first_bad_));
      return true;
    }
    if (finite(l, params)) return true;
    if (opts_.amp == "fp16" && scale_ > 1.0) {  // an overflow of the scaled loss: skip, retry with a lower scale
      scale_ /= 2;
      good_steps_ = 0;
      result.status = StepResult::kSkipped;
    } else {
      result.status = net == 1 ? StepResult::kDivergedD : StepResult::kDivergedG;
    }
    return false;
  };

  // Discriminator updates (train.d_steps), each on its own real batch and noise.
  at::Tensor fake, fake_labels, real_logits, fake_logits, loss_d, penalty, real_in, real_y;
  for (size_t k = 0; k < d_steps; ++k) {
    const bool last = k + 1 == d_steps;
    const at::Tensor real = in.real[k].contiguous(fmt);  // [B, C, S, S]
    real_y = cond ? in.real_labels[k] : at::Tensor();
    fake_labels = cond ? in.fake_labels[k] : at::Tensor();
    {
      AutocastScope autocast(amp, amp_device);
      if (last) {
        fake = g_->forward(in.z[k], fake_labels).contiguous(fmt);  // [B, C, S, S], kept for the G update
      } else {
        torch::NoGradGuard no_grad;
        fake = g_->forward(in.z[k], fake_labels).contiguous(fmt);
      }
      // R1 and R2 differentiate D(augment(x)) in x, the image before augmentation (as StyleGAN2-ADA does).
      at::Tensor real_x = noisy(real), fake_x = noisy(fake.detach());
      if (r1_gamma > 0) real_x = real_x.detach().requires_grad_(true);
      if (r2_gamma > 0) fake_x = fake_x.detach().requires_grad_(true);
      real_in = augmented(real_x);
      const at::Tensor fake_in = augmented(fake_x);
      real_logits = d_->forward(real_in, real_y);       // [B]
      fake_logits = d_->forward(fake_in, fake_labels);  // [B]
      loss_d = d_loss(loss, real_logits, fake_logits, opts_.label_smoothing);
      penalty = at::Tensor();
      if (loss == "wgan-gp") {
        at::Tensor eps = rows(torch::rand({global}, real.options().dtype(at::kFloat)), real.size(0));  // [B]
        penalty = gradient_penalty(d_, real_in, fake_in, real_y, eps);
        loss_d = loss_d + opts_.gp_weight * penalty;
      }
      if (r1_gamma > 0) {
        at::Tensor r1 = r1_penalty(real_logits, real_x);
        loss_d = loss_d + 0.5 * r1_gamma * r1;
        penalty = penalty.defined() ? penalty + r1 : r1;
      }
      if (r2_gamma > 0) {
        at::Tensor r2 = r1_penalty(fake_logits, fake_x);
        loss_d = loss_d + 0.5 * r2_gamma * r2;
        penalty = penalty.defined() ? penalty + r2 : r2;
      }
    }
    if (poison_d) loss_d = loss_d * std::nan("");
    drop_grads(d_params_);
    if (sync_) sync_->before_backward(0);
    (opts_.amp == "fp16" ? loss_d * scale_ : loss_d).backward();
    if (sync_) sync_->after_backward(0);
    unscale(d_params_);
    if (!check(loss_d, d_params_, 1)) return result;
    opt_d_.step();
  }

  // Generator update on the last D update's images. D's weight gradients are not needed here.
  at::Tensor fake_logits_g, loss_g;
  set_requires_grad(d_params_, false);
  {
    AutocastScope autocast(amp, amp_device);
    fake_logits_g = d_->forward(augmented(noisy(fake)), fake_labels);  // [B]
    at::Tensor paired;  // rpgan: D's output on the last real batch, with D as it is now
    if (loss == "rpgan") {
      torch::NoGradGuard no_grad;
      paired = d_->forward(real_in.detach(), real_y);  // [B]
    }
    loss_g = g_loss(loss, fake_logits_g, paired);
  }
  drop_grads(g_params_);
  if (sync_) sync_->before_backward(1);
  (opts_.amp == "fp16" ? loss_g * scale_ : loss_g).backward();
  if (sync_) sync_->after_backward(1);
  set_requires_grad(d_params_, true);
  unscale(g_params_);
  if (!check(loss_g, g_params_, 2)) return result;
  opt_g_.step();
  if (ema_) {
    if (opts_.device_scalars)
      ema_lerp(*ema_, *g_, ema_w_t_);
    else
      ema_update(*ema_, *g_, ema_beta(ema_decay_, ema_rampup_, step));
  }
  if (opts_.amp == "fp16" && ++good_steps_ >= kGrowthInterval) {
    scale_ *= 2;
    good_steps_ = 0;
  }

  torch::NoGradGuard no_grad;
  at::Tensor pen = penalty.defined() ? penalty.detach().to(at::kFloat) : torch::zeros({}, loss_d.options());
  result.stats = torch::stack({loss_d.detach().to(at::kFloat), loss_g.detach().to(at::kFloat),
                               d_score(loss, real_logits), d_score(loss, fake_logits), d_score(loss, fake_logits_g),
                               pen.to(at::kFloat), real_logits.detach().to(at::kFloat).sign().mean()});
  return result;
}

}  // namespace gan

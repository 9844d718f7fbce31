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

#include "gan/augment.h"
#include "gan/config.h"
#include "gan/models.h"

namespace torch::optim {
class Optimizer;
}

namespace gan {

// How the step computes. upconv, downconv, channels_last and amp give the same function (up to float rounding); the loss
// settings choose the objective.
struct StepOptions {
  UpconvMode upconv = UpconvMode::kAuto;
  DownconvMode downconv = DownconvMode::kAuto;  // D's stride-2 convs; kDirect whenever a gradient penalty is on
  bool channels_last = false;    // activations (and conv weights) in channels_last
  std::string amp = "off";       // off | bf16 (CUDA or CPU) | fp16 (CUDA only; scales the losses)
  std::string amp_note;          // why train.amp was not followed ("" when it was), for the log
  bool check_every_step = true;  // read the finite flag every step (CPU: free); else only when stats are read
  std::string loss = "bce";      // bce | minimax | lsgan | hinge | wgan-gp | rpgan (train.loss)
  double gp_weight = 10;         // wgan-gp lambda
  double r1_gamma = 0;           // R1 gamma (0 = off)
  double r2_gamma = 0;           // R2 gamma (0 = off)
  double label_smoothing = 0;    // one-sided: real targets 1 - s
  std::vector<AugOp> augment;    // ops applied to every D input (train.augment; empty = off) with StepInput's p
  // The step's schedules (EMA weight, instance-noise std, the step number of a divergence report, Adam's learning
  // rate) read from device tensors filled before the step rather than from host numbers: the form a CUDA graph can
  // replay. The same arithmetic either way (tests/test_cuda_graph.cpp checks it bitwise on the CPU).
  bool device_scalars = false;
  // Capture the step as a CUDA graph after kGraphWarmup eager steps and replay it from then on (train.cuda_graphs;
  // needs a CUDA device, DeviceAdam optimizers and device_scalars). The first replay is checked against an eager
  // step from the same state; a capture that fails or differs is reported once and the step runs eagerly.
  bool cuda_graph = false;
};

// Eager steps before a CUDA graph is captured (cuDNN's benchmark, the optimizer's state and the allocator settle).
constexpr int kGraphWarmup = 3;

// Why `train` cannot be captured as a CUDA graph ("" when it can): the gradient penalties' double backward, fp16 loss
// scaling (decided on the host), augmentation (drawn on the CPU; train.augment auto is captured until it switches ADA
// on), a beta2 schedule, or `world_size` > 1 processes.
std::string cuda_graph_blocker(const TrainConfig& train, int world_size);

// The losses of train.loss, from D's logits. `smoothing` lowers the real target (bce, minimax, lsgan).
// rpgan (R3GAN, Huang et al. 2024) pairs row i of the real and fake batches: D minimises
// mean softplus(-(D(x_i) - D(G(z_i)))), G minimises mean softplus(-(D(G(z_i)) - D(x_i))) (g_loss needs real_logits).
at::Tensor d_loss(const std::string& loss, const at::Tensor& real_logits, const at::Tensor& fake_logits,
                  double smoothing = 0);
at::Tensor g_loss(const std::string& loss, const at::Tensor& fake_logits, const at::Tensor& real_logits = {});
// What the log calls D(x) / D(G(z)): the mean probability for bce and minimax, the mean raw output otherwise.
at::Tensor d_score(const std::string& loss, const at::Tensor& logits);
// WGAN-GP (Gulrajani et al. 2017): mean over the batch of (|grad_x D(x_hat)|_2 - 1)^2 at x_hat = eps x + (1 - eps)
// x_fake, eps [B] uniform. Differentiable in D's weights (create_graph).
at::Tensor gradient_penalty(Discriminator& d, const at::Tensor& real, const at::Tensor& fake, const at::Tensor& labels,
                            const at::Tensor& eps);
// R1 (Mescheder et al. 2018): mean over the batch of |grad_x D(x)|^2 on real images (multiply by gamma / 2). R2 is
// the same on generated images (R3GAN); both use these functions.
at::Tensor r1_penalty(Discriminator& d, const at::Tensor& real, const at::Tensor& labels);
// The same from D's output `real_logits` [B] on `x` (which required grad before that forward pass), so that the
// training step reuses the forward pass its D loss already made on the real batch.
at::Tensor r1_penalty(const at::Tensor& real_logits, const at::Tensor& x);
// EMA decay at G update `step` (1-based): min(decay, (1 + step) / (10 + step)) with ramp-up, else decay.
double ema_beta(double decay, bool rampup, std::int64_t step);
// ema = beta * ema + (1 - beta) * g for parameters; buffers (batch-norm statistics) copied.
void ema_update(torch::nn::Module& ema, torch::nn::Module& g, double beta);
// A cosine schedule: start at progress 0, end from progress 1 on, end + (start - end) (1 + cos(pi t)) / 2 between.
double cosine_schedule(double start, double end, double progress);
// Instance noise std at `step` of `total`: linear from train.instance_noise to 0 over instance_noise_steps (or total).
double instance_noise_std(const TrainConfig& train, std::int64_t step, std::int64_t total);

// One training step's inputs: per D update (train.d_steps of them) a real batch and its noise; the G update reuses
// the last D update's generated images (as the DCGAN reference does). Labels only for conditional models.
// In a distributed run each process holds rows [row_begin, row_begin + B) of a global batch of `global_batch`; the
// step's own random draws (instance noise, the gradient penalty's mixing weights) are drawn for the whole global
// batch and sliced the same way, so that every process draws the same numbers as one process would.
struct StepInput {
  std::vector<at::Tensor> real;         // [B, C, S, S] each, on the device
  std::vector<at::Tensor> real_labels;  // [B] int64 each
  std::vector<at::Tensor> z;            // [B, nz] each
  std::vector<at::Tensor> fake_labels;  // [B] int64 each
  double noise_std = 0;                 // instance noise added to every D input
  double augment_p = 0;                 // probability of each augmentation op per image (1 = DiffAugment)
  std::int64_t row_begin = 0;           // this process's first row of the global batch
  std::int64_t global_batch = 0;        // rows of the global batch (0 = B: one process)
};

// Averages each network's gradients across the processes of a data-parallel run (distributed.h implements it);
// GanStep calls it around every backward pass. `net` is 0 for D, 1 for G.
class GradientSync {
 public:
  virtual ~GradientSync() = default;
  virtual void before_backward(int net) = 0;
  virtual void after_backward(int net) = 0;  // returns once every parameter's .grad holds the average
};

// The step's options from the config for `device` (auto choices resolved) in a run of `world_size` processes.
// train.cuda_graphs: on with a config that cannot be captured is a UserError naming the key that prevents it.
StepOptions step_options(const TrainConfig& train, const c10::Device& device, int world_size = 1);

// The precision train.amp gives on `device`, where `cpu_bf16` is cpu_bf16_features() (platform.h): CUDA takes off,
// bf16 and fp16 as they are and auto as off; a CPU takes bf16 and auto as bf16 when it has native bf16, else off,
// and fp16 as off. `note` says why a request was not followed ("" when it was or nothing was asked).
std::string resolve_amp(const std::string& amp, const c10::Device& device, const std::string& cpu_bf16,
                        std::string* note);

// Applies the options to the models (call before the optimizers create their state).
void prepare_models(Generator& g, Discriminator& d, const StepOptions& opts);

struct StepResult {
  enum Status { kOk, kDivergedD, kDivergedG, kSkipped } status = kOk;  // kSkipped: fp16 overflow, scale lowered
  // [loss_d, loss_g, D(x), D(G(z)) before D's update, D(G(z)) after, penalty, E[sign(D(x))] (ADA's r_t)], on the
  // device
  at::Tensor stats;
};

class GanStep {
 public:
  GanStep(Generator g, Discriminator d, torch::optim::Optimizer& opt_g, torch::optim::Optimizer& opt_d,
          StepOptions opts);
  // real: [B, C, S, S] on the device; z: [B, nz] on the device. With `poison_d` the D loss becomes NaN (tests).
  // A non-finite loss or gradient is detected before its optimizer applies it (check_every_step) and the step
  // returns kDivergedD/G with no update made by that network.
  // `step` is the 1-based number of this step, for divergence reports.
  StepResult run(const StepInput& in, std::int64_t step, bool poison_d = false);
  // One D update and one G update on `real` with noise `z` (unconditional models).
  StepResult run(const at::Tensor& real, const at::Tensor& z, std::int64_t step, bool poison_d = false);
  // Keeps `ema` as the exponential moving average of the generator, updated after every G update.
  void set_ema(Generator ema, double decay, bool rampup);
  // Averages gradients across processes before they are checked and applied (none: one process).
  void set_gradient_sync(GradientSync* sync) { sync_ = sync; }
  // Without check_every_step: the first step since the last call whose loss or gradient was non-finite, and which
  // network ('D' or 'G'); {0, 0} when none. Reads one device value (a host sync): call it where stats are read.
  std::pair<std::int64_t, char> take_deferred_divergence();
  // fp16 loss scale (1 otherwise).
  double loss_scale() const { return scale_; }
  // fp16's loss scale and its clean steps since the last change, which checkpoints keep (as GradScaler's state is
  // kept) so that a resumed run does not start again at 65536 and skip steps on the way down. Ignored without fp16.
  std::pair<double, std::int64_t> loss_scale_state() const { return {scale_, good_steps_}; }
  void set_loss_scale_state(double scale, std::int64_t good_steps) {
    if (opts_.amp != "fp16" || !(scale > 0)) return;
    scale_ = scale;
    good_steps_ = static_cast<int>(good_steps);
  }
  // Scales the R1 and R2 gammas (cosine schedules: train.gamma_final).
  void set_gamma_scale(double s) { gamma_scale_ = s; }
  // "captured" (the step replays a CUDA graph), "warming up", "off" or "off: <why>" (a capture that failed or
  // differed from the eager step).
  std::string graph_state() const;
  // Drops a captured graph (after weights or optimizer states were reloaded: it would replay on the old tensors);
  // the next steps warm up and capture again.
  void reset_graph();
  // Drops a captured graph for good: the step runs eagerly from now on and graph_state() says "off: <why>" (train.augment
  // auto switching ADA on; also done by run() for any step with augment_p > 0).
  void stop_graph(const std::string& why);
  ~GanStep();

 private:
  StepResult eager(const StepInput& in, std::int64_t step, bool poison_d);
  StepResult graphed(const StepInput& in, std::int64_t step);
  void fill_device_scalars(const StepInput& in, std::int64_t step);
  std::vector<std::pair<std::string, at::Tensor>> state_tensors();
  bool finite(const at::Tensor& loss, const std::vector<at::Tensor>& params) const;
  Generator g_;
  Discriminator d_;
  torch::optim::Optimizer& opt_g_;
  torch::optim::Optimizer& opt_d_;
  StepOptions opts_;
  std::vector<at::Tensor> d_params_, g_params_;
  at::Tensor first_bad_;  // [2] int64 on the device: step and network (1 = D, 2 = G) of the first non-finite one
  double scale_ = 1.0;
  double gamma_scale_ = 1.0;
  int good_steps_ = 0;
  GradientSync* sync_ = nullptr;
  Generator ema_{nullptr};
  double ema_decay_ = 0;
  bool ema_rampup_ = true;
  // device_scalars: the schedules' values for the step (0-dim, on the device)
  at::Tensor noise_std_t_;  // float: instance-noise std
  at::Tensor ema_w_t_;      // float: 1 - EMA beta
  at::Tensor step_t_;       // int64: the step's number
  // cuda_graph
  struct Graph;
  std::unique_ptr<Graph> graph_;
};

}  // namespace gan

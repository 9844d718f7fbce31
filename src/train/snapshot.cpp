#include "gan/snapshot.h"

#include <torch/torch.h>

#include <mutex>

#include "gan/adam.h"
#include "gan/errors.h"

namespace gan {

Networks build_networks(const Config& cfg, const c10::Device& device, const StepOptions& opts) {
  const ModelConfig& mc = cfg.model;
  const TrainConfig& tc = cfg.train;
  torch::manual_seed(static_cast<std::uint64_t>(tc.seed));
  Networks n;
  n.g = Generator(mc);
  n.d = Discriminator(mc);
  dcgan_init(*n.g);
  dcgan_init(*n.d);
  n.g->to(device);
  n.d->to(device);
  prepare_models(n.g, n.d, opts);
  auto adam = [&](torch::nn::Module& m, double lr, double b1, double b2) {
    return std::make_shared<DeviceAdam>(
        m.parameters(), torch::optim::AdamOptions(lr > 0 ? lr : tc.lr)
                            .betas({b1 >= 0 ? b1 : tc.beta1, b2 >= 0 ? b2 : tc.beta2}));
  };
  n.opt_g = adam(*n.g, tc.lr_g, tc.beta1_g, tc.beta2_g);
  n.opt_d = adam(*n.d, tc.lr_d, tc.beta1_d, tc.beta2_d);
  if (tc.ema_decay > 0) {
    n.g_ema = Generator(mc);
    n.g_ema->to(device);
    n.g_ema->set_upconv_mode(opts.upconv);  // a module setting: loading weights into it keeps it
    copy_weights(*n.g, *n.g_ema);
    n.g_ema->eval();
    for (auto& p : n.g_ema->parameters()) p.requires_grad_(false);
  }
  return n;
}

at::Tensor generator_state(const c10::Device& device) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_generator_state(const c10::Device& device, const at::Tensor& state, std::uint64_t reseed) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  if (state.defined()) gen.set_state(state);
  if (reseed) gen.set_current_seed(reseed);
}

void save_snapshot(const std::string& path, const Config& cfg, Networks& nets, TrainingState& state,
                   std::int64_t step, const LoaderPosition& pos) {
  state.step = step;
  state.data = pos;
  state.rng_state = generator_state(torch::kCPU);
  // On CUDA the device's own generator too (the draws made on the device), so that a resume draws what the
  // uninterrupted run draws.
  const c10::Device device = nets.g->parameters().front().device();
  state.device_rng_state = device.is_cuda() ? generator_state(device) : at::Tensor();
  save_checkpoint(path, cfg, nets.g, nets.d, *nets.opt_g, *nets.opt_d, state, nets.g_ema ? &nets.g_ema : nullptr);
}

void restore_snapshot(const std::string* bytes, const std::string& path, const c10::Device& device,
                      const StepOptions& opts, Networks& nets, TrainingState& state, std::uint64_t reseed) {
  load_checkpoint_bytes(bytes, path, device, nets.g, &nets.d, nets.opt_g.get(), nets.opt_d.get(), &state,
                        nets.g_ema ? &nets.g_ema : nullptr);
  prepare_models(nets.g, nets.d, opts);  // loaded tensors keep the layout they were saved in
  try {
    set_generator_state(torch::kCPU, state.rng_state, reseed);
    if (device.is_cuda()) set_generator_state(device, state.device_rng_state, reseed);
  } catch (const c10::Error& e) {  // a damaged file: the generator refuses the state (its size or contents)
    const std::string what = e.what_without_backtrace();
    throw UserError(kExitCheckpoint, "checkpoint " + path + ": its RNG state does not fit this generator (" +
                                         what.substr(0, what.find('\n')) + "); resume from another checkpoint");
  }
}

}  // namespace gan

// The trainable state of a run and its checkpoints: both networks, the EMA generator, both optimizers, the step, the
// data position and the RNG stream. checkpoint.h holds the file format; this file says what a run puts into it.
#pragma once
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>

#include "gan/checkpoint.h"
#include "gan/config.h"
#include "gan/models.h"
#include "gan/step.h"

namespace torch::optim {
class Adam;
}

namespace gan {

struct Networks {
  Generator g{nullptr};
  Discriminator d{nullptr};
  Generator g_ema{nullptr};  // with train.ema_decay > 0: follows G; grids, evaluation and sampling use it
  std::shared_ptr<torch::optim::Adam> opt_g, opt_d;  // DeviceAdam (adam.h): torch's Adam, step count on the device
  Generator& shown() { return g_ema ? g_ema : g; }  // what grids and evaluation show
};

// Seeds torch's generator with train.seed, builds G and D with the DCGAN init on `device` with `opts` applied, their
// Adam optimizers (train.lr/beta*, per network where set) and, with train.ema_decay > 0, the EMA generator.
Networks build_networks(const Config& cfg, const c10::Device& device, const StepOptions& opts);

// The state of `device`'s default random generator (the CPU's, or a CUDA device's), and setting it back (then
// reseeding it with `reseed` > 0).
at::Tensor generator_state(const c10::Device& device);
void set_generator_state(const c10::Device& device, const at::Tensor& state, std::uint64_t reseed = 0);

// Records the step, the data position and torch's RNG states (the CPU's; on CUDA the device's too) in `state`, then
// writes the checkpoint at `path` atomically.
void save_snapshot(const std::string& path, const Config& cfg, Networks& nets, TrainingState& state,
                   std::int64_t step, const LoaderPosition& pos);

// Restores networks, optimizers, `state` and the RNG stream from the checkpoint at `path`, or from its `bytes` when
// not null (read once and shared by the processes of a distributed run). With `reseed` > 0 the RNG is reseeded
// afterwards (divergence rollbacks draw new noise).
void restore_snapshot(const std::string* bytes, const std::string& path, const c10::Device& device,
                      const StepOptions& opts, Networks& nets, TrainingState& state, std::uint64_t reseed = 0);

}  // namespace gan

// Checkpoints: one versioned torch archive holding both networks, both optimizers, the training position,
// the RNG state, the fixed sample noise and the resolved config text. Written atomically.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include "gan/config.h"
#include "gan/loader_position.h"
#include "gan/models.h"

namespace torch::optim {
class Optimizer;
}

namespace gan {

constexpr std::int64_t kCheckpointFormat = 1;  // bump when the layout changes; newer files are refused

struct TrainingState {
  std::int64_t step = 0;       // optimizer steps done
  LoaderPosition data;         // epoch and position in its order
  at::Tensor rng_state;        // torch's CPU generator (weights init, noise)
  at::Tensor device_rng_state;  // the CUDA generator of a run on CUDA (instance noise, GP's mixing); else undefined
  double loss_scale = 0;        // train.amp fp16: the loss scale (0: none kept)
  std::int64_t loss_scale_good_steps = 0;  // fp16: clean steps since the scale last changed
  at::Tensor fixed_noise;      // [samples, nz] noise for the sample grids
  at::Tensor fixed_labels;     // [samples] int64 classes for the grids of a conditional model (else undefined)
  std::vector<std::string> class_names;  // the data's classes (empty for unlabelled data)
  int world_size = 1;          // processes of the run that saved it (the data position counts global images)
  std::string last_eval;       // the newest evaluation's scores as JSON ("" when none)
  double augment_p = 0;        // train.augment ada: the current probability p
  double ada_sum = 0;          // ada: sum of E[sign(D(real))] over the steps since p last moved
  std::int64_t ada_from = -1;  // train.augment auto: the step from which ADA runs (-1: not switched on yet)
  int ada_regressions = 0;     // auto: evaluations in a row so far whose FD regressed (train.augment_patience)
  std::string upconv_forms;    // train.upconv auto: G's measured forms (tune_upconv), kept so a resume computes alike
  std::string downconv_forms;  // train.downconv auto: D's (tune_downconv), likewise
};

// Saves atomically to `path` (temporary file + fsync + rename).
// With `g_ema` (train.ema_decay > 0) the EMA generator is stored too ("generator_ema").
void save_checkpoint(const std::string& path, const Config& cfg, Generator& g, Discriminator& d,
                     torch::optim::Optimizer& opt_g, torch::optim::Optimizer& opt_d, const TrainingState& state,
                     Generator* g_ema = nullptr);

// Reads the config stored in a checkpoint. Throws UserError(kExitCheckpoint) for a missing, truncated, foreign or
// newer-format file.
Config read_checkpoint_config(const std::string& path);

// Loads weights (and optimizers and state when given) onto `device`. The modules must have been built from the
// checkpoint's config; a mismatch is reported with the differing keys.
// `g_ema` receives the stored EMA generator, or a copy of the generator when the file has none (EMA switched on
// when resuming).
void load_checkpoint(const std::string& path, const c10::Device& device, Generator& g, Discriminator* d = nullptr,
                     torch::optim::Optimizer* opt_g = nullptr, torch::optim::Optimizer* opt_d = nullptr,
                     TrainingState* state = nullptr, Generator* g_ema = nullptr);

// As load_checkpoint, from the checkpoint file's `bytes` when not null (read once and shared by the processes of a
// distributed run); `path` names it in messages.
void load_checkpoint_bytes(const std::string* bytes, const std::string& path, const c10::Device& device, Generator& g,
                           Discriminator* d = nullptr, torch::optim::Optimizer* opt_g = nullptr,
                           torch::optim::Optimizer* opt_d = nullptr, TrainingState* state = nullptr,
                           Generator* g_ema = nullptr);

// The generator a checkpoint's user wants, for sampling and evaluation: rebuilt from the stored config, with the
// EMA weights when the checkpoint has them (`ema` says which), in eval mode on `device`.
struct SamplingModel {
  Config cfg;
  Generator g{nullptr};
  bool ema = false;
  std::vector<std::string> class_names;  // class index -> name (conditional models)
};
SamplingModel load_generator(const std::string& path, const c10::Device& device);

// What a checkpoint holds, as text for people (gan-sample --info): where it is in training, the model and its
// parameter counts, whether it has the EMA generator, the last evaluation, the format and the versions that wrote it,
// and the config. Reads it on the CPU without building anything on a device.
std::string describe_checkpoint(const std::string& path);

// Copies parameters and buffers of `from` into `to` (same architecture).
void copy_weights(torch::nn::Module& from, torch::nn::Module& to);

// "runs/x/checkpoints/latest.pt" style helpers.
std::string checkpoint_dir(const std::string& run_dir);

// What the tools accept for a checkpoint: a .pt file as it is, a run folder (its checkpoints/latest.pt), RUN/best
// (checkpoints/best.pt, the lowest FD of the run's evaluations) or RUN/latest. Throws UserError(kExitUsage) for a
// folder that is no run folder or a run without best.pt, saying what to give instead.
std::string resolve_checkpoint_arg(const std::string& arg);

// The scores stored with a checkpoint (its last evaluation, as JSON; "" when none) and, with `step`, its step.
// Reads no weights.
std::string read_checkpoint_eval(const std::string& path, std::int64_t* step = nullptr);

}  // namespace gan

// The training loop: gan-train's work. What it writes is described in run_folder.h.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gan/config.h"
#include "gan/run_folder.h"

namespace gan {

struct TrainSummary {
  std::string run_dir;
  std::string checkpoint;   // last checkpoint written
  std::string grid;         // last sample grid written
  std::int64_t steps = 0;   // step count at the end
  double images_per_sec = 0;
  int exit_code = 0;        // 0, kExitInterrupted / kExitTerminated (signal) or kExitTimeLimit (train.max_time)
  int rollbacks = 0;        // divergence rollbacks done (train.on_nan: rollback)
  int health_warnings = 0;  // warnings of the health monitor (D saturation, diversity collapse, eval regression)
  std::string eval_json;    // the last evaluation's scores as JSON ("" when eval.every is 0)
  std::int64_t ada_from = -1;  // train.augment auto: the step from which ADA ran (-1: it never switched on)
};

// Test hooks (not reachable from the command line).
struct TrainHooks {
  // Called before the discriminator's backward pass; returning true replaces its loss by NaN (divergence tests).
  std::function<bool(std::int64_t step)> poison_d_loss;
  // Check for non-finite values as on CUDA (deferred to the next metrics/grid/checkpoint step) on any device.
  bool deferred_divergence_check = false;
  // Replaces each evaluation's FD by what it returns for (step, FD) (train.augment auto's regression tests).
  std::function<double(std::int64_t step, double fd)> eval_fd;
};

class DistContext;

// Weights to start a new run from instead of the DCGAN init (gan-train --init-from): files written by gan-export, by
// python/gan_models.py or by the PyTorch DCGAN example (torch.save(dict(net.state_dict()))), .pt or .safetensors.
struct InitWeights {
  std::string g, d;  // "" = the usual init
};

// Trains. With `resume_from` set, continues that checkpoint's run (same folder, step, optimizer and RNG state);
// `cfg` must have the checkpoint's model section. Throws UserError for user-caused failures.
// With `dist`, this process is one rank of a data-parallel run: every rank calls train() with the same config and
// checkpoint path (distributed.h; rank 0 alone needs to see the checkpoint file).
TrainSummary train(const Config& cfg, const std::string& resume_from = "", const TrainHooks& hooks = {},
                   DistContext* dist = nullptr, const InitWeights& init = {});

// Asks a running train() to stop after the current step, saving a checkpoint and a grid (signal-safe).
void request_stop(int signal_number);

}  // namespace gan

// A few float64 training steps from fixed weights and data, for tests that compare computation forms of the step.
#pragma once
#include <torch/torch.h>

#include "gan/models.h"
#include "gan/step.h"

namespace testutil {

struct SteppedModels {
  gan::Generator g{nullptr};
  gan::Discriminator d{nullptr};
  at::Tensor stats;  // the last step's stats
  at::Tensor real;   // the real batch every step used
};

// Builds G and D from `m` (seed `seed`, DCGAN init), prepares them for `tc`'s step options and runs `steps` D+G updates
// in float64 with SGD on one real batch of `batch` images. float64 because in float32 a pre-activation within rounding
// of 0 can land on the other side of a ReLU in one form, and SGD because its update is linear in the gradient (Adam's
// m / sqrt(v) turns the rounding of a ~0 gradient into a whole +-lr step).
// On `device` (the random draws are made on the CPU either way, so every device starts from the same numbers).
inline SteppedModels float64_sgd_steps(const gan::ModelConfig& m, const gan::TrainConfig& tc, int seed, int batch,
                                       int steps, const c10::Device& device = torch::kCPU) {
  torch::manual_seed(seed);
  SteppedModels r{gan::Generator(m), gan::Discriminator(m)};
  gan::dcgan_init(*r.g);
  gan::dcgan_init(*r.d);
  const auto opts = gan::step_options(tc, device);
  r.g->to(device, torch::kDouble);
  r.d->to(device, torch::kDouble);
  gan::prepare_models(r.g, r.d, opts);
  torch::optim::SGD og(r.g->parameters(), torch::optim::SGDOptions(0.05));
  torch::optim::SGD od(r.d->parameters(), torch::optim::SGDOptions(0.05));
  gan::GanStep step(r.g, r.d, og, od, opts);
  r.real = (torch::rand({batch, m.channels, m.image_size, m.image_size}) * 2 - 1).to(device, torch::kDouble);
  for (int i = 1; i <= steps; ++i)
    r.stats = step.run(r.real, torch::randn({batch, m.nz}).to(device, torch::kDouble), i).stats;
  return r;
}

}  // namespace testutil

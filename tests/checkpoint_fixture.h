// Reading a run's checkpoint back in the tests: both networks and the training state, and bitwise comparison.
#pragma once
#include <torch/torch.h>

#include <string>

#include "gan/checkpoint.h"
#include "gan/models.h"

namespace testutil {

struct Nets {
  gan::Generator g{nullptr};
  gan::Discriminator d{nullptr};
  gan::TrainingState state;
};

// G, D and the state of a checkpoint, rebuilt from its stored config on the CPU.
inline Nets load_all(const std::string& ckpt) {
  gan::Config c = gan::read_checkpoint_config(ckpt);
  Nets n{gan::Generator(c.model), gan::Discriminator(c.model), {}};
  torch::optim::Adam og(n.g->parameters()), od(n.d->parameters());
  gan::load_checkpoint(ckpt, torch::kCPU, n.g, &n.d, &og, &od, &n.state);
  return n;
}

// Every parameter and buffer bit for bit.
inline bool bitwise_equal(torch::nn::Module& a, torch::nn::Module& b) {
  auto pb = b.named_parameters();
  for (const auto& p : a.named_parameters())
    if (!torch::equal(p.value(), pb[p.key()])) return false;
  auto bb = b.named_buffers();
  for (const auto& p : a.named_buffers())
    if (!torch::equal(p.value(), bb[p.key()])) return false;
  return true;
}

}  // namespace testutil

// Reading a run's checkpoint back in the tests: both networks and the training state, and bitwise comparison.
#pragma once
#include <torch/torch.h>

#include <memory>
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

// A checkpoint read whole, optimizers too, to change its training state and write it back (as another run's would be).
struct Editable {
  gan::Config cfg;
  Nets nets;
  std::unique_ptr<torch::optim::Adam> og, od;
  void save(const std::string& path) {
    gan::save_checkpoint(path, cfg, nets.g, nets.d, *og, *od, nets.state);
  }
};

inline Editable load_editable(const std::string& ckpt) {
  Editable e;
  e.cfg = gan::read_checkpoint_config(ckpt);
  e.nets = Nets{gan::Generator(e.cfg.model), gan::Discriminator(e.cfg.model), {}};
  e.og = std::make_unique<torch::optim::Adam>(e.nets.g->parameters());
  e.od = std::make_unique<torch::optim::Adam>(e.nets.d->parameters());
  gan::load_checkpoint(ckpt, torch::kCPU, e.nets.g, &e.nets.d, e.og.get(), e.od.get(), &e.nets.state);
  return e;
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

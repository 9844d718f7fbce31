// The trainer's Adam (step count and bias corrections on the device, multi-tensor updates) against torch::optim::Adam:
// bitwise the same weights and states on the CPU, and checkpoints that move between the two.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>
#include <type_traits>

#include "gan/adam.h"
#include "gan/models.h"
#include "gan/step.h"

namespace {

// Parameters of the shapes a DCGAN has: 4-D weights (one channels_last), batch-norm vectors.
std::vector<at::Tensor> make_params(std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<at::Tensor> ps{torch::randn({16, 8, 4, 4}, gen) * 0.02,
                             (torch::randn({8, 4, 4, 4}, gen) * 0.02).contiguous(at::MemoryFormat::ChannelsLast),
                             torch::randn({33}, gen) + 1, torch::zeros({33})};
  for (auto& p : ps) p.requires_grad_(true);
  return ps;
}

// Gradients of step k, the same for both optimizers: varied magnitudes, some exactly zero.
void set_grads(std::vector<at::Tensor>& ps, int k) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + k);
  for (size_t i = 0; i < ps.size(); ++i) {
    at::Tensor g = torch::randn(ps[i].sizes(), gen) * std::pow(10.0, static_cast<double>(i % 3) - 2);
    if (i == 3) g.index_put_({torch::indexing::Slice(0, 5)}, 0);
    ps[i].mutable_grad() = g.contiguous(ps[i].suggest_memory_format());
  }
}

// A parameter's Adam state (LibTorch 1.13 keys states by the TensorImpl address as text, 2.x by the address).
template <typename Map>
typename Map::key_type key_of(const Map&, const at::Tensor& p) {
  if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
    std::ostringstream text;  // as 1.13's c10::guts::to_string wrote it (2.x has no such function)
    text << p.unsafeGetTensorImpl();
    return text.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}
const torch::optim::AdamParamState& state_of(torch::optim::Optimizer& opt, const at::Tensor& p) {
  auto& states = opt.state();
  return static_cast<const torch::optim::AdamParamState&>(*states.at(key_of(states, p)));
}

bool same(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

}  // namespace

TEST(DeviceAdam, GivesBitwiseTheWeightsOfTorchAdam) {
  for (auto betas : {std::make_tuple(0.5, 0.999), std::make_tuple(0.0, 0.99)}) {
    const auto opts = torch::optim::AdamOptions(2e-4).betas(betas);
    std::vector<at::Tensor> a = make_params(7), b = make_params(7);
    torch::optim::Adam ref(a, opts);
    gan::DeviceAdam ours(b, opts);
    for (int k = 0; k < 60; ++k) {
      set_grads(a, k);
      set_grads(b, k);
      ref.step();
      ours.step();
      ASSERT_TRUE(same(a, b)) << "weights differ after step " << k + 1 << " (beta1 " << std::get<0>(betas) << ")";
    }
    // The states too: the moments and the step count that checkpoints hold.
    for (size_t i = 0; i < a.size(); ++i) {
      const auto& sa = state_of(ref, a[i]);
      const auto& sb = state_of(ours, b[i]);
      EXPECT_EQ(sa.step(), 60);
      EXPECT_EQ(sb.step(), 60);
      EXPECT_TRUE(torch::equal(sa.exp_avg(), sb.exp_avg())) << i;
      EXPECT_TRUE(torch::equal(sa.exp_avg_sq(), sb.exp_avg_sq())) << i;
    }
  }
}

TEST(DeviceAdam, CheckpointsMoveBetweenItAndTorchAdam) {
  // 10 steps with one optimizer, saved, loaded into the other kind, 10 more steps: bitwise what 20 steps with one
  // optimizer give, both ways.
  const auto opts = torch::optim::AdamOptions(2e-4).betas({0.5, 0.999});
  std::vector<at::Tensor> ref_p = make_params(3);
  torch::optim::Adam ref(ref_p, opts);
  for (int k = 0; k < 20; ++k) {
    set_grads(ref_p, k);
    ref.step();
  }
  for (bool device_first : {true, false}) {
    std::vector<at::Tensor> p = make_params(3);
    std::unique_ptr<torch::optim::Adam> first, second;
    if (device_first) first = std::make_unique<gan::DeviceAdam>(p, opts);
    else first = std::make_unique<torch::optim::Adam>(p, opts);
    for (int k = 0; k < 10; ++k) {
      set_grads(p, k);
      first->step();
    }
    torch::serialize::OutputArchive out;
    first->save(out);
    std::ostringstream bytes;
    out.save_to(bytes);
    if (device_first) second = std::make_unique<torch::optim::Adam>(p, opts);
    else second = std::make_unique<gan::DeviceAdam>(p, opts);
    std::istringstream in_bytes(bytes.str());
    torch::serialize::InputArchive in;
    in.load_from(in_bytes);
    second->load(in);
    for (int k = 10; k < 20; ++k) {
      set_grads(p, k);
      second->step();
    }
    EXPECT_TRUE(same(p, ref_p)) << (device_first ? "DeviceAdam -> Adam" : "Adam -> DeviceAdam");
  }
}

TEST(DeviceAdam, TrainingStepsEqualThoseWithTorchAdam) {
  // Five D+G updates of a small DCGAN with each optimizer: bitwise the same networks.
  gan::ModelConfig mc;
  mc.image_size = 16;
  mc.nz = 8;
  mc.ngf = mc.ndf = 8;
  auto run = [&](bool device_adam) {
    torch::manual_seed(5);
    gan::Generator g(mc);
    gan::Discriminator d(mc);
    gan::dcgan_init(*g);
    gan::dcgan_init(*d);
    const auto opts = torch::optim::AdamOptions(2e-4).betas({0.5, 0.999});
    std::unique_ptr<torch::optim::Adam> og, od;
    if (device_adam) {
      og = std::make_unique<gan::DeviceAdam>(g->parameters(), opts);
      od = std::make_unique<gan::DeviceAdam>(d->parameters(), opts);
    } else {
      og = std::make_unique<torch::optim::Adam>(g->parameters(), opts);
      od = std::make_unique<torch::optim::Adam>(d->parameters(), opts);
    }
    gan::GanStep step(g, d, *og, *od, gan::step_options(gan::TrainConfig{}, torch::kCPU));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    for (int k = 1; k <= 5; ++k)
      step.run(torch::rand({8, 1, 16, 16}, gen) * 2 - 1, torch::randn({8, 8}, gen), k);
    std::vector<at::Tensor> all = g->parameters();
    for (const auto& p : d->parameters()) all.push_back(p);
    return all;
  };
  EXPECT_TRUE(same(run(true), run(false)));
}

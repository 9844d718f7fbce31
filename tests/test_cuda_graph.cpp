// train.cuda_graphs on the CPU: the capturable form of the step (device_scalars: the EMA weight, the instance-noise
// std, the step number of a divergence record and Adam's learning rate read from device tensors) gives bitwise what
// the host-scalar step gives, which configs can be captured and why not, DeviceAdam's pieces that a replayed step
// needs, and GanStep's graph logic run with CudaGraph's host stand-in. The capture and replay themselves need a GPU:
// tests/test_cuda.cpp (Cuda.GraphedStep*).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <memory>

#include "gan/adam.h"
#include "gan/cuda_graph.h"
#include "gan/errors.h"
#include "gan/models.h"
#include "gan/step.h"

namespace {

gan::ModelConfig small_model() {
  gan::ModelConfig m;
  m.image_size = 16;
  m.channels = 1;
  m.nz = 8;
  m.ngf = m.ndf = 8;
  return m;
}

// Every tensor a training run changes: G, D, the EMA G (parameters and buffers) and both optimizers' moments.
struct Trained {
  gan::Generator g{nullptr}, ema{nullptr};
  gan::Discriminator d{nullptr};
  std::unique_ptr<gan::DeviceAdam> og, od;
  std::string graph_state;  // GanStep::graph_state() at the end
  std::vector<at::Tensor> tensors() {
    std::vector<at::Tensor> out;
    for (torch::nn::Module* m : {static_cast<torch::nn::Module*>(g.get()), static_cast<torch::nn::Module*>(d.get()),
                                 static_cast<torch::nn::Module*>(ema.get())}) {
      for (auto& p : m->parameters()) out.push_back(p.detach());
      for (auto& b : m->buffers()) out.push_back(b);
    }
    for (auto& t : og->state_tensors()) out.push_back(t);
    for (auto& t : od->state_tensors()) out.push_back(t);
    return out;
  }
};

// `steps` steps with instance noise, EMA with ramp-up, two D updates per G update and a learning rate that changes
// every step (a schedule), in the host-scalar or the device-scalar form; with `graph`, as a graph (the stand-in).
Trained train(bool device_scalars, int steps, std::int64_t poison_at = 0, bool graph = false) {
  const gan::ModelConfig m = small_model();
  torch::manual_seed(5);
  Trained r;
  r.g = gan::Generator(m);
  r.d = gan::Discriminator(m);
  gan::dcgan_init(*r.g);
  gan::dcgan_init(*r.d);
  r.ema = gan::Generator(m);
  {
    torch::NoGradGuard no_grad;
    auto ep = r.ema->parameters(), gp = r.g->parameters();
    for (size_t i = 0; i < ep.size(); ++i) ep[i].copy_(gp[i]);
  }
  gan::TrainConfig tc;
  gan::StepOptions opts = gan::step_options(tc, torch::kCPU);
  opts.check_every_step = false;  // the deferred check, as on CUDA
  opts.device_scalars = device_scalars;
  opts.cuda_graph = graph;
  gan::prepare_models(r.g, r.d, opts);
  r.og = std::make_unique<gan::DeviceAdam>(r.g->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
  r.od = std::make_unique<gan::DeviceAdam>(r.d->parameters(), torch::optim::AdamOptions(3e-4).betas({0.0, 0.99}));
  gan::GanStep step(r.g, r.d, *r.og, *r.od, opts);
  step.set_ema(r.ema, 0.99, /*rampup=*/true);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  torch::manual_seed(6);  // instance noise draws from the default generator
  for (int k = 1; k <= steps; ++k) {
    gan::StepInput in;
    for (int j = 0; j < 2; ++j) {
      in.real.push_back(torch::rand({6, 1, 16, 16}, gen) * 2 - 1);
      in.z.push_back(torch::randn({6, 8}, gen));
    }
    in.noise_std = 0.1 * (1.0 - k / 10.0);
    static_cast<torch::optim::AdamOptions&>(r.og->param_groups()[0].options()).lr(2e-4 * (1.0 - 0.05 * k));
    auto res = step.run(in, k, k == poison_at);
    EXPECT_EQ(res.status, gan::StepResult::kOk);
    EXPECT_EQ(res.stats.numel(), 7);
  }
  if (poison_at > 0) {
    auto bad = step.take_deferred_divergence();
    EXPECT_EQ(bad.first, poison_at);
    EXPECT_EQ(bad.second, 'D');
  }
  r.graph_state = step.graph_state();
  return r;
}

// Every tensor of `a` and `b` bit for bit; prints the ones that differ.
int differing_tensors(Trained& a, Trained& b) {
  auto x = a.tensors(), y = b.tensors();
  EXPECT_EQ(x.size(), y.size());
  int differing = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    const double d = (x[i].to(torch::kDouble) - y[i].to(torch::kDouble)).abs().max().item<double>();
    if (d != 0) {
      ++differing;
      std::printf("tensor %zu differs by %.3g\n", i, d);
    }
  }
  return differing;
}

}  // namespace

TEST(CudaGraphForm, DeviceScalarStepGivesBitwiseTheHostScalarStep) {
  Trained host = train(false, 6), dev = train(true, 6);
  EXPECT_EQ(differing_tensors(host, dev), 0) << "of " << host.tensors().size() << " tensors";
  // The schedules did something: the EMA moved away from G, the learning rate change reached the weights.
  EXPECT_GT((host.ema->parameters()[0] - host.g->parameters()[0]).abs().max().item<double>(), 0);
}

// GanStep's graph logic on the CPU with CudaGraph's host stand-in (each replay calls the kept step again): the warm-up,
// the capture, the first replay checked against an eager step from the same state and random numbers, this step's
// inputs copied into the graph's, and the host step counts that checkpoints save advanced after each replay. Over 9
// steps (3 warm-up, the capture and checked replay, 5 replays; the noise std stays above 0, where the step's host
// test of it, frozen in a graph, agrees) it gives bitwise what the plain steps give, and it stays captured.
TEST(CudaGraphForm, GraphLogicOnTheHostStandInGivesBitwiseThePlainStep) {
  struct StandIn {
    StandIn() { gan::CudaGraph::set_host_stand_in(true); }
    ~StandIn() { gan::CudaGraph::set_host_stand_in(false); }
  } stand_in;
  Trained plain = train(true, 9), graphed = train(true, 9, 0, /*graph=*/true);
  EXPECT_EQ(plain.graph_state, "off");
  EXPECT_EQ(graphed.graph_state, "captured");
  EXPECT_EQ(differing_tensors(plain, graphed), 0) << "of " << plain.tensors().size() << " tensors";
  for (auto* t : {&plain, &graphed}) {
    for (auto& kv : t->og->state()) EXPECT_EQ(static_cast<torch::optim::AdamParamState&>(*kv.second).step(), 9);
    for (auto& kv : t->od->state()) EXPECT_EQ(static_cast<torch::optim::AdamParamState&>(*kv.second).step(), 18);
  }
}

TEST(CudaGraphForm, DeviceScalarDivergenceRecordNamesTheStep) {
  train(true, 5, /*poison_at=*/3);  // the checks are inside: step 3, network D
  train(false, 5, /*poison_at=*/3);
}

TEST(CudaGraphForm, WhichConfigsCanBeCaptured) {
  const c10::Device cuda(torch::kCUDA, 0);
  gan::TrainConfig tc;
  EXPECT_EQ(gan::cuda_graph_blocker(tc, 1), "");
  EXPECT_TRUE(gan::step_options(tc, cuda).cuda_graph);
  EXPECT_TRUE(gan::step_options(tc, cuda).device_scalars);
  EXPECT_FALSE(gan::step_options(tc, torch::kCPU).cuda_graph);  // a CPU step has no graph
  EXPECT_FALSE(gan::step_options(tc, cuda, /*world_size=*/2).cuda_graph);
  tc.ema_decay = 0.999;
  tc.instance_noise = 0.1;
  tc.d_steps = 2;
  tc.lr_final = 0.1;  // the lr schedule is read on the device
  tc.amp = "bf16";
  EXPECT_TRUE(gan::step_options(tc, cuda).cuda_graph);
  tc.cuda_graphs = "off";
  EXPECT_FALSE(gan::step_options(tc, cuda).cuda_graph);
  struct Case {
    const char* key;
    std::function<void(gan::TrainConfig&)> set;
  };
  const std::vector<Case> cases = {
      {"train.loss wgan-gp", [](gan::TrainConfig& t) { t.loss = "wgan-gp"; }},
      {"train.r1_gamma", [](gan::TrainConfig& t) { t.r1_gamma = 1; }},
      {"train.r2_gamma", [](gan::TrainConfig& t) { t.r2_gamma = 1; }},
      {"train.amp fp16", [](gan::TrainConfig& t) { t.amp = "fp16"; }},
      {"train.augment", [](gan::TrainConfig& t) { t.augment = "diffaug"; }},
      {"train.beta2_final", [](gan::TrainConfig& t) { t.beta2_final = 0.99; }},
  };
  for (const auto& c : cases) {
    gan::TrainConfig t;
    c.set(t);
    EXPECT_NE(gan::cuda_graph_blocker(t, 1).find(c.key), std::string::npos) << c.key;
    EXPECT_FALSE(gan::step_options(t, cuda).cuda_graph) << c.key;  // auto: eager, said in the log
    t.cuda_graphs = "on";
    try {
      gan::step_options(t, cuda);
      ADD_FAILURE() << "train.cuda_graphs on with " << c.key << " was accepted";
    } catch (const gan::UserError& e) {
      EXPECT_EQ(e.code(), gan::kExitUsage);
      EXPECT_NE(std::string(e.what()).find(c.key), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("train.cuda_graphs"), std::string::npos) << e.what();
    }
  }
  EXPECT_NE(gan::cuda_graph_blocker(gan::TrainConfig{}, 2).find("distributed"), std::string::npos);
  // train.augment auto trains unaugmented until it switches ADA on: captured until then (GanStep::stop_graph).
  gan::TrainConfig au;
  au.augment = "auto";
  EXPECT_EQ(gan::cuda_graph_blocker(au, 1), "");
  EXPECT_TRUE(gan::step_options(au, cuda).cuda_graph);
  EXPECT_FALSE(gan::step_options(au, cuda).augment.empty());  // ADA's ops, at p = 0 until then
}

TEST(CudaGraphForm, DeviceAdamFollowsAChangingLearningRateBitwise) {
  auto make = [] {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    return std::vector<at::Tensor>{torch::randn({8, 4, 4, 4}, gen).requires_grad_(true),
                                   torch::randn({9}, gen).requires_grad_(true)};
  };
  std::vector<at::Tensor> a = make(), b = make();
  torch::optim::Adam ref(a, torch::optim::AdamOptions(1e-3).betas({0.5, 0.999}));
  gan::DeviceAdam ours(b, torch::optim::AdamOptions(1e-3).betas({0.5, 0.999}));
  for (int k = 0; k < 12; ++k) {
    const double lr = 1e-3 * (0.5 + 0.5 * std::cos(0.3 * k));
    static_cast<torch::optim::AdamOptions&>(ref.param_groups()[0].options()).lr(lr);
    static_cast<torch::optim::AdamOptions&>(ours.param_groups()[0].options()).lr(lr);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(100 + k);
    for (size_t i = 0; i < a.size(); ++i) {
      at::Tensor g = torch::randn(a[i].sizes(), gen);
      a[i].mutable_grad() = g.clone();
      b[i].mutable_grad() = g.clone();
    }
    ref.step();
    ours.step();
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

TEST(CudaGraphForm, DeviceAdamHostCountsPauseDuringACaptureAndAdvanceAfterReplays) {
  at::Tensor p = torch::ones({3}).requires_grad_(true);
  gan::DeviceAdam opt({p}, torch::optim::AdamOptions(1e-2));
  auto count = [&] {
    auto& states = opt.state();
    for (auto& kv : states) return static_cast<torch::optim::AdamParamState&>(*kv.second).step();
    return std::int64_t{-1};
  };
  p.mutable_grad() = torch::ones({3});
  opt.step();
  EXPECT_EQ(count(), 1);
  opt.set_count_on_host(false);  // a capture: the update is recorded, not counted
  opt.step();
  EXPECT_EQ(count(), 1);
  opt.set_count_on_host(true);
  opt.advance_host_steps(3);  // three replays
  EXPECT_EQ(count(), 4);
  // The device count ran on (2 steps really executed here on the CPU): the saved states hold the host count.
  const auto st = opt.state_tensors();
  ASSERT_EQ(st.size(), 3u);  // exp_avg, exp_avg_sq, the group's device step count
  EXPECT_EQ(st[2].item<double>(), 2.0);
}

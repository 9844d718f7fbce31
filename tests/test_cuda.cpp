// The CUDA path on a GPU (skipped where none is visible, as on the development machines; scripts/gpu-check.sh runs
// them on a GPU machine): the step on CUDA against the CPU for each convolution form, AMP, DeviceAdam on the device,
// a checkpoint trained on CUDA sampled on the CPU and resumed on CUDA, gan-eval's FID Inception, the CUDA-graph
// capture (against the eager step, in training, beside a thread that pins batches), the fp16 loss scale across a
// resume, and NCCL with one rank.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <thread>

#include "gan/adam.h"
#include "gan/augment.h"
#include "gan/checkpoint.h"
#include "gan/distributed.h"
#include "gan/inception.h"
#include "gan/models.h"
#include "gan/self_check.h"
#include "gan/step.h"
#include "gan/trainer.h"
#include "checkpoint_fixture.h"
#include "dist_fixture.h"
#include "image_fixtures.h"
#include "step_fixture.h"
#include "test_util.h"

namespace {

bool no_gpu() { return !torch::cuda::is_available(); }

// An RGB DCGAN of size x size images with nz = ngf = ndf = width.
gan::ModelConfig rgb_model(int size, int width) {
  gan::ModelConfig m;
  m.image_size = size;
  m.channels = 3;
  m.nz = m.ngf = m.ndf = width;
  return m;
}

double max_diff(torch::nn::Module& a, torch::nn::Module& b) {
  double worst = 0;
  auto pb = b.named_parameters();
  for (const auto& p : a.named_parameters())
    worst = std::max(worst, (p.value().cpu().to(torch::kDouble) - pb[p.key()].cpu().to(torch::kDouble))
                                .abs().max().item<double>());
  return worst;
}

// 64 gray 16x16 images of stripes in an IDX file: the CUDA training tests' data. Returns its path.
std::string write_stripes(const testutil::TempDir& dir) {
  fixtures::Bytes px;
  for (int i = 0; i < 64; ++i)
    for (int k = 0; k < 256; ++k) px.push_back(static_cast<std::uint8_t>((k % 16 < 8 ? 200 : 40) + (i * 7 + k) % 13));
  fixtures::write_file(dir / "d-idx3-ubyte", fixtures::idx_images(64, 16, 16, px));
  return dir / "d-idx3-ubyte";
}

// A tiny training run of `steps` steps on CUDA, on write_stripes' images in `dir`.
gan::Config cuda_run(const testutil::TempDir& dir, std::int64_t steps) {
  gan::Config cfg = testutil::tiny_train_config(dir, write_stripes(dir), steps);
  cfg.train.device = "cuda";
  return cfg;
}

// Resumes `cfg`'s run from `checkpoint` to `steps`, trains the same config from scratch to `steps` (run NAME-whole), and
// returns the max |difference| of the two generators.
double resumed_vs_uninterrupted(const gan::Config& cfg, const std::string& checkpoint, std::int64_t steps) {
  gan::Config more = cfg;
  more.train.steps = steps;
  gan::TrainSummary r = gan::train(more, checkpoint);
  EXPECT_EQ(r.steps, steps);
  gan::Config whole = cfg;
  whole.output.name = cfg.output.name + "-whole";
  whole.train.steps = steps;
  gan::TrainSummary w = gan::train(whole);
  gan::Generator a(cfg.model), b(cfg.model);
  gan::load_checkpoint(r.checkpoint, torch::kCPU, a);
  gan::load_checkpoint(w.checkpoint, torch::kCPU, b);
  return max_diff(*a, *b);
}

// A 16x16 RGB GAN on CUDA with the trainer's Adam and a step with `tc`'s options, and one batch of 8 to run it on.
struct SmallCudaStep {
  gan::Generator g{nullptr};
  gan::Discriminator d{nullptr};
  gan::StepOptions opts;
  std::unique_ptr<gan::DeviceAdam> og, od;
  std::unique_ptr<gan::GanStep> step;
  gan::StepInput in;
  SmallCudaStep(const gan::TrainConfig& tc, int seed) {
    const c10::Device dev(torch::kCUDA, 0);
    torch::manual_seed(seed);
    g = gan::Generator(rgb_model(16, 16));
    d = gan::Discriminator(rgb_model(16, 16));
    g->to(dev);
    d->to(dev);
    opts = gan::step_options(tc, dev);
    gan::prepare_models(g, d, opts);
    og = std::make_unique<gan::DeviceAdam>(g->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
    od = std::make_unique<gan::DeviceAdam>(d->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
    step = std::make_unique<gan::GanStep>(g, d, *og, *od, opts);
    in.real.push_back(torch::rand({8, 3, 16, 16}).to(dev) * 2 - 1);  // [8, 3, 16, 16]
    in.z.push_back(torch::randn({8, 16}).to(dev));                    // [8, 16]
  }
};

}  // namespace

TEST(Cuda, StepEqualsTheCpuStepForEachConvolutionForm) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  // float64 so that the comparison measures the forms, not float32 rounding (see step_fixture.h).
  const gan::ModelConfig m = rgb_model(32, 16);
  for (const char* up : {"auto", "phase", "gemm", "transposed"})
    for (const char* down : {"auto", "direct"}) {
      gan::TrainConfig tc;
      tc.upconv = up;
      tc.downconv = down;
      auto cpu = testutil::float64_sgd_steps(m, tc, 4, 8, 3, torch::kCPU);
      auto gpu = testutil::float64_sgd_steps(m, tc, 4, 8, 3, c10::Device(torch::kCUDA, 0));
      const double dg = max_diff(*cpu.g, *gpu.g), dd = max_diff(*cpu.d, *gpu.d);
      std::printf("CUDA step vs CPU step, upconv %s downconv %s: max |G diff| %.2e |D diff| %.2e\n", up, down, dg, dd);
      EXPECT_LT(dg, 1e-9) << up << "/" << down;
      EXPECT_LT(dd, 1e-9) << up << "/" << down;
    }
}

// The start-up check on the GPU: cuDNN's float32 (TF32 where LibTorch allows it) against float64 on the CPU.
TEST(Cuda, StartUpMathsCheckPassesOnTheGpu) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  const gan::MathsCheck r = gan::check_float32_maths(torch::Device(torch::kCUDA, 0));
  std::printf("  CUDA maths check: largest relative error %.2e (tolerance %.0e)\n", r.worst, gan::kMathsTolerance);
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_GT(r.worst, 0.0);
  EXPECT_EQ(gan::ensure_sound_device_maths(torch::Device(torch::kCUDA, 0)), "");
  EXPECT_TRUE(at::globalContext().userEnabledCuDNN());  // no fallback was needed
}

TEST(Cuda, MixedPrecisionStepsAreFiniteAndCloseToFloat32) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  const gan::ModelConfig m = rgb_model(32, 32);
  auto run = [&](const std::string& amp) {
    torch::manual_seed(3);
    gan::Generator g(m);
    gan::Discriminator d(m);
    gan::dcgan_init(*g);
    gan::dcgan_init(*d);
    const c10::Device dev(torch::kCUDA, 0);
    g->to(dev);
    d->to(dev);
    gan::TrainConfig tc;
    tc.amp = amp;
    const auto opts = gan::step_options(tc, dev);
    gan::prepare_models(g, d, opts);
    gan::DeviceAdam og(g->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
    gan::DeviceAdam od(d->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
    gan::GanStep step(g, d, og, od, opts);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
    at::Tensor stats;
    for (int k = 1; k <= 5; ++k) {
      auto r = step.run((torch::rand({16, 3, 32, 32}, gen) * 2 - 1).to(dev), torch::randn({16, 32}, gen).to(dev), k);
      stats = r.stats.cpu();
    }
    return std::make_pair(stats, g->forward(torch::randn({4, 32}, gen).to(dev)).detach().to(torch::kFloat).cpu());
  };
  auto [s32, x32] = run("off");
  for (const char* amp : {"bf16", "fp16"}) {
    auto [s, x] = run(amp);
    const double d = (x - x32).abs().max().item<double>();
    std::printf("CUDA %s: losses D %.4f G %.4f (float32 %.4f %.4f); max |image diff| after 5 steps %.3g\n", amp,
                s[0].item<double>(), s[1].item<double>(), s32[0].item<double>(), s32[1].item<double>(), d);
    EXPECT_TRUE(torch::isfinite(s).all().item<bool>()) << amp;
    EXPECT_LT(std::abs(s[0].item<double>() - s32[0].item<double>()), 0.1) << amp;
    EXPECT_LT(d, 0.1) << amp;
  }
}

TEST(Cuda, DeviceAdamOnTheGpuFollowsTheCpu) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  at::Tensor init = torch::randn({64, 32}, gen), grads = torch::randn({20, 64, 32}, gen);
  auto run = [&](const c10::Device& dev) {
    at::Tensor p = init.to(dev).requires_grad_(true);
    gan::DeviceAdam opt({p}, torch::optim::AdamOptions(1e-3).betas({0.5, 0.999}));
    for (int k = 0; k < 20; ++k) {
      p.mutable_grad() = grads[k].to(dev);
      opt.step();
    }
    return p.detach().cpu();
  };
  const double d = (run(torch::kCPU) - run(c10::Device(torch::kCUDA, 0))).abs().max().item<double>();
  std::printf("CUDA DeviceAdam vs CPU after 20 steps: max |diff| %.2e\n", d);
  EXPECT_LT(d, 1e-5);
}

TEST(Cuda, AugmentationOnTheGpuEqualsTheCpu) {
  // ADA's fused ops (one sampling, one colour matrix) and DiffAugment's, drawn on the CPU, applied on the device,
  // forward and the gradient G gets through them.
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  const at::Tensor x = torch::rand({16, 3, 32, 32}) * 2 - 1, w = torch::randn({16, 3, 32, 32});
  for (const char* mode : {"ada", "diffaug"}) {
    const std::vector<gan::AugOp> ops = gan::parse_augment_policy("", mode);
    auto run = [&](const c10::Device& dev) {
      at::Tensor in = x.to(dev).requires_grad_(true);
      torch::manual_seed(8);
      at::Tensor y = gan::augment(in, ops, std::string(mode) == "ada" ? 0.6 : 1.0);
      (y * w.to(dev)).sum().backward();
      return std::make_pair(y.detach().cpu(), in.grad().cpu());
    };
    const auto [cpu_y, cpu_g] = run(torch::kCPU);
    const auto [gpu_y, gpu_g] = run(c10::Device(torch::kCUDA, 0));
    const double dy = (cpu_y - gpu_y).abs().max().item<double>(), dg = (cpu_g - gpu_g).abs().max().item<double>();
    std::printf("augment %s on CUDA vs CPU: max |diff| images %.2e, gradients %.2e\n", mode, dy, dg);
    EXPECT_LT(dy, 1e-5) << mode;
    EXPECT_LT(dg, 1e-4) << mode;
    EXPECT_FALSE(cpu_y.equal(x)) << mode;
  }
}

TEST(Cuda, FidInceptionFeaturesOnTheGpuFollowTheCpu) {
  // gan-eval's FID Inception (random weights: the same network) on CUDA in chunks of 64, channels-last, against the
  // CPU; cuDNN may use TF32 for these convolutions, as PyTorch (and so pytorch-fid) does by default.
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(4);
  gan::FidInception cpu;
  gan::FidInception gpu;
  gan::load_fid_inception(gpu, gan::state_dict(*cpu), "cpu weights");
  gpu->to(c10::Device(torch::kCUDA, 0));
  gpu->set_channels_last(true);
  const at::Tensor x = torch::rand({6, 3, 64, 64}) * 2 - 1;
  const at::Tensor a = cpu->features(x, 2);
  const at::Tensor b = gpu->features(x.to(c10::Device(torch::kCUDA, 0)), 64).cpu();
  const double rel = ((a - b).abs().max() / a.abs().max()).item<double>();
  std::printf("FID Inception on CUDA vs CPU: max relative difference %.2e\n", rel);
  EXPECT_LT(rel, 1e-2);
  EXPECT_GT(a.abs().max().item<double>(), 0);
}

TEST(Cuda, ACheckpointTrainedOnCudaSamplesOnTheCpuAndResumesOnCuda) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  testutil::TempDir dir;
  gan::Config cfg = cuda_run(dir, 6);
  gan::TrainSummary s = gan::train(cfg);
  ASSERT_EQ(s.steps, 6);
  gan::SamplingModel model = gan::load_generator(s.checkpoint, torch::kCPU);
  at::Tensor images = model.g->forward(torch::randn({4, cfg.model.nz}));  // [4, 1, 16, 16] on the CPU
  EXPECT_TRUE(torch::isfinite(images).all().item<bool>());
  const double d = resumed_vs_uninterrupted(cfg, s.checkpoint, 9);
  std::printf("CUDA resumed at step 6 vs uninterrupted, step 9: max |G diff| %.2e\n", d);
  EXPECT_LT(d, 1e-4);  // cuDNN's backward kernels need not be bitwise deterministic
  // Instance noise is drawn on the device: the checkpoint keeps the device's generator, so the resumed run draws
  // what the uninterrupted one drew.
  gan::Config noisy = cfg;
  noisy.output.name = "noisy";
  noisy.train.instance_noise = 0.3;
  gan::TrainSummary n = gan::train(noisy);
  ASSERT_EQ(n.steps, 6);
  EXPECT_TRUE(testutil::load_all(n.checkpoint).state.device_rng_state.defined());
  const double dn = resumed_vs_uninterrupted(noisy, n.checkpoint, 9);
  std::printf("CUDA with instance noise, resumed at step 6 vs uninterrupted, step 9: max |G diff| %.2e\n", dn);
  EXPECT_LT(dn, 1e-4);
}

// train.amp fp16 on CUDA: the checkpoint keeps the loss scale, and a resumed run goes on at the scale it had come down
// to (as a long run's does) instead of starting again at 65536 and skipping steps on the way down.
TEST(Cuda, AnFp16RunKeepsItsLossScaleAcrossAResume) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  testutil::TempDir dir;
  gan::Config cfg = cuda_run(dir, 4);
  cfg.train.amp = "fp16";
  gan::TrainSummary s = gan::train(cfg);
  ASSERT_EQ(s.steps, 4);
  testutil::Editable e = testutil::load_editable(s.checkpoint);
  EXPECT_GT(e.nets.state.loss_scale, 0);  // 65536 unless an overflow halved it
  e.nets.state.loss_scale = 1024;
  e.nets.state.loss_scale_good_steps = 3;
  e.save(s.checkpoint);
  gan::Config more = cfg;
  more.train.steps = 6;
  gan::TrainSummary r = gan::train(more, s.checkpoint);
  ASSERT_EQ(r.steps, 6);
  const double after = testutil::load_all(r.checkpoint).state.loss_scale;
  std::printf("fp16 loss scale: 1024 in the checkpoint at step 4, %g at step 6 after the resume\n", after);
  EXPECT_GT(after, 0);
  EXPECT_LE(after, 1024);  // kept (halved only by an overflow), not back at 65536
}

// train.cuda_graphs: the step captured after the warm-up and replayed gives what the eager step gives (EMA, instance
// noise, a learning rate that changes every step, two D updates per step), on the same inputs.
TEST(Cuda, GraphedStepEqualsTheEagerStep) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  const gan::ModelConfig m = rgb_model(32, 32);
  const c10::Device dev(torch::kCUDA, 0);
  at::globalContext().setDeterministicCuDNN(true);  // so that the comparison measures the graph, not cuDNN's atomics
  struct Out {
    gan::Generator g{nullptr}, ema{nullptr};
    std::string state;
    at::Tensor stats;
  };
  auto run = [&](const std::string& graphs) {
    torch::manual_seed(3);
    Out o{gan::Generator(m), gan::Generator(m)};
    gan::Discriminator d(m);
    gan::dcgan_init(*o.g);
    gan::dcgan_init(*d);
    o.g->to(dev);
    d->to(dev);
    o.ema->to(dev);
    gan::TrainConfig tc;
    tc.cuda_graphs = graphs;
    tc.cudnn_benchmark = false;
    const auto opts = gan::step_options(tc, dev);
    EXPECT_EQ(opts.cuda_graph, graphs != "off");
    gan::prepare_models(o.g, d, opts);
    gan::prepare_models(o.ema, d, opts);
    {
      torch::NoGradGuard no_grad;
      auto ep = o.ema->parameters(), gp = o.g->parameters();
      for (size_t i = 0; i < ep.size(); ++i) ep[i].copy_(gp[i]);
    }
    gan::DeviceAdam og(o.g->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
    gan::DeviceAdam od(d->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
    gan::GanStep step(o.g, d, og, od, opts);
    step.set_ema(o.ema, 0.999, true);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
    for (int k = 1; k <= 12; ++k) {
      gan::StepInput in;
      for (int j = 0; j < 2; ++j) {
        in.real.push_back((torch::rand({16, 3, 32, 32}, gen) * 2 - 1).to(dev));
        in.z.push_back(torch::randn({16, 32}, gen).to(dev));
      }
      in.noise_std = 0.0;  // instance noise draws on the device: its numbers differ between the two runs' streams
      static_cast<torch::optim::AdamOptions&>(og.param_groups()[0].options()).lr(2e-4 * (1.0 - 0.04 * k));
      auto r = step.run(in, k);
      EXPECT_EQ(r.status, gan::StepResult::kOk);
      o.stats = r.stats.cpu();
    }
    EXPECT_EQ(step.take_deferred_divergence().first, 0);
    EXPECT_EQ(og.state().size(), o.g->parameters().size());
    for (auto& kv : og.state())  // the host counts the checkpoints save advanced with the replays
      EXPECT_EQ(static_cast<torch::optim::AdamParamState&>(*kv.second).step(), 12);
    for (auto& kv : od.state()) EXPECT_EQ(static_cast<torch::optim::AdamParamState&>(*kv.second).step(), 24);
    o.state = step.graph_state();
    return o;
  };
  Out eager = run("off"), graphed = run("on");
  at::globalContext().setDeterministicCuDNN(false);
  EXPECT_EQ(graphed.state, "captured");
  const double dg = max_diff(*eager.g, *graphed.g), de = max_diff(*eager.ema, *graphed.ema);
  const double ds = (eager.stats - graphed.stats).abs().max().item<double>();
  std::printf("CUDA graph (%s) vs eager after 12 steps: max |G diff| %.2e, |EMA diff| %.2e, |stats diff| %.2e\n",
              graphed.state.c_str(), dg, de, ds);
  EXPECT_LT(dg, 1e-5);
  EXPECT_LT(de, 1e-5);
  EXPECT_LT(ds, 1e-4);
}

// A run with train.cuda_graphs auto: the log says when the step was captured, and the checkpoint it writes resumes
// to the same weights as an uninterrupted run; a config that cannot be captured says why and runs eagerly.
TEST(Cuda, TrainingWithCudaGraphsLogsTheCaptureAndResumes) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  testutil::TempDir dir;
  gan::Config cfg = cuda_run(dir, 8);
  cfg.train.ema_decay = 0.99;
  gan::TrainSummary s = gan::train(cfg);
  ASSERT_EQ(s.steps, 8);
  const std::string log = testutil::slurp(dir / "runs/tiny/train.log");
  EXPECT_NE(log.find("CUDA graphs: step 4 captured"), std::string::npos) << log;
  const double d = resumed_vs_uninterrupted(cfg, s.checkpoint, 12);
  std::printf("CUDA graphs: resumed at step 8 vs uninterrupted, step 12: max |G diff| %.2e\n", d);
  EXPECT_LT(d, 1e-4);
  gan::Config r1 = cfg;
  r1.output.name = "r1";
  r1.train.r1_gamma = 1;
  gan::TrainSummary e = gan::train(r1);
  ASSERT_EQ(e.steps, 8);
  const std::string log1 = testutil::slurp(dir / "runs/r1/train.log");
  EXPECT_NE(log1.find("CUDA graphs off: train.r1_gamma"), std::string::npos) << log1;
  // train.augment auto on data it cannot evaluate (no labels) runs ADA from step 0: nothing to capture.
  gan::Config au = cfg;
  au.output.name = "auto";
  au.train.augment = "auto";
  ASSERT_EQ(gan::train(au).steps, 8);
  const std::string log2 = testutil::slurp(dir / "runs/auto/train.log");
  EXPECT_NE(log2.find("CUDA graphs off: train.augment auto runs ADA from step 0"), std::string::npos) << log2;
}

// A captured step stops replaying once a step brings augmentation (train.augment auto switching ADA on): the graph
// holds the step without it. The step then runs eagerly and says why.
TEST(Cuda, AGraphStopsWhenAugmentationStarts) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  gan::TrainConfig tc;
  tc.augment = "auto";
  SmallCudaStep s(tc, 5);
  ASSERT_TRUE(s.opts.cuda_graph);
  gan::GanStep& step = *s.step;
  gan::StepInput& in = s.in;
  for (int k = 1; k <= gan::kGraphWarmup + 2; ++k) EXPECT_EQ(step.run(in, k).status, gan::StepResult::kOk);
  EXPECT_EQ(step.graph_state(), "captured");
  in.augment_p = 0.5;
  for (int k = gan::kGraphWarmup + 3; k <= gan::kGraphWarmup + 4; ++k) {
    gan::StepResult r = step.run(in, k);
    EXPECT_EQ(r.status, gan::StepResult::kOk);
    EXPECT_TRUE(torch::isfinite(r.stats.cpu()).all().item<bool>());
  }
  EXPECT_EQ(step.graph_state(), "off: augmentation is on (its transforms are drawn on the CPU)");
  step.stop_graph("again");  // stopping a stopped graph keeps the first reason
  EXPECT_EQ(step.graph_state(), "off: augmentation is on (its transforms are drawn on the CPU)");
}

// The trainer's loader thread pins the next batch while the main thread captures the step: its host allocator's
// calls (cudaHostAlloc, cudaEventQuery on blocks a copy used) are refused during a capture in CUDA's default global
// capture mode, failing the batch. The capture is thread-local (src/train/cuda_graph.cpp): both go on.
TEST(Cuda, AStepIsCapturedWhileAnotherThreadPinsBatches) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  SmallCudaStep s(gan::TrainConfig{}, 6);
  ASSERT_TRUE(s.opts.cuda_graph);
  const c10::Device dev(torch::kCUDA, 0);
  std::atomic<bool> stop{false}, failed{false};
  std::atomic<std::int64_t> pinned{0};
  std::string error;
  at::Tensor target = torch::empty({64, 3, 16, 16}, torch::TensorOptions().device(dev));
  std::thread loader([&] {  // like BatchLoader::fill, plus the copy that makes the next allocation query an event
    try {
      while (!stop) {
        at::Tensor batch =
            torch::empty({64, 3, 16, 16}, torch::TensorOptions().pinned_memory(true));  // [64, 3, 16, 16] pinned
        batch.fill_(0.5);
        target.copy_(batch, /*non_blocking=*/true);
        ++pinned;
      }
    } catch (const std::exception& e) {
      error = e.what();
      failed = true;
    }
  });
  while (pinned < 20 && !failed) std::this_thread::yield();
  std::vector<int> status;
  for (int k = 1; k <= gan::kGraphWarmup + 3; ++k) status.push_back(s.step->run(s.in, k).status);
  const std::int64_t by_then = pinned;
  stop = true;
  loader.join();
  std::printf("capture beside a pinning thread: %s, %lld batches pinned meanwhile\n", s.step->graph_state().c_str(),
              static_cast<long long>(by_then));
  EXPECT_FALSE(failed) << error.substr(0, error.find('\n'));
  EXPECT_EQ(s.step->graph_state(), "captured");
  for (int st : status) EXPECT_EQ(st, gan::StepResult::kOk);
  EXPECT_GT(by_then, 20);
}

TEST(Cuda, NcclWithOneRank) {
  if (no_gpu()) GTEST_SKIP() << "no CUDA device";
  if (!gan::nccl_available()) GTEST_SKIP() << "this LibTorch has no NCCL";
  auto server = testutil::local_store();
  const gan::LaunchEnv env = testutil::worker_env(0, 1, server->getPort());
  gan::DistConfig cfg;
  cfg.backend = "nccl";
  cfg.timeout = "60s";
  const c10::Device dev(torch::kCUDA, 0);
  gan::DistContext dist(env, cfg, dev);
  EXPECT_EQ(dist.backend(), "nccl");
  at::Tensor t = torch::arange(5, torch::TensorOptions().dtype(torch::kFloat).device(dev));
  dist.all_reduce_sum(t);
  EXPECT_EQ(t[4].item<float>(), 4.0f);
  at::Tensor p = torch::ones({10}, torch::TensorOptions().device(dev)).requires_grad_(true);
  gan::GradientReducer reducer(dist, {p}, {}, 25, true);
  reducer.before_backward(0);
  (p * 3).sum().backward();
  reducer.after_backward(0);
  EXPECT_EQ(p.grad().cpu()[0].item<float>(), 3.0f);
}

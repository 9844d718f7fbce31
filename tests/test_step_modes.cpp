// The CUDA path's step logic, run on the CPU: the deferred divergence check (no host sync inside the step), fp16
// loss scaling with overflow skips, and the options step_options() picks for a CUDA device. The arithmetic of these
// modes does not depend on the device, so a machine without a GPU can check it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gan/errors.h"
#include "gan/models.h"
#include "gan/platform.h"
#include "gan/step.h"

namespace {

struct Nets {
  gan::ModelConfig m;
  gan::Generator g{nullptr};
  gan::Discriminator d{nullptr};
  std::unique_ptr<torch::optim::Adam> og, od;
  std::unique_ptr<gan::GanStep> step;

  explicit Nets(gan::StepOptions opts) {
    m.image_size = 16;
    m.channels = 1;
    m.ngf = m.ndf = 8;
    torch::manual_seed(11);
    g = gan::Generator(m);
    d = gan::Discriminator(m);
    gan::dcgan_init(*g);
    gan::dcgan_init(*d);
    gan::prepare_models(g, d, opts);
    og = std::make_unique<torch::optim::Adam>(g->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
    od = std::make_unique<torch::optim::Adam>(d->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.999}));
    step = std::make_unique<gan::GanStep>(g, d, *og, *od, opts);
  }
  // Every parameter and buffer of both networks, copied.
  std::vector<at::Tensor> weights() const {
    std::vector<at::Tensor> w;
    for (auto& p : g->parameters()) w.push_back(p.detach().clone());
    for (auto& p : d->parameters()) w.push_back(p.detach().clone());
    return w;
  }
};

// The same batches for every run: step i uses data(i).
std::pair<at::Tensor, at::Tensor> data(int i) {
  auto gen = at::detail::createCPUGenerator(100 + i);
  return {torch::rand({8, 1, 16, 16}, gen) * 2 - 1, torch::randn({8, 100}, gen)};  // real [8, 1, 16, 16], z [8, nz]
}

double max_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  return worst;
}

gan::StepOptions cpu_options() {
  torch::set_num_threads(1);
  return gan::step_options(gan::TrainConfig{}, torch::kCPU);
}

}  // namespace

TEST(StepModes, CudaDeviceOptionsAvoidHostSyncsAndKeepAmp) {
  gan::TrainConfig tc;
  tc.amp = "bf16";
  const auto cuda = gan::step_options(tc, c10::Device(torch::kCUDA, 0));
  EXPECT_FALSE(cuda.check_every_step);  // a per-step finite check would be a host sync
  EXPECT_TRUE(cuda.channels_last);      // channels_last: auto is on for CUDA
  EXPECT_EQ(cuda.amp, "bf16");
  const auto cpu = gan::step_options(tc, torch::kCPU);
  EXPECT_TRUE(cpu.check_every_step);
  EXPECT_FALSE(cpu.channels_last);
  EXPECT_EQ(cpu.amp, gan::cpu_bf16_features().empty() ? "off" : "bf16");  // bf16 on a CPU only where it is native
  tc.channels_last = "off";
  EXPECT_FALSE(gan::step_options(tc, c10::Device(torch::kCUDA, 0)).channels_last);
  tc.amp = "fp16";
  tc.loss = "wgan-gp";
  try {
    gan::step_options(tc, c10::Device(torch::kCUDA, 0));
    ADD_FAILURE() << "fp16 with a gradient penalty was accepted";
  } catch (const gan::UserError& e) {
    EXPECT_EQ(e.code(), gan::kExitUsage);
    EXPECT_NE(std::string(e.what()).find("train.amp"), std::string::npos) << e.what();
  }
}

TEST(StepModes, DeferredCheckTrainsIdenticallyAndReportsTheFirstBadStep) {
  auto eager_opts = cpu_options();
  auto deferred_opts = eager_opts;
  deferred_opts.check_every_step = false;
  Nets eager(eager_opts), deferred(deferred_opts);
  for (int i = 1; i <= 3; ++i) {
    auto [real, z] = data(i);
    EXPECT_EQ(eager.step->run(real, z, i).status, gan::StepResult::kOk);
    EXPECT_EQ(deferred.step->run(real, z, i).status, gan::StepResult::kOk);
  }
  EXPECT_EQ(max_diff(eager.weights(), deferred.weights()), 0.0);  // the check reads values, it changes none
  EXPECT_EQ(deferred.step->take_deferred_divergence(), std::make_pair(std::int64_t{0}, '\0'));

  // A NaN D loss at step 5: the step itself goes on (no sync), the report names step 5 and D even though every
  // later step is non-finite too (the poisoned update reached the weights), and a report is given once.
  for (int i = 4; i <= 7; ++i) {
    auto [real, z] = data(i);
    EXPECT_EQ(deferred.step->run(real, z, i, /*poison_d=*/i == 5).status, gan::StepResult::kOk) << i;
  }
  EXPECT_EQ(deferred.step->take_deferred_divergence(), std::make_pair(std::int64_t{5}, 'D'));
  auto [real, z] = data(8);
  deferred.step->run(real, z, 8);
  EXPECT_EQ(deferred.step->take_deferred_divergence(), std::make_pair(std::int64_t{8}, 'D'));  // still NaN, new report
  EXPECT_EQ(deferred.step->take_deferred_divergence(), std::make_pair(std::int64_t{0}, '\0'));

  // The eager check stops the same poisoned step before D's optimizer applies it.
  auto before = eager.weights();
  auto [r5, z5] = data(5);
  EXPECT_EQ(eager.step->run(r5, z5, 5, true).status, gan::StepResult::kDivergedD);
  EXPECT_EQ(max_diff(before, eager.weights()), 0.0);
}

TEST(StepModes, Fp16LossScalingIsExactAndAnOverflowSkipsTheStep) {
  auto plain_opts = cpu_options();
  auto scaled_opts = plain_opts;
  scaled_opts.amp = "fp16";  // on the CPU this runs the scaling logic in float32 (autocast only acts on CUDA)
  Nets plain(plain_opts), scaled(scaled_opts);
  EXPECT_EQ(plain.step->loss_scale(), 1.0);
  EXPECT_EQ(scaled.step->loss_scale(), 65536.0);
  for (int i = 1; i <= 3; ++i) {
    auto [real, z] = data(i);
    plain.step->run(real, z, i);
    EXPECT_EQ(scaled.step->run(real, z, i).status, gan::StepResult::kOk);
  }
  // A power-of-two scale and its inverse are exact in float32: the scaled run makes the same updates.
  const double diff = max_diff(plain.weights(), scaled.weights());
  std::printf("  fp16 loss scaling vs none, 3 steps: max abs weight difference %.2e\n", diff);
  EXPECT_LT(diff, 1e-7);

  // An overflow (a non-finite scaled loss) skips the whole step, D and G, and halves the scale; training goes on.
  auto before = scaled.weights();
  auto [real, z] = data(4);
  EXPECT_EQ(scaled.step->run(real, z, 4, /*poison_d=*/true).status, gan::StepResult::kSkipped);
  EXPECT_EQ(scaled.step->loss_scale(), 32768.0);
  EXPECT_EQ(max_diff(before, scaled.weights()), 0.0);
  auto [real5, z5] = data(5);
  auto result = scaled.step->run(real5, z5, 5);
  EXPECT_EQ(result.status, gan::StepResult::kOk);
  EXPECT_TRUE(torch::isfinite(result.stats).all().item<bool>());
  EXPECT_GT(max_diff(before, scaled.weights()), 0.0);

  // The state a checkpoint keeps: the scale and the clean steps since it changed (one, step 5); a resumed step takes
  // it back. Without fp16 there is none to take.
  EXPECT_EQ(scaled.step->loss_scale_state(), std::make_pair(32768.0, std::int64_t{1}));
  Nets resumed(scaled_opts);
  resumed.step->set_loss_scale_state(1024.0, 7);
  EXPECT_EQ(resumed.step->loss_scale_state(), std::make_pair(1024.0, std::int64_t{7}));
  plain.step->set_loss_scale_state(1024.0, 7);
  EXPECT_EQ(plain.step->loss_scale(), 1.0);
}

TEST(StepModes, AmpIsBf16OnACpuOnlyWhereItIsNative) {
  const c10::Device cpu(torch::kCPU), cuda(torch::kCUDA, 0);
  std::string note;
  struct Case {
    const char* amp;
    c10::Device device;
    const char* features;
    const char* want;
    const char* note;  // a word of the note, "" for none
  };
  for (const Case& c : {Case{"auto", cpu, "avx512_bf16 amx_bf16", "bf16", ""}, Case{"auto", cpu, "", "off", ""},
                        Case{"bf16", cpu, "avx512_bf16", "bf16", ""}, Case{"bf16", cpu, "", "off", "no native bf16"},
                        Case{"fp16", cpu, "amx_bf16", "off", "for CUDA"}, Case{"off", cpu, "amx_bf16", "off", ""},
                        Case{"auto", cuda, "", "off", ""}, Case{"bf16", cuda, "", "bf16", ""},
                        Case{"fp16", cuda, "", "fp16", ""}}) {
    EXPECT_EQ(gan::resolve_amp(c.amp, c.device, c.features, &note), c.want) << c.amp << " " << c.features;
    if (*c.note)
      EXPECT_NE(note.find(c.note), std::string::npos) << note;
    else
      EXPECT_EQ(note, "") << c.amp;
  }
  // What this machine has, as the trainer logs it.
  const std::string here = gan::cpu_bf16_features();
  std::printf("native bf16 here: %s\n", here.empty() ? "none" : here.c_str());
  EXPECT_TRUE(here.empty() || here.rfind("avx512_bf16", 0) == 0 || here.rfind("amx_bf16", 0) == 0) << here;
  // bf16 on the CPU runs D's convolutions through oneDNN, not the float32 Winograd form.
  gan::TrainConfig tc;
  tc.amp = "bf16";
  const auto o = gan::step_options(tc, cpu);
  if (o.amp == "bf16") EXPECT_EQ(o.downconv, gan::DownconvMode::kDirect);
}

TEST(StepModes, CpuBf16StepIsFiniteAndCloseToFloat32) {
  // Forced on whatever the processor (without native bf16, oneDNN emulates it: slow, same arithmetic).
  auto run = [](const std::string& amp, double r1) {
    gan::StepOptions opts = cpu_options();
    opts.amp = amp;
    opts.r1_gamma = r1;
    opts.downconv = gan::DownconvMode::kDirect;
    Nets n(opts);
    at::Tensor stats;
    for (int i = 1; i <= 5; ++i) {
      auto [real, z] = data(i);
      auto r = n.step->run(real, z, i);
      EXPECT_EQ(r.status, gan::StepResult::kOk) << amp;
      stats = r.stats;
    }
    return std::make_pair(stats, n.weights());
  };
  for (double r1 : {0.0, 1.0}) {
    auto [s32, w32] = run("off", r1);
    auto [s16, w16] = run("bf16", r1);
    std::printf("CPU bf16 (R1 gamma %g): losses D %.4f G %.4f (float32 %.4f %.4f); max |weight diff| after 5 steps "
                "%.3g\n", r1, s16[0].item<double>(), s16[1].item<double>(), s32[0].item<double>(),
                s32[1].item<double>(), max_diff(w16, w32));
    EXPECT_TRUE(torch::isfinite(s16).all().item<bool>());
    EXPECT_LT(std::abs(s16[0].item<double>() - s32[0].item<double>()), 0.05);
    EXPECT_LT(std::abs(s16[1].item<double>() - s32[1].item<double>()), 0.05);
    // Five Adam steps move a weight by at most ~5 * lr = 1e-3: bf16 rounding may flip signs of tiny updates, no more.
    EXPECT_LT(max_diff(w16, w32), 2e-3);
    EXPECT_GT(max_diff(w16, w32), 0.0) << "bf16 changed nothing: autocast did not run";
    for (const auto& w : w16) EXPECT_EQ(w.scalar_type(), at::kFloat);  // master weights stay float32
  }
}

// The R3GAN objective (Huang et al., NeurIPS 2024): the relativistic pairing loss, R2 on generated images next to R1,
// cosine schedules of lr, gamma and beta2; and that RpGAN + R1 + R2 trains on a small image set without diverging.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>

#include "gan/checkpoint.h"
#include "gan/config.h"
#include "gan/models.h"
#include "gan/step.h"
#include "gan/trainer.h"
#include "checkpoint_fixture.h"
#include "image_fixtures.h"
#include "test_util.h"

using testutil::slurp;
using testutil::TempDir;

namespace {

gan::ModelConfig small_model() {
  gan::ModelConfig m;
  m.image_size = 16;
  m.channels = 1;
  m.nz = 8;
  m.ngf = 8;
  m.ndf = 8;
  m.d_norm = "none";
  return m;
}

// |grad_x D(x)|^2 of one image by central differences (double precision).
double squared_gradient_by_differences(gan::Discriminator& d, const at::Tensor& image) {
  torch::NoGradGuard ng;
  at::Tensor x = image.clone();
  at::Tensor flat = x.view({-1});
  const double h = 1e-6;
  double sq = 0;
  for (std::int64_t k = 0; k < flat.size(0); ++k) {
    const double v = flat[k].item<double>();
    flat[k] = v + h;
    const double up = d->forward(x).item<double>();
    flat[k] = v - h;
    const double down = d->forward(x).item<double>();
    flat[k] = v;
    sq += std::pow((up - down) / (2 * h), 2);
  }
  return sq;
}

}  // namespace

TEST(R3gan, RelativisticPairingLossesFollowTheirFormulas) {
  auto r = torch::tensor({2.0, -1.0, 0.5}, torch::kDouble), f = torch::tensor({-3.0, 0.0, 1.5}, torch::kDouble);
  // D: softplus(-(D(x_i) - D(G(z_i)))); G: softplus(-(D(G(z_i)) - D(x_i))), paired row by row.
  const double d = (std::log1p(std::exp(-5.0)) + std::log1p(std::exp(1.0)) + std::log1p(std::exp(1.0))) / 3;
  const double g = (std::log1p(std::exp(5.0)) + std::log1p(std::exp(-1.0)) + std::log1p(std::exp(-1.0))) / 3;
  EXPECT_NEAR(gan::d_loss("rpgan", r, f).item<double>(), d, 1e-6);
  EXPECT_NEAR(gan::g_loss("rpgan", f, r).item<double>(), g, 1e-6);
  // Pairing matters: the same values in another order give another loss (a batch-mean loss would not change).
  EXPECT_GT(std::abs(gan::d_loss("rpgan", r, f.flip({0})).item<double>() - d), 1e-3);
  // Shifting both outputs by a constant changes nothing: only differences count.
  EXPECT_NEAR(gan::d_loss("rpgan", r + 7, f + 7).item<double>(), d, 1e-6);
  EXPECT_THROW(gan::g_loss("rpgan", f), c10::Error);  // G's loss needs the paired real outputs
}

TEST(R3gan, R2IsTheSquaredInputGradientOnGeneratedImages) {
  torch::manual_seed(21);
  gan::ModelConfig m = small_model();
  gan::Discriminator d(m);
  gan::Generator g(m);
  d->to(torch::kDouble);
  g->to(torch::kDouble);
  at::Tensor fake;
  {
    torch::NoGradGuard ng;
    fake = g->forward(torch::randn({2, m.nz}, torch::kDouble));  // [2, 1, 16, 16]
  }
  at::Tensor x = fake.detach().requires_grad_(true);
  const double r2 = gan::r1_penalty(d->forward(x), x).item<double>();
  const double expect =
      (squared_gradient_by_differences(d, fake.narrow(0, 0, 1)) + squared_gradient_by_differences(d, fake.narrow(0, 1, 1))) / 2;
  EXPECT_NEAR(r2, expect, 1e-5 * std::max(1.0, expect));
}

TEST(R3gan, TheStepPenalisesGeneratedImagesWithR2) {
  torch::manual_seed(22);
  gan::ModelConfig m = small_model();
  gan::Generator g(m);
  gan::Discriminator d(m), before(m);
  gan::dcgan_init(*g);
  gan::dcgan_init(*d);
  gan::copy_weights(*d, *before);
  torch::optim::Adam og(g->parameters(), torch::optim::AdamOptions(1e-4).betas({0.0, 0.99}));
  torch::optim::Adam od(d->parameters(), torch::optim::AdamOptions(1e-4).betas({0.0, 0.99}));
  gan::StepOptions o;
  o.loss = "rpgan";
  o.r2_gamma = 1.0;
  o.downconv = gan::DownconvMode::kDirect;
  gan::GanStep step(g, d, og, od, o);
  const at::Tensor real = torch::rand({4, 1, 16, 16}) * 2 - 1, z = torch::randn({4, m.nz});
  at::Tensor fake;
  {
    torch::NoGradGuard ng;
    fake = g->forward(z);
  }
  at::Tensor x = fake.detach().requires_grad_(true);
  const double expect = gan::r1_penalty(before->forward(x), x).item<double>();  // D before its update
  gan::StepResult r = step.run(real, z, 1);
  ASSERT_EQ(r.status, gan::StepResult::kOk);
  EXPECT_NEAR(r.stats[5].item<double>(), expect, 1e-4 * std::max(1.0, expect));
  EXPECT_GT(expect, 0.0);
}

TEST(R3gan, CosineSchedulesRunFromStartToEnd) {
  EXPECT_DOUBLE_EQ(gan::cosine_schedule(2e-4, 5e-5, 0.0), 2e-4);
  EXPECT_DOUBLE_EQ(gan::cosine_schedule(2e-4, 5e-5, 0.5), (2e-4 + 5e-5) / 2);
  EXPECT_DOUBLE_EQ(gan::cosine_schedule(2e-4, 5e-5, 1.0), 5e-5);
  EXPECT_DOUBLE_EQ(gan::cosine_schedule(2e-4, 5e-5, 3.0), 5e-5);  // held after the schedule's end
  EXPECT_NEAR(gan::cosine_schedule(0.9, 0.99, 0.25), 0.99 + (0.9 - 0.99) * (1 + std::cos(M_PI / 4)) / 2, 1e-15);
}

TEST(R3gan, ScheduledRunsEndAtTheirFinalValuesAndResumeOnTheSameCurve) {
  TempDir dir;
  gan::Config c = testutil::tiny_train_config(dir, testutil::write_halves_dataset(dir, 64, 16), 8);
  c.train.loss = "rpgan";
  c.train.r1_gamma = c.train.r2_gamma = 0.1;
  c.train.beta1 = 0.0;
  c.train.beta2 = 0.9;
  c.train.lr_final = 0.25;
  c.train.gamma_final = 0.1;
  c.train.beta2_final = 0.99;
  c.train.schedule_kimg = 8 * 16 / 1000.0;  // the 8 steps of the full run, also when a shorter run is resumed
  c.output.name = "full";
  gan::validate_config(c);
  gan::TrainSummary a = gan::train(c);
  gan::Config part = c;
  part.output.name = "part";
  part.train.steps = 5;
  gan::TrainSummary b = gan::train(part);
  gan::Config more = part;
  more.train.steps = 8;
  gan::TrainSummary r = gan::train(more, b.checkpoint);
  testutil::Nets x = testutil::load_all(a.checkpoint), y = testutil::load_all(r.checkpoint);
  EXPECT_TRUE(testutil::bitwise_equal(*x.g, *y.g));
  EXPECT_TRUE(testutil::bitwise_equal(*x.d, *y.d));
  // Each metrics row has the learning rate and beta2 its step used: the schedule's at (step - 1) / 8.
  const std::string rows = slurp(a.run_dir + "/metrics.jsonl");
  for (int step : {1, 5, 8}) {
    char want[160];
    std::snprintf(want, sizeof want, "\"lr_g\": %.6g, \"lr_d\": %.6g, \"beta2\": %.6g, \"gamma_scale\": %.6g",
                  gan::cosine_schedule(2e-4, 5e-5, (step - 1) / 8.0), gan::cosine_schedule(2e-4, 5e-5, (step - 1) / 8.0),
                  gan::cosine_schedule(0.9, 0.99, (step - 1) / 8.0), gan::cosine_schedule(1, 0.1, (step - 1) / 8.0));
    const auto at = rows.find("{\"step\": " + std::to_string(step) + ",");
    ASSERT_NE(at, std::string::npos);
    EXPECT_NE(rows.substr(at, rows.find('\n', at) - at).find(want), std::string::npos) << want << "\n" << rows;
  }
}

TEST(R3gan, RpganWithR1AndR2LearnsASmallImageSetWithoutDiverging) {
  // The data statistic of Training.GeneratorLearnsTheDataStatistic (left half bright), learnt under R3GAN's
  // objective: RpGAN, R1 and R2 with gamma 0.1, beta1 = 0, and DiffAugment on everything D sees.
  TempDir dir;
  gan::Config cfg = testutil::tiny_train_config(dir, testutil::write_halves_dataset(dir, 256, 16), 300);
  cfg.train.batch_size = 32;
  cfg.model.ngf = cfg.model.ndf = 16;
  cfg.model.d_norm = "none";
  cfg.train.loss = "rpgan";
  cfg.train.r1_gamma = cfg.train.r2_gamma = 0.1;
  cfg.train.beta1 = 0.0;
  cfg.train.beta2 = 0.99;
  cfg.train.augment = "diffaug";
  cfg.train.augment_policy = "color,translation";
  cfg.output.sample_every = cfg.output.checkpoint_every = 100000;
  gan::validate_config(cfg);
  gan::TrainSummary s = gan::train(cfg);
  ASSERT_EQ(s.steps, 300);
  gan::Generator g(cfg.model);
  gan::load_checkpoint(s.checkpoint, torch::kCPU, g);
  g->eval();
  torch::NoGradGuard ng;
  at::Tensor x = g->forward(torch::randn({256, cfg.model.nz}));
  const double contrast = (x.narrow(3, 0, 8).mean() - x.narrow(3, 8, 8).mean()).item<double>();
  std::printf("RpGAN + R1 + R2 + DiffAugment: left-right contrast after 300 steps %.3f (data ~1.2)\n", contrast);
  EXPECT_TRUE(torch::isfinite(x).all().item<bool>());
  EXPECT_GT(contrast, 0.7);
  const std::string rows = slurp(s.run_dir + "/metrics.jsonl");
  EXPECT_EQ(rows.find("nan"), std::string::npos);
}

TEST(Length, KimgSetsTheStepsAndTheLogSaysHowLongTheRunIs) {
  TempDir dir;
  gan::Config c = testutil::tiny_train_config(dir, testutil::write_halves_dataset(dir, 40, 16), 0);
  c.train.kimg = 0.1;  // 100 images in steps of 16: 7 steps
  c.train.epochs = 50;
  gan::validate_config(c);
  spdlog::set_level(spdlog::level::info);
  gan::TrainSummary s = gan::train(c);
  spdlog::set_level(spdlog::level::warn);
  EXPECT_EQ(s.steps, 7);
  const std::string log = slurp(s.run_dir + "/train.log");
  EXPECT_NE(log.find("length: 7 steps = 2.8 epochs of the 40 images = 0.1 kimg (from train.kimg)"), std::string::npos)
      << log;
  c.train.steps = 5;
  EXPECT_THROW(gan::validate_config(c), gan::UserError);  // steps and kimg both set
}

// Losses, stabilisers, EMA, conditional models and the health monitor: their mathematics, then end to end.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>

#include "gan/checkpoint.h"
#include "gan/json.h"
#include "gan/config.h"
#include "gan/datasets.h"
#include "gan/health.h"
#include "gan/decode.h"
#include "gan/image.h"
#include "gan/loader.h"
#include "gan/models.h"
#include "gan/step.h"
#include "gan/trainer.h"
#include "checkpoint_fixture.h"
#include "image_fixtures.h"
#include "test_util.h"

namespace fs = std::filesystem;
using testutil::slurp;
using testutil::TempDir;

namespace {

gan::ModelConfig small_model() {
  gan::ModelConfig m;
  m.image_size = 16;
  m.channels = 1;
  m.nz = 8;
  m.ngf = 4;
  m.ndf = 4;
  return m;
}

// n images of 16x16 in `classes` classes: class c is a bright horizontal band at row 3c (mod 16) plus noise.
// Writes images and labels as IDX files (labels next to images, "-labels-idx1-ubyte") and returns the images path.
std::string write_banded_dataset(const TempDir& dir, int n, int classes) {
  fixtures::Bytes px, labels;
  std::uint32_t state = 777;
  for (int i = 0; i < n; ++i) {
    const int c = i % classes;
    labels.push_back(static_cast<std::uint8_t>(c));
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) {
        state = state * 1664525u + 1013904223u;
        const int noise = static_cast<int>((state >> 8) % 31) - 15;
        px.push_back(static_cast<std::uint8_t>(std::clamp((y / 2 == c % 8 ? 220 : 30) + noise, 0, 255)));
      }
  }
  const std::string images = dir / "bands-images-idx3-ubyte";
  fixtures::write_file(images, fixtures::idx_images(n, 16, 16, px));
  fixtures::write_file(dir / "bands-labels-idx1-ubyte", fixtures::idx_labels(labels));
  return images;
}

gan::Config tiny(const TempDir& dir, const std::string& data, std::int64_t steps) {
  gan::Config c = testutil::tiny_train_config(dir, data, steps);
  c.output.sample_every = c.output.checkpoint_every = 4;
  c.output.samples = 8;
  return c;
}

}  // namespace

TEST(Losses, ValuesMatchTheirFormulas) {
  auto r = torch::tensor({2.0, -1.0, 0.5}, torch::kDouble), f = torch::tensor({-3.0, 0.0, 1.5}, torch::kDouble);
  auto sp = [](const torch::Tensor& x) { return torch::softplus(x); };  // -log sigmoid(-x)
  // bce: -log D(x) - log(1 - D(G(z))) = softplus(-r) + softplus(f); G: softplus(-f).
  EXPECT_NEAR(gan::d_loss("bce", r, f).item<double>(), (sp(-r).mean() + sp(f).mean()).item<double>(), 1e-6);
  EXPECT_NEAR(gan::g_loss("bce", f).item<double>(), sp(-f).mean().item<double>(), 1e-6);
  // minimax G: minimise log(1 - D(G(z))) = -softplus(f).
  EXPECT_NEAR(gan::g_loss("minimax", f).item<double>(), -sp(f).mean().item<double>(), 1e-6);
  EXPECT_NEAR(gan::d_loss("lsgan", r, f).item<double>(),
              (0.5 * (r - 1).pow(2).mean() + 0.5 * f.pow(2).mean()).item<double>(), 1e-6);
  EXPECT_NEAR(gan::g_loss("lsgan", f).item<double>(), (0.5 * (f - 1).pow(2).mean()).item<double>(), 1e-6);
  EXPECT_NEAR(gan::d_loss("hinge", r, f).item<double>(),
              (torch::relu(1 - r).mean() + torch::relu(1 + f).mean()).item<double>(), 1e-6);
  EXPECT_NEAR(gan::g_loss("hinge", f).item<double>(), -f.mean().item<double>(), 1e-6);
  EXPECT_NEAR(gan::d_loss("wgan-gp", r, f).item<double>(), (f.mean() - r.mean()).item<double>(), 1e-6);
  EXPECT_NEAR(gan::g_loss("wgan-gp", f).item<double>(), -f.mean().item<double>(), 1e-6);
  testutil::expect_user_error([&] { gan::d_loss("nope", r, f); }, gan::kExitUsage, {"train.loss", "nope"});
}

TEST(Losses, MinimaxSaturatesWhereNonSaturatingDoesNot) {
  // A confident D (logit -8 on fakes): the minimax G gradient is ~sigmoid(-8) = 3e-4, the non-saturating one ~1.
  auto f1 = torch::full({1}, -8.0, torch::requires_grad()), f2 = torch::full({1}, -8.0, torch::requires_grad());
  gan::g_loss("minimax", f1).backward();
  gan::g_loss("bce", f2).backward();
  EXPECT_NEAR(f1.grad().item<double>(), -1.0 / (1.0 + std::exp(8.0)), 1e-6);
  EXPECT_NEAR(f2.grad().item<double>(), 1.0 / (1.0 + std::exp(8.0)) - 1.0, 1e-6);
}

TEST(Losses, OneSidedLabelSmoothingLowersOnlyTheRealTarget) {
  auto r = torch::tensor({1.0, -0.5}), f = torch::tensor({0.3, -2.0});
  auto expect = torch::binary_cross_entropy_with_logits(r, torch::full({2}, 0.9)) +
                torch::binary_cross_entropy_with_logits(f, torch::zeros({2}));
  EXPECT_NEAR(gan::d_loss("bce", r, f, 0.1).item<double>(), expect.item<double>(), 1e-6);
  EXPECT_NEAR(gan::d_loss("lsgan", r, f, 0.1).item<double>(),
              (0.5 * (r - 0.9).pow(2).mean() + 0.5 * f.pow(2).mean()).item<double>(), 1e-6);
  // The real-logit gradient vanishes at D(x) = 0.9 instead of pushing to 1.
  auto at_target = torch::full({1}, std::log(9.0), torch::requires_grad());
  gan::d_loss("bce", at_target, torch::full({1}, -30.0), 0.1).backward();
  EXPECT_NEAR(at_target.grad().item<double>(), 0.0, 1e-6);
}

TEST(Losses, GradientPenaltyMatchesFiniteDifferences) {
  torch::manual_seed(3);
  gan::ModelConfig m = small_model();
  m.d_norm = "none";
  gan::Discriminator d(m);
  d->to(torch::kDouble);
  auto real = torch::randn({2, 1, 16, 16}, torch::kDouble), fake = torch::randn({2, 1, 16, 16}, torch::kDouble);
  auto eps = torch::tensor({0.3, 0.8}, torch::kDouble);
  const double gp = gan::gradient_penalty(d, real, fake, {}, eps).item<double>();
  // Finite differences of D at x_hat = eps x + (1 - eps) x_fake, one input value at a time.
  torch::NoGradGuard no_grad;
  auto xhat = eps.view({2, 1, 1, 1}) * real + (1 - eps.view({2, 1, 1, 1})) * fake;
  double expect = 0;
  const double h = 1e-6;
  for (int i = 0; i < 2; ++i) {
    auto x = xhat.narrow(0, i, 1).clone();
    auto flat = x.view({-1});
    double sq = 0;
    for (int k = 0; k < flat.size(0); ++k) {
      const double v = flat[k].item<double>();
      flat[k] = v + h;
      const double up = d->forward(x).item<double>();
      flat[k] = v - h;
      const double down = d->forward(x).item<double>();
      flat[k] = v;
      sq += std::pow((up - down) / (2 * h), 2);
    }
    expect += std::pow(std::sqrt(sq) - 1, 2) / 2;
  }
  EXPECT_NEAR(gp, expect, 1e-6 * std::max(1.0, expect));
}

TEST(Losses, GradientPenaltyAndR1AreDifferentiableInTheWeights) {
  torch::manual_seed(4);
  gan::ModelConfig m = small_model();
  m.d_norm = "layer";
  gan::Discriminator d(m);
  d->to(torch::kDouble);
  auto real = torch::randn({3, 1, 16, 16}, torch::kDouble), fake = torch::randn({3, 1, 16, 16}, torch::kDouble);
  auto eps = torch::rand({3}, torch::kDouble);
  auto w = d->parameters().front();
  // d(GP)/dw[0] by autograd against a central difference of GP in that one weight.
  auto gp = gan::gradient_penalty(d, real, fake, {}, eps);
  auto grad = torch::autograd::grad({gp}, {w})[0].view({-1})[0].item<double>();
  const double h = 1e-6, v = w.view({-1})[0].item<double>();
  double up, down;
  {
    torch::NoGradGuard ng;
    w.view({-1}).narrow(0, 0, 1).fill_(v + h);
  }
  up = gan::gradient_penalty(d, real, fake, {}, eps).item<double>();
  {
    torch::NoGradGuard ng;
    w.view({-1}).narrow(0, 0, 1).fill_(v - h);
  }
  down = gan::gradient_penalty(d, real, fake, {}, eps).item<double>();
  {
    torch::NoGradGuard ng;
    w.view({-1}).narrow(0, 0, 1).fill_(v);
  }
  EXPECT_NEAR(grad, (up - down) / (2 * h), 1e-5 * std::max(1.0, std::abs(grad)));
  // R1 = mean |grad_x D(x)|^2, against finite differences of D on one image.
  auto r1 = gan::r1_penalty(d, real.narrow(0, 0, 1), {}).item<double>();
  torch::NoGradGuard ng;
  auto x = real.narrow(0, 0, 1).clone();
  auto flat = x.view({-1});
  double sq = 0;
  for (int k = 0; k < flat.size(0); ++k) {
    const double xv = flat[k].item<double>();
    flat[k] = xv + h;
    const double a = d->forward(x).item<double>();
    flat[k] = xv - h;
    const double b = d->forward(x).item<double>();
    flat[k] = xv;
    sq += std::pow((a - b) / (2 * h), 2);
  }
  EXPECT_NEAR(r1, sq, 1e-5 * std::max(1.0, sq));
}

TEST(Stabilisers, SpectralNormBringsTheTopSingularValueToOne) {
  torch::manual_seed(5);
  gan::SNConv2d conv(3, 8, 4, 2, 1);
  {
    torch::NoGradGuard ng;
    conv->weight.mul_(7.0);  // far from unit norm
  }
  conv->train();
  auto x = torch::randn({2, 3, 8, 8});
  for (int i = 0; i < 30; ++i) conv->forward(x);  // one power-iteration step per call
  auto w = conv->weight.detach().view({8, -1});
  const double top = std::get<1>(torch::svd(w)).max().item<double>();
  EXPECT_NEAR(conv->sigma().item<double>(), top, 1e-3 * top);
  const double normalised = std::get<1>(torch::svd(w / conv->sigma())).max().item<double>();
  EXPECT_NEAR(normalised, 1.0, 1e-3);
  // The layer computes conv2d with the normalised weight; eval mode leaves u alone.
  conv->eval();
  auto u = conv->u.clone();
  auto y = conv->forward(x);
  EXPECT_TRUE(torch::equal(u, conv->u));
  EXPECT_TRUE(torch::allclose(y, torch::conv2d(x, conv->weight / conv->sigma(), {}, 2, 1), 1e-5, 1e-6));
}

TEST(Stabilisers, SpectralNormDiscriminatorTrainsAndSavesU) {
  gan::ModelConfig m = small_model();
  m.spectral_norm = true;
  gan::Discriminator d(m);
  int sn_layers = 0;
  for (const auto& b : d->named_buffers()) sn_layers += b.key().size() >= 2 && b.key().substr(b.key().size() - 2) == ".u";
  EXPECT_EQ(sn_layers, 3);  // 16x16: three convolutions
  auto out = d->forward(torch::randn({4, 1, 16, 16}));
  EXPECT_EQ(out.sizes(), (std::vector<std::int64_t>{4}));
}

TEST(Stabilisers, MinibatchStdAppendsTheGroupStd) {
  gan::MinibatchStd layer;
  auto x = torch::randn({8, 3, 4, 4});
  auto y = layer->forward(x);
  ASSERT_EQ(y.sizes(), (std::vector<std::int64_t>{8, 4, 4, 4}));
  EXPECT_TRUE(torch::equal(y.narrow(1, 0, 3), x));
  // Groups of 4 over dim 0 with stride 2: images 0, 2, 4, 6 form one group.
  auto group = torch::stack({x[0], x[2], x[4], x[6]});
  const double expect = (group.var(0, false) + 1e-8).sqrt().mean().item<double>();
  EXPECT_NEAR(y[0][3][0][0].item<double>(), expect, 1e-5);
  EXPECT_NEAR(y[6][3][2][1].item<double>(), expect, 1e-5);
  // Identical images: no spread.
  auto same = layer->forward(x.narrow(0, 0, 1).expand({4, 3, 4, 4}).contiguous());
  EXPECT_LT(same.narrow(1, 3, 1).abs().max().item<double>(), 1e-3);
  // A discriminator with it still gives one logit per image.
  gan::ModelConfig m = small_model();
  m.minibatch_std = true;
  gan::Discriminator d(m);
  EXPECT_EQ(d->forward(torch::randn({6, 1, 16, 16})).sizes(), (std::vector<std::int64_t>{6}));
}

TEST(Stabilisers, EmaUpdateAndRampUp) {
  EXPECT_DOUBLE_EQ(gan::ema_beta(0.999, false, 1), 0.999);
  EXPECT_DOUBLE_EQ(gan::ema_beta(0.999, true, 0), 0.1);
  EXPECT_DOUBLE_EQ(gan::ema_beta(0.999, true, 90), 91.0 / 100.0);
  EXPECT_DOUBLE_EQ(gan::ema_beta(0.999, true, 100000), 0.999);
  torch::manual_seed(6);
  gan::Generator g(small_model()), ema(small_model());
  gan::copy_weights(*g, *ema);
  auto before = ema->parameters().front().clone();
  {
    torch::NoGradGuard ng;
    for (auto& p : g->parameters()) p.add_(1.0);
    for (auto& b : g->buffers())
      if (b.is_floating_point()) b.add_(2.0);
  }
  gan::ema_update(*ema, *g, 0.9);
  EXPECT_TRUE(torch::allclose(ema->parameters().front(), before + 0.1, 1e-5, 1e-6));
  auto gb = g->named_buffers();
  for (const auto& b : ema->named_buffers()) EXPECT_TRUE(torch::equal(b.value(), gb[b.key()])) << b.key();
}

TEST(Stabilisers, InstanceNoiseAnnealsLinearlyToZero) {
  gan::TrainConfig t;
  t.instance_noise = 0.2;
  EXPECT_DOUBLE_EQ(gan::instance_noise_std(t, 0, 100), 0.2);
  EXPECT_DOUBLE_EQ(gan::instance_noise_std(t, 50, 100), 0.1);
  EXPECT_DOUBLE_EQ(gan::instance_noise_std(t, 100, 100), 0.0);
  t.instance_noise_steps = 10;
  EXPECT_DOUBLE_EQ(gan::instance_noise_std(t, 5, 100), 0.1);
  EXPECT_DOUBLE_EQ(gan::instance_noise_std(t, 20, 100), 0.0);
  t.instance_noise = 0;
  EXPECT_DOUBLE_EQ(gan::instance_noise_std(t, 0, 100), 0.0);
}

TEST(Stabilisers, LatentDistributions) {
  gan::ModelConfig m = small_model();
  m.latent = "uniform";
  auto z = gan::sample_latent(m, 2000);
  EXPECT_GE(z.min().item<double>(), -1.0);
  EXPECT_LT(z.max().item<double>(), 1.0);
  EXPECT_NEAR(z.var().item<double>(), 1.0 / 3.0, 0.02);
  m.latent = "normal";
  EXPECT_NEAR(gan::sample_latent(m, 2000).var().item<double>(), 1.0, 0.05);
}

TEST(Stabilisers, DiscriminatorNormChoices) {
  for (const char* norm : {"batch", "none", "layer", "instance"}) {
    gan::ModelConfig m = small_model();
    m.d_norm = norm;
    gan::Discriminator d(m);
    EXPECT_EQ(d->forward(torch::randn({3, 1, 16, 16})).sizes(), (std::vector<std::int64_t>{3})) << norm;
    const bool has_running = !d->named_buffers().is_empty();
    EXPECT_EQ(has_running, std::string(norm) == "batch") << norm;
  }
  testutil::expect_user_error(
      [] { gan::parse_config("train: {loss: wgan-gp}\n", "x.cfg"); }, gan::kExitUsage, {"wgan-gp", "model.d_norm"});
  gan::parse_config("train: {loss: wgan-gp}\nmodel: {d_norm: layer}\n", "x.cfg");
  testutil::expect_user_error([] { gan::parse_config("train: {loss: hinge, label_smoothing: 0.1}\n", "x.cfg"); },
                              gan::kExitUsage, {"label_smoothing"});
}

TEST(Conditional, ModelsUseTheLabels) {
  for (const char* how : {"projection", "concat"}) {
    gan::ModelConfig m = small_model();
    m.conditional = true;
    m.num_classes = 3;
    m.d_conditioning = how;
    torch::manual_seed(7);
    gan::Generator g(m);
    gan::Discriminator d(m);
    gan::dcgan_init(*d);
    g->eval();
    d->eval();
    auto z = torch::randn({2, m.nz}).repeat({3, 1});                    // [6, nz]: the same two latents per class
    auto y = torch::tensor({0, 0, 1, 1, 2, 2}, torch::kLong);
    auto img = g->forward(z, y);                                        // [6, 1, 16, 16]
    ASSERT_EQ(img.sizes(), (std::vector<std::int64_t>{6, 1, 16, 16}));
    EXPECT_GT((img[0] - img[2]).abs().max().item<double>(), 1e-4) << how;  // the class changes the image
    auto x = torch::randn({1, 1, 16, 16}).repeat({3, 1, 1, 1});
    auto logits = d->forward(x, torch::tensor({0, 1, 2}, torch::kLong));
    EXPECT_GT((logits[0] - logits[1]).abs().item<double>(), 1e-6) << how;  // and D's verdict
    EXPECT_THROW(g->forward(z), c10::Error);
    EXPECT_THROW(d->forward(x), c10::Error);
  }
}

TEST(Conditional, LabelsFromIdxFilesAndSubFolders) {
  TempDir dir;
  gan::DataConfig data;
  data.source = "idx";
  data.path = write_banded_dataset(dir, 30, 3);
  auto src = gan::open_dataset(data, 16, 1);
  ASSERT_EQ(src->num_classes(), 3);
  EXPECT_EQ(src->label(0), 0);
  EXPECT_EQ(src->label(4), 1);
  EXPECT_EQ(src->label(29), 2);
  gan::BatchLoader loader(*src, 10, 1, {}, 1);
  auto b = loader.next();
  ASSERT_TRUE(b.labels.defined());
  EXPECT_EQ(b.labels.sizes(), (std::vector<std::int64_t>{10}));
  // The loader's labels follow its shuffled order: each image's band row names its class.
  for (int i = 0; i < 10; ++i) {
    auto img = b.images[i][0];
    const int row = static_cast<int>(img.mean(1).argmax().item<std::int64_t>());
    EXPECT_EQ(row / 2, b.labels[i].item<std::int64_t>()) << i;
  }
  std::vector<std::int32_t> labels;
  std::vector<std::string> names;
  EXPECT_TRUE(gan::folder_labels("/d", {"/d/cat/1.png", "/d/dog/x/2.png", "/d/cat/3.png"}, labels, names));
  EXPECT_EQ(names, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(labels, (std::vector<std::int32_t>{0, 1, 0}));
  EXPECT_FALSE(gan::folder_labels("/d", {"/d/cat/1.png", "/d/top.png"}, labels, names));
}

TEST(Health, AResumedRunJudgesTheSameWindowsAtTheSameSteps) {
  gan::HealthConfig h;
  h.window = 200;
  gan::HealthMonitor mon(h, "bce");  // a process resumed at step 6921
  auto saturated = torch::tensor({0.0, 0.0, 0.99, 0.01, 0.01, 0.0});
  for (int step = 6922; step <= 7000; ++step) mon.add_step(step, saturated);
  EXPECT_EQ(mon.judged_at(), 0);  // 79 steps: too few to judge the window ending at 7000
  EXPECT_EQ(mon.warnings(), 0);
  for (int step = 7001; step <= 7200; ++step) mon.add_step(step, saturated);
  EXPECT_EQ(mon.judged_at(), 7200);  // the run's step, as an uninterrupted run would name it (not 279)
  EXPECT_TRUE(mon.saturated());
  EXPECT_EQ(mon.warnings(), 1);
  for (int step = 7201; step <= 7300; ++step) mon.add_step(step, saturated);
  EXPECT_EQ(mon.judged_at(), 7200);
  // A resume exactly at a window's end judges whole windows from there.
  gan::HealthMonitor again(h, "bce");
  for (int step = 7001; step <= 7200; ++step) again.add_step(step, saturated);
  EXPECT_EQ(again.judged_at(), 7200);
}

TEST(Health, SaturationDiversityAndRegressionWarnings) {
  gan::HealthConfig h;
  h.window = 3;
  gan::HealthMonitor mon(h, "bce");
  auto stats = [](double r, double f) { return torch::tensor({0.0, 0.0, r, f, f, 0.0}); };
  for (int i = 1; i <= 3; ++i) mon.add_step(i, stats(0.6, 0.4));
  EXPECT_FALSE(mon.saturated());
  for (int i = 4; i <= 6; ++i) mon.add_step(i, stats(0.99, 0.01));
  EXPECT_TRUE(mon.saturated());
  EXPECT_EQ(mon.judged_at(), 6);
  EXPECT_EQ(mon.warnings(), 1);
  mon.set_data_diversity(0.5);
  auto same = torch::zeros({8, 1, 4, 4});
  EXPECT_NEAR(mon.check_diversity(10, same), 0.0, 1e-9);
  EXPECT_EQ(mon.warnings(), 1);  // within health.grace_steps: G starts out drawing near-equal images
  EXPECT_NEAR(mon.check_diversity(h.grace_steps, same), 0.0, 1e-9);
  EXPECT_EQ(mon.warnings(), 2);
  EXPECT_NEAR(gan::batch_diversity(torch::stack({torch::ones({1, 2, 2}), -torch::ones({1, 2, 2})})), 2.0, 1e-9);
  mon.check_eval(100, 10.0);
  mon.check_eval(200, 11.0);
  EXPECT_EQ(mon.warnings(), 2);
  mon.check_eval(300, 20.0);
  EXPECT_EQ(mon.warnings(), 3);
}

// Every loss and stabiliser accepted end to end by the trainer; metrics stay finite.
TEST(LossesEndToEnd, EveryLossTrains) {
  TempDir dir;
  const std::string data = write_banded_dataset(dir, 64, 4);
  for (const char* loss : {"bce", "minimax", "lsgan", "hinge", "wgan-gp", "rpgan"}) {
    gan::Config c = tiny(dir, data, 3);
    c.train.loss = loss;
    if (c.train.loss == "wgan-gp") c.model.d_norm = "layer";
    if (c.train.loss == "rpgan") c.train.r1_gamma = c.train.r2_gamma = 0.1;
    c.output.name = std::string("loss-") + loss;
    gan::validate_config(c);
    auto s = gan::train(c);
    EXPECT_EQ(s.steps, 3) << loss;
    const std::string metrics = slurp(s.run_dir + "/metrics.jsonl");
    EXPECT_EQ(metrics.find("nan"), std::string::npos) << loss << metrics;
    if (c.train.loss == "wgan-gp" || c.train.loss == "rpgan")
      EXPECT_EQ(metrics.find("\"penalty\": 0.00000"), std::string::npos) << metrics;
  }
}

TEST(LossesEndToEnd, AllStabilisersTogetherWithEmaAndResume) {
  TempDir dir;
  const std::string data = write_banded_dataset(dir, 64, 4);
  gan::Config c = tiny(dir, data, 4);
  c.model.spectral_norm = true;
  c.model.minibatch_std = true;
  c.model.latent = "uniform";
  c.train.label_smoothing = 0.1;
  c.train.instance_noise = 0.1;
  c.train.d_steps = 2;
  c.train.lr_d = 4e-4;
  c.train.lr_g = 1e-4;
  c.train.beta1_d = 0.0;
  c.train.r1_gamma = 1.0;
  c.train.ema_decay = 0.99;
  gan::validate_config(c);
  auto s = gan::train(c);
  EXPECT_EQ(s.steps, 4);
  const std::string summary = slurp(s.run_dir + "/summary.json");
  EXPECT_NE(summary.find("\"steps\": 4"), std::string::npos) << summary;
  // The EMA generator is in the checkpoint and is what load_generator returns; it differs from the raw G.
  auto model = gan::load_generator(s.checkpoint, torch::kCPU);
  EXPECT_TRUE(model.ema);
  gan::Generator raw(model.cfg.model);
  gan::load_checkpoint(s.checkpoint, torch::kCPU, raw);
  double diff = 0;
  auto rp = raw->named_parameters();
  for (const auto& p : model.g->named_parameters()) diff += (p.value() - rp[p.key()]).abs().sum().item<double>();
  EXPECT_GT(diff, 0.0);
  // Resume continues with the stored EMA.
  gan::Config more = c;
  more.train.steps = 6;
  auto s2 = gan::train(more, s.checkpoint);
  EXPECT_EQ(s2.steps, 6);
}

TEST(LossesEndToEnd, ConditionalRunHasOneGridRowPerClass) {
  TempDir dir;
  gan::Config c = tiny(dir, write_banded_dataset(dir, 64, 4), 2);
  c.model.conditional = true;
  gan::validate_config(c);
  auto s = gan::train(c);
  gan::Config stored = gan::read_checkpoint_config(s.checkpoint);
  EXPECT_EQ(stored.model.num_classes, 4);
  gan::Image grid;
  std::string err;
  ASSERT_TRUE(gan::decode_image_file(s.grid, grid, err)) << err;
  EXPECT_EQ(grid.height, 2 + 4 * (16 + 2));  // 4 classes = 4 rows of 16 px with 2 px padding
  EXPECT_EQ(grid.width, 2 + 4 * (16 + 2));   // output.grid_rows = 4 images per row
  auto model = gan::load_generator(s.checkpoint, torch::kCPU);
  EXPECT_EQ(model.class_names.size(), 4u);
  // Unlabelled data refuses a conditional model with a clear message.
  gan::Config bad = c;
  fs::remove(dir / "bands-labels-idx1-ubyte");
  bad.output.name = "bad";
  bad.model.num_classes = 0;
  testutil::expect_user_error([&] { gan::train(bad); }, gan::kExitData, {"model.conditional", "labels"});
}

namespace {
// tiny() on 96 banded images in 4 classes, evaluated every 2 of its 4 steps on 100 samples.
gan::Config evaluated_tiny(const TempDir& dir) {
  gan::Config c = tiny(dir, write_banded_dataset(dir, 96, 4), 4);
  c.eval.every = 2;
  c.eval.samples = 100;
  c.eval.cache = dir / "eval-cache";
  return c;
}
}  // namespace

TEST(LossesEndToEnd, PeriodicEvaluationOfADatasetWithoutClassesIsSkippedNotAnError) {
  TempDir dir;
  gan::Config c = evaluated_tiny(dir);
  fs::remove(dir / "bands-labels-idx1-ubyte");  // no labels: nothing to train the FD classifier on
  gan::validate_config(c);
  auto s = gan::train(c);
  EXPECT_EQ(s.steps, 4);
  EXPECT_FALSE(fs::exists(s.run_dir + "/checkpoints/best.pt"));
  const std::string summary = slurp(s.run_dir + "/summary.json");
  EXPECT_NE(summary.find("\"eval\": null"), std::string::npos) << summary;
  EXPECT_NE(slurp(s.run_dir + "/train.log").find("has no classes (sub-folders or labels) to train the FD classifier"),
            std::string::npos);
  // An extractor named by path is still required to exist.
  c.eval.extractor = dir / "missing.pt";
  c.output.name = "with-extractor";
  testutil::expect_user_error([&] { gan::train(c); }, gan::kExitUsage, {"eval.extractor", "missing.pt"});
}

TEST(LossesEndToEnd, PeriodicEvaluationGoesIntoMetricsAndSummary) {
  TempDir dir;
  gan::Config c = evaluated_tiny(dir);
  c.model.conditional = true;
  c.train.ema_decay = 0.9;
  gan::validate_config(c);
  auto s = gan::train(c);
  ASSERT_EQ(s.steps, 4);
  // Evaluations at steps 2 and 4: rows {"step": N, "eval": {...}} with a finite FD.
  std::ifstream in(s.run_dir + "/metrics.jsonl");
  int evals = 0;
  for (std::string line; std::getline(in, line);)
    if (line.find("\"eval\": {") != std::string::npos) {
      ++evals;
      EXPECT_NE(line.find("\"fd\": "), std::string::npos) << line;
      EXPECT_EQ(line.find("\"fd\": null"), std::string::npos) << line;
    }
  EXPECT_EQ(evals, 2);
  const std::string summary = slurp(s.run_dir + "/summary.json");
  EXPECT_EQ(summary.find("\"eval\": null"), std::string::npos) << summary;
  EXPECT_NE(summary.find("\"fd\": "), std::string::npos) << summary;
  EXPECT_TRUE(fs::is_directory(dir / "eval-cache"));
  // checkpoints/best.pt: the lowest FD so far, named in summary.json, kept by keep_last, taken as RUN/best.
  const std::string best = s.run_dir + "/checkpoints/best.pt";
  ASSERT_TRUE(fs::exists(best));
  EXPECT_NE(summary.find("\"checkpoint\": \"" + best + "\""), std::string::npos) << summary;
  std::int64_t best_step = 0;
  const std::string scores = gan::read_checkpoint_eval(best, &best_step);
  EXPECT_TRUE(best_step == 2 || best_step == 4) << best_step;
  EXPECT_NE(summary.find("\"best_eval\": {\"step\": " + std::to_string(best_step)), std::string::npos) << summary;
  EXPECT_NE(summary.find(scores), std::string::npos) << scores;
  EXPECT_EQ(gan::resolve_checkpoint_arg(s.run_dir + "/best"), best);
  EXPECT_EQ(gan::resolve_checkpoint_arg(s.run_dir + "/"), s.run_dir + "/checkpoints/latest.pt");
  EXPECT_EQ(gan::resolve_checkpoint_arg(best), best);
  EXPECT_THROW(gan::resolve_checkpoint_arg(dir / "eval-cache"), gan::UserError);  // a folder, not a run
  EXPECT_TRUE(gan::load_generator(best, torch::kCPU).ema);
  // Resumed with keep_last 1 and evaluated again: best.pt stays (no step checkpoint), and only moves to a lower FD.
  gan::Config more = c;
  more.train.steps = 8;
  more.output.keep_last = 1;
  more.output.checkpoint_every = 1;
  auto r = gan::train(more, s.checkpoint);
  ASSERT_TRUE(fs::exists(best));
  std::int64_t new_step = 0;
  const double old_fd = gan::parse_json(scores).num("fd", -1);
  const double new_fd = gan::parse_json(gan::read_checkpoint_eval(best, &new_step)).num("fd", -1);
  EXPECT_LE(new_fd, old_fd);
  EXPECT_TRUE(new_step == best_step || new_fd < old_fd) << new_step;
  int step_files = 0;
  for (const auto& e : fs::directory_iterator(r.run_dir + "/checkpoints"))
    step_files += e.path().filename().string().rfind("step_", 0) == 0;
  EXPECT_EQ(step_files, 1);
  // A damaged best.pt does not stop a resumed run: it is ignored and the next evaluation writes a good one.
  fixtures::write_file(best, fixtures::Bytes{'n', 'o', 't'});
  gan::Config longer = more;
  longer.train.steps = 10;
  auto l = gan::train(longer, r.checkpoint);
  EXPECT_EQ(l.steps, 10);
  EXPECT_NO_THROW(gan::read_checkpoint_eval(best));
}

// train.augment auto: no augmentation until train.augment_patience evaluations in a row have an FD above
// health.eval_regress x the best; then the run goes back to best.pt, the run folder forgets the steps after it, and
// ADA runs from there (kept for a resume, as is a streak that has begun).
TEST(LossesEndToEnd, AugmentAutoGoesBackToBestAndSwitchesAdaOnWhenFdRegresses) {
  TempDir dir;
  gan::Config c = evaluated_tiny(dir);
  c.train.steps = 10;
  c.train.augment = "auto";
  c.train.ada_target = 0.0;  // any positive mean sign on the reals raises p
  c.train.ada_kimg = 1;
  c.output.checkpoint_every = 2;
  c.output.keep_last = 0;
  gan::validate_config(c);
  ASSERT_EQ(c.train.augment_patience, 2);
  // FDs 1.0 and 0.5 at steps 2 and 4 (best.pt at 4), 50 (100x: regressed) at the first evaluations of steps 6 and 8,
  // 0.6 afterwards (1.2x: within health.eval_regress 1.25).
  auto hooks_for = [](std::map<std::int64_t, int>* calls) {
    gan::TrainHooks h;
    h.eval_fd = [calls](std::int64_t step, double) {
      const int n = ++(*calls)[step];
      if ((step == 6 || step == 8) && n == 1) return 50.0;
      return step == 2 ? 1.0 : step == 4 ? 0.5 : 0.6;
    };
    return h;
  };
  std::map<std::int64_t, int> calls;
  c.output.name = "full";
  spdlog::set_level(spdlog::level::info);  // the augmentation lines are info lines of train.log
  auto s = gan::train(c, "", hooks_for(&calls));
  spdlog::set_level(spdlog::level::warn);
  EXPECT_EQ(s.steps, 10);
  EXPECT_EQ(s.ada_from, 4);
  EXPECT_EQ(calls[6], 2);  // steps 6 and 8 were evaluated twice: before and after going back
  EXPECT_EQ(calls[8], 2);
  const std::string log = slurp(s.run_dir + "/train.log");
  EXPECT_NE(log.find("none until 2 evaluations in a row have an FD above 1.25x the best"), std::string::npos) << log;
  EXPECT_NE(log.find("evaluation 1 of 2 in a row with a regressed FD"), std::string::npos) << log;
  EXPECT_NE(log.find("train.augment auto: eval FD 50.000 at step 8 is 100.00x the best, 0.500 at step 4"),
            std::string::npos) << log;
  const std::string summary = slurp(s.run_dir + "/summary.json");
  EXPECT_NE(summary.find("\"ada_from_step\": 4, \"switch\": {\"regressed_step\": 8, \"fd\": 50, \"best_step\": 4"),
            std::string::npos) << summary;
  // metrics.jsonl: the regressed steps are gone, every step once and in order, ADA's p only from step 5 on.
  std::ifstream in(s.run_dir + "/metrics.jsonl");
  long long prev = 0;
  int with_p = 0;
  for (std::string line; std::getline(in, line);) {
    long long step = -1;
    ASSERT_EQ(std::sscanf(line.c_str(), "{\"step\": %lld", &step), 1) << line;
    if (line.find("\"eval\"") != std::string::npos) {
      EXPECT_EQ(line.find("\"fd\": 50"), std::string::npos) << line;
      continue;
    }
    EXPECT_GT(step, prev) << line;
    prev = step;
    if (line.find("\"augment_p\"") != std::string::npos) {
      ++with_p;
      EXPECT_GT(step, 4) << line;
    }
  }
  EXPECT_EQ(prev, 10);
  EXPECT_GT(with_p, 0);
  // The checkpoints carry ADA: p rose (target 0), and step 4's was rewritten with ada_from = 4.
  testutil::Nets end = testutil::load_all(s.checkpoint);
  EXPECT_EQ(end.state.ada_from, 4);
  EXPECT_GT(end.state.augment_p, 0.0);
  EXPECT_EQ(testutil::load_all(s.run_dir + "/checkpoints/step_0000004.pt").state.ada_from, 4);
  EXPECT_EQ(testutil::load_all(s.run_dir + "/checkpoints/best.pt").state.step, 4);

  // Stopped at step 6, one regressed evaluation into the streak (its checkpoint counts it), resumed to 10: the
  // second one at step 8 switches, and the run ends bitwise as the uninterrupted one.
  calls.clear();
  gan::Config part = c;
  part.output.name = "part";
  part.train.steps = 6;
  auto p = gan::train(part, "", hooks_for(&calls));
  EXPECT_EQ(p.ada_from, -1);
  EXPECT_EQ(testutil::load_all(p.checkpoint).state.ada_regressions, 1);
  gan::Config rest = part;
  rest.train.steps = 10;
  auto r = gan::train(rest, p.checkpoint, hooks_for(&calls));
  EXPECT_EQ(r.ada_from, 4);
  testutil::Nets resumed = testutil::load_all(r.checkpoint);
  EXPECT_TRUE(testutil::bitwise_equal(*end.g, *resumed.g));
  EXPECT_TRUE(testutil::bitwise_equal(*end.d, *resumed.d));
  EXPECT_EQ(end.state.augment_p, resumed.state.augment_p);

  // A streak that breaks starts again: regressed at 6, a new best at 8 (its best.pt counts no streak), regressed at
  // 10 is no switch.
  gan::TrainHooks broken;
  broken.eval_fd = [](std::int64_t step, double) {
    return step == 2 ? 1.0 : step == 4 ? 0.5 : step == 8 ? 0.45 : 50.0;
  };
  gan::Config again = c;
  again.output.name = "broken";
  auto a = gan::train(again, "", broken);
  EXPECT_EQ(a.ada_from, -1);
  testutil::Nets best8 = testutil::load_all(a.run_dir + "/checkpoints/best.pt");
  EXPECT_EQ(best8.state.step, 8);
  EXPECT_EQ(best8.state.ada_regressions, 0);
  EXPECT_EQ(testutil::load_all(a.checkpoint).state.ada_regressions, 1);

  // A run that cannot evaluate (eval.every 0) has nothing to watch: ADA from step 0, and it says so.
  gan::Config blind = c;
  blind.eval.every = 0;
  blind.output.name = "blind";
  blind.train.steps = 4;
  spdlog::set_level(spdlog::level::info);
  auto b = gan::train(blind);
  spdlog::set_level(spdlog::level::warn);
  EXPECT_EQ(b.ada_from, 0);
  EXPECT_NE(slurp(b.run_dir + "/train.log").find("this run does not evaluate"), std::string::npos);
  EXPECT_GT(testutil::load_all(b.checkpoint).state.augment_p, 0.0);
}

// The discriminator's Winograd form of its 4x4 stride-2 convolutions against torch's conv2d: same function, forward
// and both gradients, for the same [out, in, 4, 4] parameter; and the same discriminator and training step.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gan/models.h"
#include "gan/step.h"
#include "gan/winograd.h"
#include "step_fixture.h"

namespace {

struct Result {
  at::Tensor y, gx, gw;
};

Result run(bool winograd, int tile, const at::Tensor& x0, const at::Tensor& w0, const at::Tensor& gy, bool x_grad = true,
           bool w_grad = true) {
  auto x = x0.detach().requires_grad_(x_grad);
  auto w = w0.detach().requires_grad_(w_grad);
  auto y = winograd ? gan::downconv_winograd(x, w, tile) : torch::conv2d(x, w, {}, 2, 1);
  y.backward(gy);
  return {y.detach(), x.grad(), w.grad()};
}

// Max |a - b| relative to max |b|.
double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-30, b.abs().max().item<double>());
}

}  // namespace

TEST(Winograd, EqualsConv2dForwardAndBothGradients) {
  torch::manual_seed(3);
  struct Case {
    std::int64_t n, c, h, w, co;
    int tile;
    bool channels_last;
  };
  const std::vector<Case> cases = {{3, 5, 16, 16, 7, 4, false}, {3, 5, 16, 16, 7, 2, true}, {2, 16, 8, 16, 4, 2, false},
                                   {2, 16, 16, 8, 4, 4, true},  {1, 3, 4, 4, 2, 2, false},  {4, 32, 32, 32, 9, 4, false}};
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    const double tol = dtype == torch::kDouble ? 1e-12 : 2e-5;
    for (const auto& k : cases) {
      auto x = torch::randn({k.n, k.c, k.h, k.w}, dtype);
      if (k.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      auto w = torch::randn({k.co, k.c, 4, 4}, dtype) * 0.1;
      auto gy = torch::randn({k.n, k.co, k.h / 2, k.w / 2}, dtype);
      const Result ref = run(false, 0, x, w, gy), got = run(true, k.tile, x, w, gy);
      ASSERT_EQ(got.y.sizes(), ref.y.sizes());
      const double dy = rel_diff(got.y, ref.y), dx = rel_diff(got.gx, ref.gx), dw = rel_diff(got.gw, ref.gw);
      std::printf("  %s [%ld, %ld, %ld, %ld] -> %ld, F(%dx%d, 2x2)%s: max rel diff y %.2e, dL/dx %.2e, dL/dw %.2e\n",
                  dtype == torch::kDouble ? "float64" : "float32", k.n, k.c, k.h, k.w, k.co, k.tile, k.tile,
                  k.channels_last ? " channels_last" : "", dy, dx, dw);
      EXPECT_LT(dy, tol);
      EXPECT_LT(dx, tol);
      EXPECT_LT(dw, tol);
      EXPECT_TRUE(got.y.is_contiguous(at::MemoryFormat::ChannelsLast));
    }
  }
}

TEST(Winograd, ComputesOnlyTheGradientsAskedFor) {
  torch::manual_seed(4);
  auto x = torch::randn({2, 8, 16, 16}, torch::kDouble), w = torch::randn({6, 8, 4, 4}, torch::kDouble);
  auto gy = torch::randn({2, 6, 8, 8}, torch::kDouble);
  // A first layer (input needs no gradient) and a layer of D during G's update (weights frozen).
  const Result wo = run(true, 4, x, w, gy, /*x_grad=*/false), ref_w = run(false, 0, x, w, gy, false);
  EXPECT_FALSE(wo.gx.defined());
  EXPECT_LT(rel_diff(wo.gw, ref_w.gw), 1e-12);
  const Result xo = run(true, 4, x, w, gy, true, /*w_grad=*/false), ref_x = run(false, 0, x, w, gy, true, false);
  EXPECT_FALSE(xo.gw.defined());
  EXPECT_LT(rel_diff(xo.gx, ref_x.gx), 1e-12);
}

TEST(Winograd, SaysWhereItDoesNotApplyAndDownconvFallsBack) {
  auto w = torch::randn({4, 8, 4, 4});
  EXPECT_TRUE(gan::downconv_winograd_applies(torch::randn({1, 8, 8, 8}), w));
  EXPECT_FALSE(gan::downconv_winograd_applies(torch::randn({1, 8, 6, 6}), w));       // output 3x3: odd
  EXPECT_FALSE(gan::downconv_winograd_applies(torch::randn({1, 7, 8, 8}), w));       // channels differ
  EXPECT_FALSE(gan::downconv_winograd_applies(torch::randn({1, 8, 8, 8}).to(torch::kBFloat16), w.to(torch::kBFloat16)));
  EXPECT_FALSE(gan::downconv_winograd_applies(torch::randn({1, 4, 8, 8}), torch::randn({4, 4, 3, 3})));  // 3x3
  // A tile that does not divide the output (2x2 here) is refused.
  EXPECT_THROW(gan::downconv_winograd(torch::randn({1, 8, 4, 4}), w, 4), c10::Error);
  // downconv computes what it is asked in every mode: conv2d where the Winograd form does not apply.
  auto x = torch::randn({2, 8, 6, 6});
  for (auto mode : {gan::DownconvMode::kDirect, gan::DownconvMode::kWinograd, gan::DownconvMode::kAuto})
    EXPECT_TRUE(torch::allclose(gan::downconv(x, w, 2, 1, mode), torch::conv2d(x, w, {}, 2, 1)));
  auto big = torch::randn({2, 8, 8, 8});
  EXPECT_LT(rel_diff(gan::downconv(big, w, 2, 1, gan::DownconvMode::kWinograd), torch::conv2d(big, w, {}, 2, 1)), 1e-5);
  auto w1 = torch::randn({1, 8, 4, 4});  // the last layer: stride 1, padding 0, left to conv2d
  auto x1 = torch::randn({2, 8, 4, 4});
  EXPECT_TRUE(torch::allclose(gan::downconv(x1, w1, 1, 0, gan::DownconvMode::kWinograd), torch::conv2d(x1, w1)));
}

TEST(Winograd, RefusesASecondDerivativeInsteadOfGettingItWrong) {
  auto x = torch::randn({2, 8, 8, 8}).requires_grad_();
  auto w = torch::randn({4, 8, 4, 4}).requires_grad_();
  auto y = gan::downconv_winograd(x, w);
  try {
    auto g = torch::autograd::grad({y.sum()}, {x}, {}, true, /*create_graph=*/true);
    FAIL() << "a create_graph backward went through";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.downconv: direct"), std::string::npos) << e.what();
  }
}

TEST(Winograd, StepOptionsUseConv2dWheneverAGradientPenaltyIsOn) {
  gan::TrainConfig tc;
  EXPECT_EQ(gan::step_options(tc, torch::kCPU).downconv, gan::DownconvMode::kAuto);
  tc.downconv = "winograd";
  EXPECT_EQ(gan::step_options(tc, torch::kCPU).downconv, gan::DownconvMode::kWinograd);
  tc.loss = "wgan-gp";
  EXPECT_EQ(gan::step_options(tc, torch::kCPU).downconv, gan::DownconvMode::kDirect);
  tc.loss = "bce";
  tc.r1_gamma = 1;
  EXPECT_EQ(gan::step_options(tc, torch::kCPU).downconv, gan::DownconvMode::kDirect);
  tc.r1_gamma = 0;
  tc.downconv = "direct";
  EXPECT_EQ(gan::step_options(tc, torch::kCPU).downconv, gan::DownconvMode::kDirect);
}

TEST(Winograd, DiscriminatorAndTrainingStepAreTheSameFunction) {
  // ndf 16 at 32x32: D's second and third convs (16 and 32 input channels) take the Winograd form in kAuto, with
  // 4x4 tiles (output 8x8) and 2x2 tiles (output 4x4).
  gan::ModelConfig m;
  m.image_size = 32;
  m.channels = 3;
  m.ngf = 8;
  m.ndf = 16;
  torch::set_num_threads(1);
  auto once = [&](const std::string& downconv, bool spectral) {
    m.spectral_norm = spectral;
    gan::TrainConfig tc;
    tc.downconv = downconv;
    auto r = testutil::float64_sgd_steps(m, tc, 8, 8, 3);
    std::vector<std::pair<std::string, at::Tensor>> w;
    for (auto& p : r.d->named_parameters()) w.emplace_back(p.key(), p.value().detach().contiguous().clone());
    for (auto& p : r.d->named_buffers()) w.emplace_back(p.key(), p.value().detach().contiguous().clone());
    for (auto& p : r.g->parameters()) w.emplace_back("G", p.detach().clone());
    w.emplace_back("stats", r.stats);
    w.emplace_back("logits", r.d->forward(r.real).detach());
    return w;
  };
  for (bool sn : {false, true}) {
    auto ref = once("direct", sn);
    for (const std::string mode : {"auto", "winograd"}) {
      auto got = once(mode, sn);
      ASSERT_EQ(got.size(), ref.size());
      double worst = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        EXPECT_EQ(got[i].first, ref[i].first);  // the same state_dict keys, in the same order
        worst = std::max(worst, (got[i].second - ref[i].second).abs().max().item<double>());
      }
      std::printf("  downconv %s%s: max abs diff over D's state, G's weights, losses and logits after 3 steps %.2e\n",
                  mode.c_str(), sn ? " (spectral norm)" : "", worst);
      EXPECT_LT(worst, 1e-6) << mode;  // the losses are float32 (d_loss, g_loss)
    }
  }
}

// G's form: conv_transpose2d(x, w, stride 2, padding 1) per output phase by F(m x m, 2 x 2).
namespace {

Result run_up(bool winograd, int tile, const at::Tensor& x0, const at::Tensor& w0, const at::Tensor& gy,
              bool x_grad = true, bool w_grad = true) {
  auto x = x0.detach().requires_grad_(x_grad);
  auto w = w0.detach().requires_grad_(w_grad);
  auto y = winograd ? gan::upconv_winograd(x, w, tile) : torch::conv_transpose2d(x, w, {}, 2, 1);
  y.backward(gy);
  return {y.detach(), x.grad(), w.grad()};
}

}  // namespace

TEST(WinogradUp, EqualsConvTranspose2dForwardAndBothGradients) {
  torch::manual_seed(5);
  struct Case {
    std::int64_t n, c, h, w, co;
    int tile;
    bool channels_last;
  };
  // Square and oblong inputs, both tiles, 1 to 32 channels, the 4x4 -> 8x8 and 32x32 -> 64x64 layers' sides.
  const std::vector<Case> cases = {{3, 5, 8, 8, 7, 4, false},  {3, 5, 8, 8, 7, 2, true},   {2, 16, 4, 8, 3, 2, false},
                                   {2, 16, 8, 4, 4, 4, true},   {1, 3, 2, 2, 2, 2, false},   {2, 32, 4, 4, 16, 4, false},
                                   {2, 8, 32, 32, 3, 4, false}, {4, 1, 6, 10, 1, 2, true}};
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    const double tol = dtype == torch::kDouble ? 1e-12 : 2e-5;
    for (const auto& k : cases) {
      auto x = torch::randn({k.n, k.c, k.h, k.w}, dtype);
      if (k.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      auto w = torch::randn({k.c, k.co, 4, 4}, dtype) * 0.1;
      auto gy = torch::randn({k.n, k.co, 2 * k.h, 2 * k.w}, dtype);
      const Result ref = run_up(false, 0, x, w, gy), got = run_up(true, k.tile, x, w, gy);
      ASSERT_EQ(got.y.sizes(), ref.y.sizes());
      const double dy = rel_diff(got.y, ref.y), dx = rel_diff(got.gx, ref.gx), dw = rel_diff(got.gw, ref.gw);
      std::printf("  %s [%ld, %ld, %ld, %ld] -> %ld, F(%dx%d, 2x2) x 4 phases%s: max rel diff y %.2e, dL/dx %.2e, "
                  "dL/dw %.2e\n",
                  dtype == torch::kDouble ? "float64" : "float32", k.n, k.c, k.h, k.w, k.co, k.tile, k.tile,
                  k.channels_last ? " channels_last" : "", dy, dx, dw);
      EXPECT_LT(dy, tol);
      EXPECT_LT(dx, tol);
      EXPECT_LT(dw, tol);
      EXPECT_TRUE(got.y.is_contiguous(at::MemoryFormat::ChannelsLast));
    }
  }
}

TEST(WinogradUp, ComputesOnlyTheGradientsAskedForAndSaysWhereItApplies) {
  torch::manual_seed(6);
  auto x = torch::randn({2, 8, 8, 8}, torch::kDouble), w = torch::randn({8, 6, 4, 4}, torch::kDouble);
  auto gy = torch::randn({2, 6, 16, 16}, torch::kDouble);
  const Result wo = run_up(true, 4, x, w, gy, /*x_grad=*/false), ref_w = run_up(false, 0, x, w, gy, false);
  EXPECT_FALSE(wo.gx.defined());
  EXPECT_LT(rel_diff(wo.gw, ref_w.gw), 1e-12);
  const Result xo = run_up(true, 2, x, w, gy, true, /*w_grad=*/false), ref_x = run_up(false, 0, x, w, gy, true, false);
  EXPECT_FALSE(xo.gw.defined());
  EXPECT_LT(rel_diff(xo.gx, ref_x.gx), 1e-12);
  auto wf = torch::randn({8, 6, 4, 4});
  EXPECT_TRUE(gan::upconv_winograd_applies(torch::randn({1, 8, 4, 4}), wf));
  EXPECT_FALSE(gan::upconv_winograd_applies(torch::randn({1, 8, 3, 3}), wf));  // odd side
  EXPECT_FALSE(gan::upconv_winograd_applies(torch::randn({1, 6, 4, 4}), wf));  // channels differ
  EXPECT_FALSE(gan::upconv_winograd_applies(torch::randn({1, 8, 4, 4}).to(torch::kBFloat16), wf.to(torch::kBFloat16)));
  EXPECT_THROW(gan::upconv_winograd(torch::randn({1, 8, 6, 6}), wf, 4), c10::Error);  // 4 does not divide 6
  // A generator layer asked for the Winograd form where it does not apply computes the phase form instead.
  gan::UpConv layer(8, 6, 2, 1);
  layer->mode = gan::UpconvMode::kWinograd;
  torch::NoGradGuard no_grad;
  auto odd = torch::randn({2, 8, 3, 3});
  EXPECT_LT(rel_diff(layer->forward(odd), torch::conv_transpose2d(odd, layer->weight, {}, 2, 1)), 1e-5);
  auto even = torch::randn({2, 8, 8, 8});
  EXPECT_LT(rel_diff(layer->forward(even), torch::conv_transpose2d(even, layer->weight, {}, 2, 1)), 1e-5);
  EXPECT_TRUE(layer->forward(even).is_contiguous(at::MemoryFormat::ChannelsLast));  // (it ran the Winograd form)
}

TEST(WinogradUp, MeasuredFormsAreRecordedAndRestoredAndComputeTheSameGenerator) {
  gan::ModelConfig m;
  m.image_size = 64;
  m.channels = 3;
  m.ngf = 16;
  torch::manual_seed(7);
  gan::Generator g(m);
  gan::dcgan_init(*g);
  g->eval();
  torch::NoGradGuard no_grad;
  auto z = torch::randn({4, m.nz});
  g->set_upconv_mode(gan::UpconvMode::kTransposed);
  const auto ref = g->forward(z);
  g->set_upconv_mode(gan::UpconvMode::kAuto);
  std::vector<std::string> report;
  std::string forms;
  {
    torch::AutoGradMode grad(true);  // measuring needs the backward pass
    forms = gan::tune_upconv(*g, 16, /*channels_last=*/false, &report);
  }
  std::printf("  measured at batch 16: %s\n", forms.c_str());
  for (const auto& l : report) std::printf("    %s\n", l.c_str());
  // One form per stride-2 layer (4x4, 8x8, 16x16, 32x32 inputs), each a measurable one; 4 report lines naming them.
  ASSERT_EQ(report.size(), 4u);
  std::vector<std::string> names;
  for (std::size_t b = 0, e; b <= forms.size(); b = e + 1) {
    e = forms.find(',', b);
    if (e == std::string::npos) e = forms.size();
    names.push_back(forms.substr(b, e - b));
  }
  ASSERT_EQ(names.size(), 4u);
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_TRUE(names[i] == "phase" || names[i] == "gemm" || names[i] == "winograd") << names[i];
    EXPECT_NE(report[i].find(names[i]), std::string::npos) << report[i];
  }
  // Layers big enough to time list all three forms' times (67 MFLOP forward each at batch 16); the last one (16 -> 3
  // channels, 25 MFLOP) is under kTuneMinFlops and keeps the fixed rule.
  for (int l = 0; l < 3; ++l)
    for (const char* f : {"phase ", "gemm ", "winograd "}) EXPECT_NE(report[l].find(f), std::string::npos) << report[l];
  EXPECT_NE(report[3].find("fixed rule"), std::string::npos) << report[3];
  EXPECT_EQ(names[3], "phase");
  EXPECT_LT((g->forward(z) - ref).abs().max().item<double>(), 1e-5);
  // Every form on every layer computes the same generator; a restored string sets exactly those forms.
  for (const std::string f : {"winograd,winograd,winograd,winograd", "gemm,phase,winograd,gemm"}) {
    gan::set_upconv_forms(*g, f);
    EXPECT_LT((g->forward(z) - ref).abs().max().item<double>(), 1e-5) << f;
  }
  int i = 0;
  for (auto& mod : g->modules(false))
    if (auto* u = mod->as<gan::UpConvImpl>(); u && u->stride == 2) {
      const std::int64_t side = 4 << i;
      EXPECT_EQ(u->form_for(side), std::vector<gan::UpconvMode>({gan::UpconvMode::kGemm, gan::UpconvMode::kPhase,
                                                                 gan::UpconvMode::kWinograd,
                                                                 gan::UpconvMode::kGemm})[i]);
      EXPECT_EQ(u->form_for(side * 2), gan::UpconvMode::kPhase);  // a side it was not measured for: the fixed rule
      ++i;
    }
  EXPECT_EQ(i, 4);
  EXPECT_THROW(gan::set_upconv_forms(*g, "phase,phase"), std::invalid_argument);             // 2 forms for 4 layers
  EXPECT_THROW(gan::set_upconv_forms(*g, "phase,phase,fast,phase"), std::invalid_argument);  // not a form
  EXPECT_THROW(gan::set_upconv_forms(*g, "phase,auto,phase,phase"), std::invalid_argument);  // not a measured form
}

TEST(WinogradUp, GeneratorTrainingStepIsTheSameFunction) {
  // Three float64 D+G steps with every stride-2 layer of G in the Winograd form (4x4 and 8x8 inputs: 2x2 and 4x4
  // tiles) against conv_transpose2d, with and without channels_last.
  gan::ModelConfig m;
  m.image_size = 16;
  m.channels = 3;
  m.ngf = m.ndf = 8;
  torch::set_num_threads(1);
  auto once = [&](const std::string& upconv, const std::string& channels_last) {
    gan::TrainConfig tc;
    tc.upconv = upconv;
    tc.channels_last = channels_last;
    tc.downconv = "direct";
    auto r = testutil::float64_sgd_steps(m, tc, 9, 8, 3);
    std::vector<std::pair<std::string, at::Tensor>> w;
    for (auto& p : r.g->named_parameters()) w.emplace_back(p.key(), p.value().detach().contiguous().clone());
    for (auto& p : r.g->named_buffers()) w.emplace_back(p.key(), p.value().detach().contiguous().clone());
    for (auto& p : r.d->parameters()) w.emplace_back("D", p.detach().contiguous().clone());
    w.emplace_back("stats", r.stats);
    return w;
  };
  const auto ref = once("transposed", "off");
  for (const std::string cl : {"off", "on"}) {
    const auto got = once("winograd", cl);
    ASSERT_EQ(got.size(), ref.size());
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_EQ(got[i].first, ref[i].first);  // the same state_dict keys, in the same order
      worst = std::max(worst, (got[i].second - ref[i].second).abs().max().item<double>());
    }
    std::printf("  upconv winograd channels_last %s: max abs diff over G's state, D's weights and losses after 3 "
                "steps %.2e\n", cl.c_str(), worst);
    EXPECT_LT(worst, 1e-6);  // the losses are float32 (d_loss, g_loss)
  }
}

TEST(WinogradUp, BatchesLargerThanOneChunkGiveTheSameResult) {
  // The transforms and GEMMs run on chunks of images whose transformed input is ~8 MB: in float64, 64 channels at
  // these sides make ~0.8 MB per image, so 24 images are chunks of 10, 10 and 4, in both forms.
  torch::manual_seed(8);
  auto xd = torch::randn({24, 64, 32, 32}, torch::kDouble), wd = torch::randn({16, 64, 4, 4}, torch::kDouble) * 0.05;
  auto gyd = torch::randn({24, 16, 16, 16}, torch::kDouble);
  const Result refd = run(false, 0, xd, wd, gyd), gotd = run(true, 4, xd, wd, gyd);
  auto xu = torch::randn({24, 64, 16, 16}, torch::kDouble), wu = torch::randn({64, 16, 4, 4}, torch::kDouble) * 0.05;
  auto gyu = torch::randn({24, 16, 32, 32}, torch::kDouble);
  const Result refu = run_up(false, 0, xu, wu, gyu), gotu = run_up(true, 4, xu, wu, gyu);
  for (auto [got, ref, what] : {std::make_tuple(&gotd, &refd, "down"), std::make_tuple(&gotu, &refu, "up")}) {
    const double dy = rel_diff(got->y, ref->y), dx = rel_diff(got->gx, ref->gx), dw = rel_diff(got->gw, ref->gw);
    std::printf("  %s, 24 images in 3 chunks: max rel diff y %.2e, dL/dx %.2e, dL/dw %.2e\n", what, dy, dx, dw);
    EXPECT_LT(dy, 1e-12) << what;
    EXPECT_LT(dx, 1e-12) << what;
    EXPECT_LT(dw, 1e-12) << what;
  }
}

TEST(Winograd, DiscriminatorFormsAreMeasuredRecordedAndRestored) {
  gan::ModelConfig m;
  m.image_size = 64;
  m.channels = 3;
  m.ndf = 16;
  torch::manual_seed(9);
  gan::Discriminator d(m);
  gan::dcgan_init(*d);
  d->eval();
  auto x = torch::randn({4, 3, 64, 64});
  torch::Tensor ref;
  {
    torch::NoGradGuard no_grad;
    ref = d->forward(x);  // kDirect
  }
  d->set_downconv_mode(gan::DownconvMode::kAuto);
  std::vector<std::string> report;
  const std::string forms = gan::tune_downconv(*d, 16, &report);
  std::printf("  D measured at batch 16: %s\n", forms.c_str());
  for (const auto& l : report) std::printf("    %s\n", l.c_str());
  // Four stride-2 layers (64, 32, 16 and 8 pixels in); the first (3 -> 16 channels, 25 MFLOP at 16 images) keeps the
  // fixed rule, the others are timed.
  ASSERT_EQ(report.size(), 4u);
  for (const auto& l : report) {
    EXPECT_TRUE(l.find(" direct") != std::string::npos || l.find(" winograd") != std::string::npos) << l;
  }
  EXPECT_NE(report[1].find("direct "), std::string::npos) << report[1];  // timed: both forms' times
  EXPECT_NE(report[1].find("winograd "), std::string::npos) << report[1];
  torch::NoGradGuard no_grad;
  EXPECT_LT((d->forward(x) - ref).abs().max().item<double>(), 1e-4);
  for (const std::string f : {"winograd,winograd,winograd,winograd", "direct,winograd,direct,winograd"}) {
    gan::set_downconv_forms(*d, f);
    EXPECT_LT((d->forward(x) - ref).abs().max().item<double>(), 1e-4) << f;
  }
  EXPECT_THROW(gan::set_downconv_forms(*d, "direct,direct"), std::invalid_argument);
  EXPECT_THROW(gan::set_downconv_forms(*d, "direct,fast,direct,direct"), std::invalid_argument);
}

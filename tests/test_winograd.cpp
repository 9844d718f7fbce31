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

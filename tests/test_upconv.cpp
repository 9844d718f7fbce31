// The re-expressed transposed convolutions (phase, gemm, 1x1 matmul) against torch's conv_transpose2d: same
// function, forward and backward, for the same [in, out, 4, 4] parameter.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gan/models.h"
#include "gan/step.h"
#include "step_fixture.h"

namespace {

struct Grads {
  at::Tensor y, gx, gw;
};

Grads run(const std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>& f, const at::Tensor& x0,
          const at::Tensor& w0, const at::Tensor& gy) {
  auto x = x0.detach().requires_grad_();
  auto w = w0.detach().requires_grad_();
  auto y = f(x, w);
  y.backward(gy);
  return {y.detach(), x.grad(), w.grad()};
}

// Max |a - b| relative to max |b|, printed.
double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-30, b.abs().max().item<double>());
}

void expect_same(const Grads& got, const Grads& ref, double tol, const std::string& what) {
  ASSERT_EQ(got.y.sizes(), ref.y.sizes()) << what;
  const double dy = rel_diff(got.y, ref.y), dx = rel_diff(got.gx, ref.gx), dw = rel_diff(got.gw, ref.gw);
  std::printf("  %s: max rel diff y %.2e, dL/dx %.2e, dL/dw %.2e\n", what.c_str(), dy, dx, dw);
  EXPECT_LT(dy, tol) << what;
  EXPECT_LT(dx, tol) << what;
  EXPECT_LT(dw, tol) << what;
}

}  // namespace

TEST(Upconv, PhaseAndGemmEqualConvTranspose2dForwardAndBackward) {
  torch::manual_seed(3);
  struct Case { int n, cin, cout, h, w; };
  for (Case c : {Case{2, 8, 5, 4, 4}, Case{3, 6, 3, 8, 8}, Case{2, 4, 1, 16, 16}, Case{1, 5, 7, 3, 6}, Case{2, 3, 2, 1, 1}}) {
    for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
      const double tol = dtype == torch::kFloat64 ? 1e-12 : 2e-5;
      auto x = torch::randn({c.n, c.cin, c.h, c.w}, dtype);
      auto w = torch::randn({c.cin, c.cout, 4, 4}, dtype) * 0.1;
      auto gy = torch::randn({c.n, c.cout, 2 * c.h, 2 * c.w}, dtype);
      auto ref = run([](auto& a, auto& b) { return torch::conv_transpose2d(a, b, {}, 2, 1); }, x, w, gy);
      const std::string shape = std::to_string(c.cin) + "->" + std::to_string(c.cout) + " at " + std::to_string(c.h) +
                                "x" + std::to_string(c.w) + (dtype == torch::kFloat64 ? " f64" : " f32");
      expect_same(run([](auto& a, auto& b) { return gan::upconv_phase(a, b); }, x, w, gy), ref, tol, "phase " + shape);
      expect_same(run([](auto& a, auto& b) { return gan::upconv_gemm(a, b); }, x, w, gy), ref, tol, "gemm " + shape);
      // channels_last in, channels_last out, same values.
      auto xcl = x.contiguous(at::MemoryFormat::ChannelsLast);
      auto got = run([](auto& a, auto& b) { return gan::upconv_phase(a, b); }, xcl, w, gy);
      if (c.h > 1) EXPECT_TRUE(got.y.is_contiguous(at::MemoryFormat::ChannelsLast)) << shape;
      expect_same(got, ref, tol, "phase channels_last " + shape);
    }
  }
}

TEST(Upconv, FirstLayerMatmulEqualsConvTranspose2d) {
  torch::manual_seed(4);
  auto z = torch::randn({5, 7, 1, 1}, torch::kFloat64);
  auto w = torch::randn({7, 6, 4, 4}, torch::kFloat64);
  auto gy = torch::randn({5, 6, 4, 4}, torch::kFloat64);
  auto ref = run([](auto& a, auto& b) { return torch::conv_transpose2d(a, b); }, z, w, gy);
  expect_same(run([](auto& a, auto& b) { return gan::upconv_from_1x1(a, b); }, z, w, gy), ref, 1e-12, "1x1 matmul");
}

TEST(Upconv, GeneratorGivesTheSameImagesAndStateDictInEveryMode) {
  gan::ModelConfig m;
  m.image_size = 32;
  m.channels = 3;
  m.ngf = 16;
  torch::manual_seed(5);
  gan::Generator g(m);
  gan::dcgan_init(*g);
  g->eval();
  // Parameter names are the PyTorch DCGAN example's: main.<i>.weight with the transposed [in, out, 4, 4] shape.
  auto params = g->named_parameters();
  ASSERT_TRUE(params.contains("main.0.weight"));
  EXPECT_EQ(params["main.0.weight"].sizes(), (std::vector<int64_t>{m.nz, 16 * 4, 4, 4}));
  EXPECT_EQ(params["main.3.weight"].sizes(), (std::vector<int64_t>{64, 32, 4, 4}));
  torch::NoGradGuard no_grad;
  auto z = torch::randn({4, m.nz});
  g->set_upconv_mode(gan::UpconvMode::kTransposed);
  auto ref = g->forward(z);
  for (auto mode : {gan::UpconvMode::kPhase, gan::UpconvMode::kGemm, gan::UpconvMode::kWinograd, gan::UpconvMode::kAuto}) {
    g->set_upconv_mode(mode);
    double diff = (g->forward(z) - ref).abs().max().item<double>();
    std::printf("  generator mode %d: max abs diff %.2e\n", static_cast<int>(mode), diff);
    EXPECT_LT(diff, 1e-5);
  }
  gan::set_channels_last(*g, true);
  EXPECT_TRUE(g->named_parameters()["main.3.weight"].is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_LT((g->forward(z) - ref).abs().max().item<double>(), 1e-5);
}

TEST(Upconv, TrainingStepIsTheSameFunctionInEveryForm) {
  // Three full D+G steps from the same weights and data: each fast form ends within rounding of the reference
  // form (conv_transpose2d, contiguous), with the same losses. In float64: in float32 a pre-activation within
  // rounding of 0 can land on the other side of a ReLU in one form, which moves that gradient by its whole size
  // (seen with LibTorch 2.6: 7% on one batch-norm bias gradient, while the forms agreed with float64 to 1e-8).
  gan::ModelConfig m;
  m.image_size = 16;
  m.channels = 1;
  m.ngf = m.ndf = 8;
  torch::set_num_threads(1);
  auto once = [&](const std::string& upconv, const std::string& channels_last) {
    gan::TrainConfig tc;
    tc.upconv = upconv;
    tc.channels_last = channels_last;
    const auto r = testutil::float64_sgd_steps(m, tc, 6, 8, 3);
    std::vector<at::Tensor> w;
    for (auto& p : r.g->parameters()) w.push_back(p.detach().contiguous().clone());
    for (auto& p : r.d->parameters()) w.push_back(p.detach().contiguous().clone());
    w.push_back(r.stats);
    return w;
  };
  auto ref = once("transposed", "off");
  for (auto [u, cl] : std::vector<std::pair<std::string, std::string>>{{"auto", "off"}, {"phase", "on"}, {"gemm", "off"}, {"winograd", "off"}}) {
    auto got = once(u, cl);
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, (got[i] - ref[i]).abs().max().item<double>());
    std::printf("  upconv %s channels_last %s: max abs diff over weights and losses after 3 steps %.2e\n", u.c_str(),
                cl.c_str(), worst);
    EXPECT_LT(worst, 1e-6) << u << " " << cl;  // the losses are float32 (d_loss, g_loss)
  }
}

// Augmentation of D's inputs (train.augment): each op against its formula on crafted images, gradients through every
// op (first and second order, against finite differences), p = 0 is the identity, draws for a global batch, ADA's
// controller, and runs with augmentation that resume bitwise.
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/version.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>

#include "gan/augment.h"
#include "gan/checkpoint.h"
#include "gan/config.h"
#include "gan/datasets.h"
#include "gan/loader.h"
#include "gan/errors.h"
#include "gan/models.h"
#include "gan/trainer.h"
#include "checkpoint_fixture.h"
#include "image_fixtures.h"
#include "test_util.h"

using testutil::TempDir;

namespace {

// [B, C, N, N] with value 100 b + 10 c + ... : every pixel tells where it came from.
at::Tensor coded(int b, int c, int n) {
  return torch::arange(b * c * n * n, torch::kDouble).view({b, c, n, n});
}

at::Tensor ones_long(std::vector<std::int64_t> v) { return torch::tensor(v, torch::kLong); }

// The op under test with fixed parameters, on a double batch of 2 images.
struct NamedOp {
  const char* name;
  std::function<at::Tensor(const at::Tensor&)> f;
};

std::vector<NamedOp> fixed_ops() {
  return {
      {"translate zero", [](const at::Tensor& x) { return gan::aug_translate(x, ones_long({1, -2}), ones_long({0, 1}), false); }},
      {"translate reflect", [](const at::Tensor& x) { return gan::aug_translate(x, ones_long({2, -1}), ones_long({-1, 3}), true); }},
      {"xflip", [](const at::Tensor& x) { return gan::aug_xflip(x, torch::tensor({true, false})); }},
      {"rotate90", [](const at::Tensor& x) { return gan::aug_rotate90(x, ones_long({1, 3})); }},
      {"scale", [](const at::Tensor& x) { return gan::aug_scale(x, torch::tensor({1.3, 0.7}, torch::kDouble)); }},
      {"cutout", [](const at::Tensor& x) { return gan::aug_cutout(x, ones_long({2, 5}), ones_long({3, 0}), 3); }},
      {"brightness", [](const at::Tensor& x) { return gan::aug_brightness(x, torch::tensor({0.3, -0.2})); }},
      {"contrast mean", [](const at::Tensor& x) { return gan::aug_contrast(x, torch::tensor({1.5, 0.6}), true); }},
      {"contrast zero", [](const at::Tensor& x) { return gan::aug_contrast(x, torch::tensor({1.5, 0.6}), false); }},
      {"saturation", [](const at::Tensor& x) { return gan::aug_saturation(x, torch::tensor({2.0, 0.25})); }},
  };
}

}  // namespace

TEST(Augment, TranslationMovesPixelsWithZeroOrMirrorPadding) {
  const at::Tensor x = coded(1, 1, 4);  // x(i, j) = 4 i + j
  at::Tensor z = gan::aug_translate(x, ones_long({1}), ones_long({0}), false);  // out(i, j) = x(i, j - 1)
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(z[0][0][i][0].item<double>(), 0.0);
    for (int j = 1; j < 4; ++j) EXPECT_EQ(z[0][0][i][j].item<double>(), 4 * i + j - 1);
  }
  at::Tensor r = gan::aug_translate(x, ones_long({0}), ones_long({2}), true);  // out(i, j) = x(i - 2, j), mirrored
  const int src_row[4] = {2, 1, 0, 1};  // rows -2, -1, 0, 1 mirrored into the image
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_EQ(r[0][0][i][j].item<double>(), 4 * src_row[i] + j) << i << "," << j;
  // Far beyond the border the mirror keeps folding: row -7 of 4 rows is row 1 (period 6: -7 -> 5 -> 6 - 5).
  at::Tensor far = gan::aug_translate(x, ones_long({0}), ones_long({7}), true);
  EXPECT_EQ(far[0][0][0][0].item<double>(), 4 * 1);
}

TEST(Augment, FlipsAndRotationsAreTorchsOwn) {
  const at::Tensor x = coded(4, 2, 5);
  at::Tensor f = gan::aug_xflip(x, torch::tensor({true, false, true, false}));
  EXPECT_TRUE(f[0].equal(x[0].flip({2})));
  EXPECT_TRUE(f[1].equal(x[1]));
  at::Tensor r = gan::aug_rotate90(x, ones_long({0, 1, 2, 3}));
  for (int k = 0; k < 4; ++k) EXPECT_TRUE(r[k].equal(torch::rot90(x[k], k, {1, 2}))) << "k = " << k;
}

TEST(Augment, ScalingIsBilinearAboutTheCentreAndExactAtOne) {
  // A ramp x(i, j) = j: bilinear interpolation of a linear function is exact, so zooming in by s = 2 gives
  // c + (j - c) / 2 (every source point lies inside the image).
  const int n = 8;
  const double c = (n - 1) / 2.0;
  at::Tensor ramp = torch::arange(n, torch::kDouble).view({1, 1, 1, n}).expand({1, 1, n, n}).contiguous();
  at::Tensor z = gan::aug_scale(ramp, torch::tensor({2.0}, torch::kDouble));
  for (int j = 0; j < n; ++j) EXPECT_NEAR(z[0][0][3][j].item<double>(), c + (j - c) / 2, 1e-12) << j;
  // Zooming out by 1/2 reads outside, mirrored: column 0 reads c - 2c = -c, mirrored to c (= 3.5 here).
  at::Tensor out = gan::aug_scale(ramp, torch::tensor({0.5}, torch::kDouble));
  EXPECT_NEAR(out[0][0][0][0].item<double>(), c, 1e-12);
  const at::Tensor x = torch::randn({3, 3, n, n}, torch::kDouble);
  EXPECT_TRUE(gan::aug_scale(x, torch::ones({3}, torch::kDouble)).equal(x));
}

TEST(Augment, CutoutAndColourOpsFollowTheirFormulas) {
  at::Tensor ones = torch::ones({1, 1, 6, 6}, torch::kDouble);
  at::Tensor cut = gan::aug_cutout(ones, ones_long({2}), ones_long({4}), 2);  // rows 1..2, columns 3..4
  EXPECT_EQ(cut.sum().item<double>(), 36 - 4);
  EXPECT_EQ(cut[0][0][1][3].item<double>(), 0.0);
  EXPECT_EQ(cut[0][0][2][4].item<double>(), 0.0);
  EXPECT_EQ(cut[0][0][0][3].item<double>(), 1.0);
  EXPECT_EQ(cut[0][0][1][5].item<double>(), 1.0);
  at::Tensor edge = gan::aug_cutout(ones, ones_long({0}), ones_long({0}), 3);  // clipped at the corner: 2 x 2
  EXPECT_EQ(edge.sum().item<double>(), 36 - 4);

  const at::Tensor x = torch::randn({2, 3, 4, 4}, torch::kDouble);
  EXPECT_TRUE(gan::aug_brightness(x, torch::tensor({0.5, -1.0})).allclose(
      x + torch::tensor({0.5, -1.0}, torch::kDouble).view({2, 1, 1, 1})));
  at::Tensor c = gan::aug_contrast(x, torch::tensor({2.0, 0.5}), true);
  EXPECT_TRUE(c.mean({1, 2, 3}).allclose(x.mean({1, 2, 3})));                               // the mean stays
  EXPECT_TRUE((c - c.mean({1, 2, 3}, true))[0].allclose(2.0 * (x - x.mean({1, 2, 3}, true))[0]));  // spread x 2
  EXPECT_TRUE(gan::aug_contrast(x, torch::tensor({2.0, 0.5}), false)[1].allclose(0.5 * x[1]));
  at::Tensor s = gan::aug_saturation(x, torch::tensor({0.0, 3.0}));
  EXPECT_TRUE(s[0].allclose(x[0].mean(0, true).expand({3, 4, 4})));  // s = 0: gray
  EXPECT_TRUE(s.mean(1).allclose(x.mean(1)));                         // luma kept
  at::Tensor gray = torch::randn({2, 1, 4, 4}, torch::kDouble);
  EXPECT_TRUE(gan::aug_saturation(gray, torch::tensor({0.0, 3.0})).allclose(gray));  // one channel: nothing
}

TEST(Augment, GradientsFlowThroughEveryOpToSecondOrder) {
  torch::manual_seed(11);
  for (const auto& op : fixed_ops()) {
    at::Tensor x = torch::randn({2, 3, 6, 6}, torch::kDouble).requires_grad_(true);
    const at::Tensor w = torch::randn({2, 3, 6, 6}, torch::kDouble);
    // f(x) = sum(w * op(x)^2): its gradient by autograd against central differences at a few points.
    auto f = [&](const at::Tensor& v) { return (w * op.f(v).pow(2)).sum(); };
    at::Tensor g = torch::autograd::grad({f(x)}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
    torch::NoGradGuard ng_outer;
    const double h = 1e-6;
    for (std::int64_t k : {0, 7, 40, 101, 150, 215}) {
      at::Tensor up = x.detach().clone(), down = x.detach().clone();
      up.view({-1})[k] += h;
      down.view({-1})[k] -= h;
      const double fd = (f(up).item<double>() - f(down).item<double>()) / (2 * h);
      EXPECT_NEAR(g.view({-1})[k].item<double>(), fd, 1e-6 * std::max(1.0, std::abs(fd))) << op.name << " at " << k;
    }
    // The second order (R1 and R2 differentiate D(augment(x)) in x, then the penalty in D's weights).
    at::AutoGradMode enable(true);
    at::Tensor gg = torch::autograd::grad({g.pow(2).sum()}, {x}, {}, false, false, /*allow_unused=*/true)[0];
    ASSERT_TRUE(gg.defined()) << op.name;
    EXPECT_TRUE(torch::isfinite(gg).all().item<bool>()) << op.name;
  }
}

TEST(Augment, ProbabilityZeroIsTheIdentityAndDrawsAreForTheGlobalBatch) {
  const std::vector<gan::AugOp> all = gan::parse_augment_policy(
      "color,translation,cutout,xflip,rotate90,xint,scale,brightness,contrast,saturation", "ada");
  ASSERT_EQ(all.size(), 10u);
  torch::manual_seed(5);
  const at::Tensor x = torch::randn({8, 3, 16, 16});
  const auto before = torch::rand({1});
  torch::manual_seed(5);
  torch::randn({8, 3, 16, 16});
  at::Tensor same = gan::augment(x, all, 0.0);
  EXPECT_TRUE(same.equal(x));
  EXPECT_TRUE(torch::rand({1}).equal(before));  // p = 0 draws nothing: the stream is untouched
  // Every op alone, at p = 0, returns x; at p = 1 it changes it.
  for (gan::AugOp op : all) {
    EXPECT_TRUE(gan::augment(x, {op}, 0.0).equal(x)) << gan::augment_policy_text({op});
    EXPECT_FALSE(gan::augment(x, {op}, 1.0).equal(x)) << gan::augment_policy_text({op});
  }
  // Rows [2, 6) of a global batch of 8 get exactly what one process augmenting all 8 gives them.
  torch::manual_seed(9);
  at::Tensor whole = gan::augment(x, all, 0.7);
  torch::manual_seed(9);
  at::Tensor part = gan::augment(x.narrow(0, 2, 4), all, 0.7, /*row_begin=*/2, /*global=*/8);
  EXPECT_TRUE(part.equal(whole.narrow(0, 2, 4)));
  // About half of the images are touched at p = 0.5 (brightness: 400 images).
  torch::manual_seed(1);
  at::Tensor many = torch::zeros({400, 1, 4, 4});
  at::Tensor b = gan::augment(many, {gan::AugOp::kBrightness}, 0.5);
  const double touched = (b.abs().sum({1, 2, 3}) > 0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(touched, 0.5, 0.08);
}

TEST(Augment, FusedRunsEqualTheOpsOneByOne) {
  // augment() applies runs of geometric ops as one gather and runs of colour ops as one channel matrix; the
  // definition is each op in turn on the images it touches (augment_op_by_op), from the same draws.
  const at::Tensor x = torch::randn({16, 3, 12, 12}, torch::kDouble);
  const std::vector<std::string> policies = {
      "xflip,rotate90,xint,scale,brightness,contrast,saturation",  // ADA's default order
      "scale,xint,rotate90,xflip",                                 // scale first: its four taps go through the rest
      "rotate90,scale,xflip,saturation,brightness,contrast",       // scale in the middle, colour ops reordered
      "brightness,xflip,contrast,xint,saturation,scale,cutout",    // runs of one op between the others
      "color,translation,cutout,xflip,rotate90"};                  // DiffAugment's ops, then two geometric
  for (const std::string& policy : policies) {
    const std::vector<gan::AugOp> ops = gan::parse_augment_policy(policy, "ada");
    // Colour runs round differently, and so does scale (its taps are summed with products of weights). Runs of
    // flips, rotations and integer shifts read the same pixels: equal.
    const bool rounding = policy.find("saturation") != std::string::npos || policy.find("scale") != std::string::npos;
    for (double p : {0.2, 0.6, 1.0}) {
      torch::manual_seed(21);
      const at::Tensor fused = gan::augment(x, ops, p);
      const at::Tensor after = torch::rand({1});
      torch::manual_seed(21);
      const at::Tensor reference = gan::augment_op_by_op(x, ops, p);
      EXPECT_TRUE(torch::rand({1}).equal(after)) << policy << ": both draw the same numbers";
      EXPECT_FALSE(fused.equal(x)) << policy << " p " << p;
      const double diff = (fused - reference).abs().max().item<double>();
      if (rounding) {
        EXPECT_LT(diff, 1e-12) << policy << " p " << p;
      } else {
        EXPECT_EQ(diff, 0.0) << policy << " p " << p;
      }
    }
  }
  // In float, with a global batch split across two processes: each half is what one process gives those rows.
  const std::vector<gan::AugOp> ada = gan::parse_augment_policy("", "ada");
  const at::Tensor xf = x.to(torch::kFloat);
  torch::manual_seed(3);
  const at::Tensor whole = gan::augment(xf, ada, 0.5);
  torch::manual_seed(3);
  const at::Tensor whole_ref = gan::augment_op_by_op(xf, ada, 0.5);
  EXPECT_LT((whole - whole_ref).abs().max().item<double>(), 1e-5);
  for (std::int64_t begin : {0, 8}) {
    torch::manual_seed(3);
    EXPECT_TRUE(gan::augment(xf.narrow(0, begin, 8), ada, 0.5, begin, 16).equal(whole.narrow(0, begin, 8))) << begin;
  }
}

TEST(Augment, AutocastLeavesTheOpsInTheImagesDtype) {
  // The step augments inside its autocast scope; bf16 autocast would run the colour matrix in bf16.
  const std::vector<gan::AugOp> ada = gan::parse_augment_policy("", "ada");
  const at::Tensor x = torch::randn({8, 3, 16, 16});
  torch::manual_seed(6);
  const at::Tensor plain = gan::augment(x, ada, 1.0);
  auto cpu_autocast = [](bool on) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, on);
#else
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(on);
#endif
  };
  cpu_autocast(true);
  torch::manual_seed(6);
  const at::Tensor autocast = gan::augment(x, ada, 1.0);
  cpu_autocast(false);
  EXPECT_EQ(autocast.scalar_type(), at::kFloat);
  EXPECT_TRUE(autocast.equal(plain));
}

TEST(Augment, FusedRunsDifferentiateToSecondOrder) {
  // G learns through the fused sampling and the channel matrix; R1 differentiates D(augment(x)) in x, then again.
  const std::vector<gan::AugOp> ada = gan::parse_augment_policy("", "ada");
  at::Tensor x = torch::randn({6, 3, 8, 8}, torch::kDouble).requires_grad_(true);
  const at::Tensor w = torch::randn({6, 3, 8, 8}, torch::kDouble);
  auto f = [&](const at::Tensor& v, bool fused) {
    torch::manual_seed(4);
    return (w * (fused ? gan::augment(v, ada, 0.7) : gan::augment_op_by_op(v, ada, 0.7)).pow(2)).sum();
  };
  at::Tensor g = torch::autograd::grad({f(x, true)}, {x}, {}, true, true)[0];
  at::Tensor g_ref = torch::autograd::grad({f(x, false)}, {x}, {}, true, true)[0];
  EXPECT_LT((g - g_ref).abs().max().item<double>(), 1e-10);
  EXPECT_GT(g.abs().sum().item<double>(), 0.0);
  at::Tensor gg = torch::autograd::grad({g.pow(2).sum()}, {x})[0];
  at::Tensor gg_ref = torch::autograd::grad({g_ref.pow(2).sum()}, {x})[0];
  EXPECT_LT((gg - gg_ref).abs().max().item<double>(), 1e-9 * std::max(1.0, gg_ref.abs().max().item<double>()));
}

TEST(Augment, PolicyNamesAreChecked) {
  EXPECT_EQ(gan::augment_policy_text(gan::parse_augment_policy("", "diffaug")), "color,translation,cutout");
  EXPECT_EQ(gan::augment_policy_text(gan::parse_augment_policy("", "ada")),
            "xflip,rotate90,xint,scale,brightness,contrast,saturation");
  EXPECT_EQ(gan::parse_augment_policy(" xflip , cutout,xflip", "ada").size(), 2u);
  try {
    gan::parse_augment_policy("color,blur", "diffaug");
    FAIL() << "expected an error";
  } catch (const gan::UserError& e) {
    EXPECT_EQ(e.code(), gan::kExitUsage);
    EXPECT_NE(std::string(e.what()).find("train.augment_policy: unknown op 'blur'"), std::string::npos) << e.what();
  }
}

TEST(Augment, AdaRaisesPWhenDOverfitsAndLowersItOtherwise) {
  // A D that outputs +1 on every real image: r_t = 1 > 0.6, p rises by 4 x 64 / 500,000 per update until it is 1.
  double p = 0;
  for (int i = 0; i < 10; ++i) p = gan::ada_update(p, 1.0, 0.6, 4 * 64, 500);
  EXPECT_NEAR(p, 10 * 256 / 500000.0, 1e-15);
  int updates = 10;
  while (p < 1) p = gan::ada_update(p, 1.0, 0.6, 4 * 64, 500), ++updates;
  EXPECT_EQ(p, 1.0);
  EXPECT_EQ(updates, static_cast<int>(std::ceil(500000.0 / 256)));  // 1 in 500 kimg
  // r_t below the target: p falls, and stops at 0.
  p = gan::ada_update(p, 0.2, 0.6, 4 * 64, 500);
  EXPECT_NEAR(p, 1 - 256 / 500000.0, 1e-15);
  EXPECT_EQ(gan::ada_update(0.001, -1.0, 0.6, 4 * 64, 0.1), 0.0);
  EXPECT_EQ(gan::ada_update(0.3, 0.6, 0.6, 4 * 64, 500), 0.3);  // at the target: stays
}

TEST(Augment, AdaRunsKeepPInTheCheckpointAndResumeBitwise) {
  TempDir dir;
  gan::Config full = testutil::tiny_train_config(dir, testutil::write_halves_dataset(dir, 64, 16), 10);
  full.train.augment = "ada";
  full.train.ada_target = 0.0;  // any positive mean sign on the reals raises p
  full.train.ada_kimg = 1;      // p moves by 4 x 16 / 1000 per update
  full.data.xflip = true;
  full.output.name = "full";
  full.output.checkpoint_every = 6;  // step 6: two steps into an ADA interval
  gan::validate_config(full);
  gan::TrainSummary a = gan::train(full);
  const std::string rows = testutil::slurp(a.run_dir + "/metrics.jsonl");
  EXPECT_NE(rows.find("\"augment_p\": "), std::string::npos) << rows;

  gan::Config part = full;
  part.output.name = "part";
  part.train.steps = 6;
  gan::TrainSummary b = gan::train(part);
  gan::Config more = part;
  more.train.steps = 10;
  gan::TrainSummary c = gan::train(more, b.checkpoint);
  testutil::Nets na = testutil::load_all(a.checkpoint), nb = testutil::load_all(b.checkpoint),
                 nc = testutil::load_all(c.checkpoint);
  const gan::TrainingState &sa = na.state, &sb = nb.state, &sc = nc.state;
  std::printf("ADA p after 6 steps %.4f (sum of r since the last move %.3f), after 10: %.4f\n", sb.augment_p,
              sb.ada_sum, sa.augment_p);
  EXPECT_EQ(sa.augment_p, sc.augment_p);
  EXPECT_GT(sa.augment_p, 0.0);
  EXPECT_TRUE(testutil::bitwise_equal(*na.g, *nc.g));
  EXPECT_TRUE(testutil::bitwise_equal(*na.d, *nc.d));
  EXPECT_FALSE(testutil::bitwise_equal(*na.g, *nb.g));
}

TEST(DataXflip, MirrorsAboutHalfOfTheImagesTheSameWayEveryTime) {
  int mirrored = 0;
  for (int place = 0; place < 1000; ++place) mirrored += gan::BatchLoader::mirrored(1, 0, place);
  EXPECT_NEAR(mirrored, 500, 60);
  EXPECT_EQ(gan::BatchLoader::mirrored(1, 3, 17), gan::BatchLoader::mirrored(1, 3, 17));
  int differ = 0;
  for (int place = 0; place < 200; ++place)
    differ += gan::BatchLoader::mirrored(1, 0, place) != gan::BatchLoader::mirrored(1, 1, place);
  EXPECT_GT(differ, 60);  // another epoch, other images mirrored
  // Through the loader: an image and its mirror; with data.xflip every mirrored image is the original's mirror.
  TempDir dir;
  gan::DataConfig data;
  data.source = "idx";
  data.path = testutil::write_halves_dataset(dir, 32, 16);
  auto src = gan::open_dataset(data, 16, 1);
  gan::BatchLoader plain(*src, 32, 1, {}, 1), flipped(*src, 32, 1, {}, 1, 3, false, 0, 1, true);
  at::Tensor a = plain.next().images, b = flipped.next().images;
  int flips = 0;
  for (int i = 0; i < 32; ++i) {
    const bool same = a[i].equal(b[i]), mirror = a[i].flip({2}).equal(b[i]);
    EXPECT_TRUE(same || mirror) << i;
    EXPECT_EQ(mirror, gan::BatchLoader::mirrored(1, 0, i)) << i;
    flips += mirror;
  }
  EXPECT_GT(flips, 4);
}

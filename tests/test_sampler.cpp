// gan-sample's latent tools: seed lists, truncation, interpolation, latent arithmetic, class choice, the GIF writer,
// and end-to-end runs of the gan-sample executable.
#include <gtest/gtest.h>
#include <stb/stb_image.h>
#include <sys/wait.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "gan/checkpoint.h"
#include "gan/config.h"
#include "gan/files.h"
#include "gan/gif.h"
#include "gan/decode.h"
#include "gan/image.h"
#include "gan/models.h"
#include "gan/sampler.h"
#include "gan/trainer.h"
#include "image_fixtures.h"
#include "test_util.h"

namespace fs = std::filesystem;
using testutil::expect_user_error;
using testutil::TempDir;
using testutil::run;

namespace {

gan::ModelConfig latent_model(int nz, const std::string& latent = "normal") {
  gan::ModelConfig m;
  m.nz = nz;
  m.latent = latent;
  return m;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// ---- GIF structure walker: counts image descriptors by following the block structure (not by byte search) ----
struct GifInfo {
  bool ok = false;
  int width = 0, height = 0, frames = 0;
  std::vector<int> delays;  // from the graphic control extensions, 1/100 s
  std::string error;
};
GifInfo walk_gif(const std::string& b) {
  GifInfo info;
  auto u8 = [&](size_t i) { return static_cast<int>(static_cast<unsigned char>(b[i])); };
  auto u16 = [&](size_t i) { return u8(i) | (u8(i + 1) << 8); };
  if (b.size() < 13 || b.compare(0, 6, "GIF89a") != 0) return info.error = "no GIF89a header", info;
  info.width = u16(6);
  info.height = u16(8);
  size_t p = 13;
  if (u8(10) & 0x80) p += 3u * (2u << (u8(10) & 7));
  auto skip_sub_blocks = [&]() -> bool {
    while (p < b.size()) {
      const int len = u8(p++);
      if (len == 0) return true;
      p += static_cast<size_t>(len);
    }
    return false;
  };
  while (p < b.size()) {
    const int tag = u8(p++);
    if (tag == 0x3B) {
      info.ok = p == b.size();
      if (!info.ok) info.error = "bytes after the trailer";
      return info;
    }
    if (tag == 0x21) {
      if (p + 1 >= b.size()) break;
      const int label = u8(p++);
      if (label == 0xF9 && p + 3 < b.size()) info.delays.push_back(u16(p + 2));
      if (!skip_sub_blocks()) break;
    } else if (tag == 0x2C) {
      if (p + 9 >= b.size()) break;
      const int flags = u8(p + 8);
      p += 9;
      if (flags & 0x80) p += 3u * (2u << (flags & 7));
      ++p;  // LZW minimum code size
      if (!skip_sub_blocks()) break;
      ++info.frames;
    } else {
      info.error = "unknown block " + std::to_string(tag);
      return info;
    }
  }
  if (info.error.empty()) info.error = "truncated";
  return info;
}

// Every frame through stb_image's GIF decoder, as RGBA: [frames][h*w*4].
std::vector<std::vector<std::uint8_t>> decode_all_frames(const std::string& bytes, int* w, int* h) {
  int* delays = nullptr;
  int z = 0, comp = 0;
  stbi_uc* px = stbi_load_gif_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), static_cast<int>(bytes.size()),
                                          &delays, w, h, &z, &comp, 4);
  std::vector<std::vector<std::uint8_t>> out;
  if (!px) return out;
  const size_t frame = static_cast<size_t>(*w) * static_cast<size_t>(*h) * 4;
  for (int i = 0; i < z; ++i) out.emplace_back(px + i * frame, px + (i + 1) * frame);
  stbi_image_free(px);
  free(delays);
  return out;
}

gan::Image noise_image(int w, int h, int c, unsigned seed) {
  gan::Image im{w, h, c, {}};
  std::uint32_t s = seed;
  for (int i = 0; i < w * h * c; ++i) {
    s = s * 1664525u + 1013904223u;
    im.pixels.push_back(static_cast<std::uint8_t>(s >> 24));
  }
  return im;
}

// ---- end-to-end helpers ----


struct Png {
  int w = 0, h = 0, n = 0;
  std::vector<std::uint8_t> px;
};
Png load_png(const std::string& path) {
  Png p;
  unsigned char* d = stbi_load(path.c_str(), &p.w, &p.h, &p.n, 0);
  if (d) {
    p.px.assign(d, d + p.w * p.h * p.n);
    stbi_image_free(d);
  }
  return p;
}
// The image at grid cell (row, col) of a make_grid PNG with padding 2, as a gray crop.
std::vector<std::uint8_t> cell(const Png& g, int size, int row, int col) {
  std::vector<std::uint8_t> out;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const int gy = 2 + row * (size + 2) + y, gx = 2 + col * (size + 2) + x;
      out.push_back(g.px[static_cast<size_t>((gy * g.w + gx) * g.n)]);
    }
  return out;
}
int max_abs_diff(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  int worst = a.size() == b.size() ? 0 : 255;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) worst = std::max(worst, std::abs(int(a[i]) - int(b[i])));
  return worst;
}

// One tiny unconditional checkpoint from gan::train (2 steps) and one conditional checkpoint (3 named classes) saved
// directly from freshly initialised networks, shared by the end-to-end tests.
class SamplerCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    fixtures::Bytes b;
    std::uint32_t s = 99;
    for (int i = 0; i < 32 * 16 * 16; ++i) {
      s = s * 1664525u + 1013904223u;
      b.push_back(static_cast<std::uint8_t>(s >> 24));
    }
    const std::string data = *dir_ / "noise-idx3-ubyte";
    fixtures::write_file(data, fixtures::idx_images(32, 16, 16, b));
    gan::Config c = testutil::tiny_train_config(*dir_, data, 2);
    c.output.sample_every = c.output.checkpoint_every = 1000;
    c.output.samples = 4;
    plain_ = new std::string(gan::train(c).checkpoint);

    gan::Config k = c;
    k.model.conditional = true;
    k.model.num_classes = 3;
    k.model.class_embed = 4;
    torch::manual_seed(5);
    gan::Generator g(k.model);
    gan::Discriminator d(k.model);
    gan::dcgan_init(*g);
    gan::dcgan_init(*d);
    torch::optim::Adam og(g->parameters(), torch::optim::AdamOptions(2e-4));
    torch::optim::Adam od(d->parameters(), torch::optim::AdamOptions(2e-4));
    gan::TrainingState st;
    st.rng_state = torch::zeros({8}, torch::kByte);
    st.fixed_noise = gan::sample_latent(k.model, 4);
    st.fixed_labels = torch::zeros({4}, torch::kLong);
    st.class_names = {"zero", "one", "two"};
    conditional_ = new std::string(*dir_ / "conditional.pt");
    gan::save_checkpoint(*conditional_, k, g, d, og, od, st);
  }
  static void TearDownTestSuite() {
    delete plain_;
    delete conditional_;
    delete dir_;
  }
  static std::string sample_cmd(const std::string& ckpt) {
    return std::string(GAN_SAMPLE_EXE) + " --threads 1 --device cpu --checkpoint " + ckpt;
  }
  static TempDir* dir_;
  static std::string* plain_;
  static std::string* conditional_;
};
TempDir* SamplerCli::dir_ = nullptr;
std::string* SamplerCli::plain_ = nullptr;
std::string* SamplerCli::conditional_ = nullptr;

}  // namespace

// ---------------- parsing ----------------

TEST(SamplerParse, SeedListsAndRanges) {
  EXPECT_EQ(gan::parse_seeds("0-3"), (std::vector<std::int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(gan::parse_seeds("1,5,9-12"), (std::vector<std::int64_t>{1, 5, 9, 10, 11, 12}));
  EXPECT_EQ(gan::parse_seeds(" 7 , 7,2 - 3"), (std::vector<std::int64_t>{7, 7, 2, 3}));
  EXPECT_EQ(gan::parse_seeds("4-4"), (std::vector<std::int64_t>{4}));
  EXPECT_EQ(gan::parse_seeds("123456789012"), (std::vector<std::int64_t>{123456789012}));
}

TEST(SamplerParse, SeedErrorsNameTheOptionAndTheFix) {
  expect_user_error([] { gan::parse_seeds("5-3"); }, gan::kExitUsage, {"--seeds '5-3'", "runs backwards", "3-5"});
  expect_user_error([] { gan::parse_seeds("x"); }, gan::kExitUsage, {"--seeds 'x'", "'x' is not a seed", "0-63"});
  expect_user_error([] { gan::parse_seeds(""); }, gan::kExitUsage, {"--seeds", "no seeds"});
  expect_user_error([] { gan::parse_seeds("1,,2"); }, gan::kExitUsage, {"empty item"});
  expect_user_error([] { gan::parse_seeds("1,"); }, gan::kExitUsage, {"empty item"});
  expect_user_error([] { gan::parse_seeds("-3"); }, gan::kExitUsage, {"not a seed range"});
  expect_user_error([] { gan::parse_seeds("2-"); }, gan::kExitUsage, {"not a seed range"});
  expect_user_error([] { gan::parse_seeds("1.5"); }, gan::kExitUsage, {"not a seed"});
  expect_user_error([] { gan::parse_seeds("0-999999999"); }, gan::kExitUsage, {"more than 100000 seeds"});
  expect_user_error([] { gan::parse_seeds("3,x", "--interpolate"); }, gan::kExitUsage, {"--interpolate '3,x'"});
}

TEST(SamplerParse, Arithmetic) {
  auto t = gan::parse_arithmetic("1-2+3");
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].sign, 1);
  EXPECT_EQ(t[1].sign, -1);
  EXPECT_EQ(t[2].sign, 1);
  EXPECT_EQ(t[1].seeds, (std::vector<std::int64_t>{2}));
  t = gan::parse_arithmetic(" [1,2,3] - [4-6] + [ 7, 8,9 ]");
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].seeds, (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_EQ(t[1].seeds, (std::vector<std::int64_t>{4, 5, 6}));
  EXPECT_EQ(t[1].sign, -1);
  EXPECT_EQ(t[2].seeds, (std::vector<std::int64_t>{7, 8, 9}));
  t = gan::parse_arithmetic("-3+4");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].sign, -1);
  for (const char* bad : {"", "1-", "1+x", "[1,2", "1 2", "[]", "1--2", "[1,x]"})
    expect_user_error([&] { gan::parse_arithmetic(bad); }, gan::kExitUsage, {"--arithmetic"});
  expect_user_error([] { gan::parse_arithmetic("1 2"); }, gan::kExitUsage, {"expected + or - at '2'"});
}

TEST(SamplerParse, ResolveClass) {
  gan::ModelConfig m;
  expect_user_error([&] { gan::resolve_class("1", m, {}, "a.pt"); }, gan::kExitUsage, {"a.pt", "unconditional", "leave out --class"});
  m.conditional = true;
  m.num_classes = 3;
  const std::vector<std::string> names{"cat", "dog", "fish"};
  EXPECT_EQ(gan::resolve_class("1", m, names, "a.pt"), 1);
  EXPECT_EQ(gan::resolve_class("dog", m, names, "a.pt"), 1);
  EXPECT_EQ(gan::resolve_class("FISH", m, names, "a.pt"), 2);
  expect_user_error([&] { gan::resolve_class("bird", m, names, "a.pt"); }, gan::kExitUsage,
                    {"'bird' is not a class of a.pt", "0-2 or cat, dog, fish"});
  expect_user_error([&] { gan::resolve_class("3", m, names, "a.pt"); }, gan::kExitUsage, {"3 classes"});
}

TEST(SamplerParse, OptionCombinationsAreCheckedBeforeLoading) {
  // The checkpoint does not exist: every one of these must fail on the options first (exit code 2, not 4).
  auto with = [](auto edit) {
    gan::SampleOptions o;
    o.checkpoint = "/nonexistent/none.pt";
    o.out = "x.png";
    edit(o);
    return o;
  };
  auto expect = [](const gan::SampleOptions& o, const std::string& part) {
    expect_user_error([&] { gan::sample(o); }, gan::kExitUsage, {part});
  };
  expect(with([](auto& o) { o.seeds = "3,x"; }), "--seeds '3,x'");
  expect(with([](auto& o) { o.arithmetic = "1-2"; o.seeds = "3"; }), "--seeds cannot be combined with --arithmetic");
  expect(with([](auto& o) { o.arithmetic = "1-2"; o.interpolate = "3,4"; }), "cannot be combined");
  expect(with([](auto& o) { o.frames = "fr"; }), "--frames needs --interpolate");
  expect(with([](auto& o) { o.interpolate = "1,2"; o.individual = "d"; }), "use --frames DIR");
  expect(with([](auto& o) { o.interpolate = "1,2"; o.out.clear(); }), "--frames DIR and/or --gif");
  expect(with([](auto& o) { o.interpolate = "1,2"; o.steps = 1; }), "--steps 1");
  expect(with([](auto& o) { o.interpolate = "1,2"; o.fps = 0; }), "--fps 0");
  expect(with([](auto& o) { o.interpolate = "1,2"; o.mode = "cubic"; }), "--mode 'cubic'");
  expect(with([](auto& o) { o.truncation = -0.5; }), "--truncation -0.5");
  expect(with([](auto& o) { o.arithmetic = "[1,2"; }), "'[' without ']'");
  expect(with([](auto& o) { o.out.clear(); }), "nothing to write");
}

// ---------------- latent maths ----------------

TEST(SamplerLatent, EachSeedHasItsOwnLatent) {
  const auto m = latent_model(32);
  at::Tensor both = gan::seed_latents(m, {3, 7});  // [2, 32]
  ASSERT_EQ(both.sizes(), (std::vector<std::int64_t>{2, 32}));
  EXPECT_TRUE(torch::equal(both[1], gan::seed_latent(m, 7)));
  EXPECT_TRUE(torch::equal(both[1], gan::seed_latents(m, {7, 9, 11})[0]));
  EXPECT_FALSE(torch::equal(both[0], both[1]));
  // The same draw as sample_latent from a generator seeded with 7.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  EXPECT_TRUE(torch::equal(both[1], gan::sample_latent(m, 1, gen)[0]));
}

TEST(SamplerLatent, TruncationBoundsNormalLatents) {
  const auto m = latent_model(512);
  for (double psi : {0.3, 0.7, 1.5}) {
    for (std::int64_t seed : {0, 1, 2}) {
      at::Tensor raw = gan::seed_latent(m, seed), t = gan::seed_latent(m, seed, psi);  // [512]
      const double worst = t.abs().max().item<double>();
      EXPECT_LE(worst, psi) << "psi " << psi;
      EXPECT_GT(raw.abs().max().item<double>(), psi);  // there was something to truncate
      // BigGAN definition: components inside [-psi, psi] are kept, only the others are redrawn.
      at::Tensor inside = raw.abs() <= psi;
      EXPECT_TRUE(torch::equal(t.masked_select(inside), raw.masked_select(inside)));
      EXPECT_TRUE(torch::equal(t, gan::seed_latent(m, seed, psi)));  // deterministic per seed
    }
  }
  // A batch, as --n uses it.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Tensor z = gan::truncate_latent(torch::randn({64, 100}), "normal", 0.5, gen);
  std::printf("truncated normal psi 0.5: max |z| %.4f, std %.4f (untruncated std 1)\n", z.abs().max().item<double>(),
              z.std().item<double>());
  EXPECT_LE(z.abs().max().item<double>(), 0.5);
  EXPECT_LT(z.std().item<double>(), 0.5 / std::sqrt(3.0) + 0.02);  // narrower than uniform on [-psi, psi]
  expect_user_error([&] { gan::truncate_latent(z, "normal", 0.001, gen); }, gan::kExitUsage, {"--truncation", "0.01 to 100"});
}

TEST(SamplerLatent, TruncationScalesUniformLatents) {
  const auto m = latent_model(64, "uniform");
  at::Tensor raw = gan::seed_latent(m, 4), t = gan::seed_latent(m, 4, 0.5);
  EXPECT_LT(max_diff(t, raw * 0.5), 1e-7);
  EXPECT_LE(t.abs().max().item<double>(), 0.5);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  expect_user_error([&] { gan::truncate_latent(raw, "uniform", 1.5, gen); }, gan::kExitUsage,
                    {"--truncation", "uniform", "0 < psi <= 1"});
}

TEST(SamplerLatent, SlerpEndsAtTheSeedsAndInterpolatesTheNorm) {
  const auto m = latent_model(100);
  at::Tensor a = gan::seed_latent(m, 1), b = gan::seed_latent(m, 2);  // [100]
  const double d0 = max_diff(gan::slerp(a, b, 0), a), d1 = max_diff(gan::slerp(a, b, 1), b);
  std::printf("slerp ends: max |s(0) - a| %.3g, max |s(1) - b| %.3g\n", d0, d1);
  EXPECT_LT(d0, 1e-6);
  EXPECT_LT(d1, 1e-6);
  const double na = a.norm().item<double>(), nb = b.norm().item<double>();
  const double omega = std::acos((a.dot(b) / (na * nb)).item<double>());
  for (double t : {0.25, 0.5, 0.75}) {
    at::Tensor s = gan::slerp(a, b, t);
    // Length moves linearly; the direction moves at constant angular speed on the great circle.
    EXPECT_NEAR(s.norm().item<double>(), (1 - t) * na + t * nb, 1e-4) << t;
    const double angle = std::acos((s.dot(a) / (s.norm() * na)).item<double>());
    EXPECT_NEAR(angle, t * omega, 1e-4) << t;
  }
  // Equal lengths stay equal all the way; lerp's midpoint of near-orthogonal latents is ~0.7x as long.
  at::Tensor b2 = b * (na / nb);
  for (double t : {0.1, 0.5, 0.9}) EXPECT_NEAR(gan::slerp(a, b2, t).norm().item<double>(), na, 1e-4);
  const double lerp_mid = gan::lerp(a, b2, 0.5).norm().item<double>();
  std::printf("|a| = %.3f, angle %.1f deg, |lerp midpoint| %.3f, |slerp midpoint| %.3f\n", na, omega * 180 / M_PI,
              lerp_mid, gan::slerp(a, b2, 0.5).norm().item<double>());
  EXPECT_LT(lerp_mid, 0.85 * na);
  // Parallel vectors fall back to lerp instead of dividing by sin(0).
  EXPECT_LT(max_diff(gan::slerp(a, a * 2, 0.5), a * 1.5), 1e-5);
}

TEST(SamplerLatent, LerpMidpointIsTheAverage) {
  const auto m = latent_model(100);
  at::Tensor a = gan::seed_latent(m, 1), b = gan::seed_latent(m, 2);
  EXPECT_LT(max_diff(gan::lerp(a, b, 0.5), (a + b) / 2), 1e-6);
  EXPECT_TRUE(torch::equal(gan::lerp(a, b, 0), a));
  EXPECT_LT(max_diff(gan::lerp(a, b, 1), b), 1e-7);
}

TEST(SamplerLatent, InterpolationPathVisitsEveryKey) {
  const auto m = latent_model(20);
  at::Tensor keys = gan::seed_latents(m, {4, 5, 6});  // [3, 20]
  for (const char* mode : {"slerp", "lerp"}) {
    at::Tensor p = gan::interpolation_path(keys, 5, mode);  // [2, 5, 20]
    ASSERT_EQ(p.sizes(), (std::vector<std::int64_t>{2, 5, 20}));
    EXPECT_LT(max_diff(p[0][0], keys[0]), 1e-6) << mode;
    EXPECT_LT(max_diff(p[0][4], keys[1]), 1e-6) << mode;
    EXPECT_LT(max_diff(p[1][0], keys[1]), 1e-6) << mode;
    EXPECT_LT(max_diff(p[1][4], keys[2]), 1e-6) << mode;
  }
  expect_user_error([&] { gan::interpolation_path(keys, 1, "slerp"); }, gan::kExitUsage, {"--steps"});
  expect_user_error([&] { gan::interpolation_path(keys, 4, "cubic"); }, gan::kExitUsage, {"--mode 'cubic'"});
}

TEST(SamplerLatent, ArithmeticIsSignedSumOfGroupMeans) {
  const auto m = latent_model(50);
  auto terms = gan::parse_arithmetic("[1,2,3]-[4,5,6]+[7,8,9]");
  gan::ArithmeticLatents r = gan::arithmetic_latents(m, terms);
  auto mean = [&](std::vector<std::int64_t> s) { return gan::seed_latents(m, s).mean(0); };
  at::Tensor expected = mean({1, 2, 3}) - mean({4, 5, 6}) + mean({7, 8, 9});
  const double d = max_diff(r.result, expected);
  std::printf("arithmetic: max |result - (mean A - mean B + mean C)| %.3g\n", d);
  EXPECT_LT(d, 1e-6);
  ASSERT_EQ(r.terms.sizes(), (std::vector<std::int64_t>{3, 50}));
  EXPECT_LT(max_diff(r.terms[1], mean({4, 5, 6})), 1e-7);  // term images show the unsigned group mean
  // Single seeds: exactly a - b + c; with truncation the truncated latents are combined.
  r = gan::arithmetic_latents(m, gan::parse_arithmetic("1-2+3"), 0.7);
  at::Tensor t = gan::seed_latents(m, {1, 2, 3}, 0.7);
  EXPECT_LT(max_diff(r.result, t[0] - t[1] + t[2]), 1e-6);
}

// ---------------- GIF writer ----------------

TEST(Gif, GrayFramesRoundTripExactly) {
  // A smooth frame, a flat one (long LZW strings) and noise big enough to fill the 4096-code table several times.
  const int w = 130, h = 97;
  std::vector<gan::Image> frames;
  gan::Image smooth{w, h, 1, fixtures::pattern(w, h, 1, 3)};
  gan::Image flat{w, h, 1, std::vector<std::uint8_t>(w * h, 200)};
  frames = {smooth, flat, noise_image(w, h, 1, 7), noise_image(w, h, 1, 8)};
  const std::string gif = gan::encode_gif(frames, 7);
  EXPECT_EQ(gif.compare(0, 6, "GIF89a"), 0);
  GifInfo info = walk_gif(gif);
  ASSERT_TRUE(info.ok) << info.error;
  EXPECT_EQ(info.frames, 4);
  EXPECT_EQ(info.width, w);
  EXPECT_EQ(info.height, h);
  EXPECT_EQ(info.delays, (std::vector<int>{7, 7, 7, 7}));
  int dw = 0, dh = 0;
  auto decoded = decode_all_frames(gif, &dw, &dh);
  ASSERT_EQ(decoded.size(), 4u);
  ASSERT_EQ(dw, w);
  ASSERT_EQ(dh, h);
  for (size_t f = 0; f < 4; ++f) {
    int worst = 0;
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 3; ++c) worst = std::max(worst, std::abs(decoded[f][4 * i + c] - frames[f].pixels[i]));
    EXPECT_EQ(worst, 0) << "frame " << f;
  }
  // The project's own decoder (stb_image, first frame) reads it with the right size.
  gan::Image first;
  std::string err;
  ASSERT_TRUE(gan::decode_image(std::vector<std::uint8_t>(gif.begin(), gif.end()), first, err)) << err;
  EXPECT_EQ(first.width, w);
  EXPECT_EQ(first.height, h);
}

TEST(Gif, RgbFramesUseTheColourCube) {
  const int w = 64, h = 40;
  std::vector<gan::Image> frames{gan::Image{w, h, 3, fixtures::pattern(w, h, 3, 1)}, noise_image(w, h, 3, 2)};
  const std::string gif = gan::encode_gif(frames, 10);
  GifInfo info = walk_gif(gif);
  ASSERT_TRUE(info.ok) << info.error;
  EXPECT_EQ(info.frames, 2);
  int dw = 0, dh = 0;
  auto decoded = decode_all_frames(gif, &dw, &dh);
  ASSERT_EQ(decoded.size(), 2u);
  int worst = 0, mismatches = 0;
  for (size_t f = 0; f < 2; ++f)
    for (int i = 0; i < w * h; ++i) {
      const std::uint8_t* p = &frames[f].pixels[3 * i];
      gan::Rgb q = gan::cube_colour(gan::cube_index(p[0], p[1], p[2]));
      for (int c = 0; c < 3; ++c) {
        mismatches += decoded[f][4 * i + c] != q[c];
        worst = std::max(worst, std::abs(int(decoded[f][4 * i + c]) - int(p[c])));
      }
    }
  std::printf("RGB GIF: max |decoded - original| %d levels (cube steps 51/42.5/51)\n", worst);
  EXPECT_EQ(mismatches, 0);
  EXPECT_LE(worst, 26);
  for (int i = 0; i < 252; ++i) EXPECT_EQ(gan::cube_index(gan::cube_colour(i)[0], gan::cube_colour(i)[1], gan::cube_colour(i)[2]), i);
  EXPECT_EQ(gan::cube_colour(gan::cube_index(255, 255, 255)), (gan::Rgb{255, 255, 255}));
}

TEST(Gif, WriteGifIsAtomicAndChecksFps) {
  TempDir dir;
  std::vector<gan::Image> frames{noise_image(8, 8, 1, 1), noise_image(8, 8, 1, 2), noise_image(8, 8, 1, 3)};
  gan::write_gif(dir / "a.gif", frames, 4);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()), 1);  // no temporary left
  GifInfo info = walk_gif(gan::read_file(dir / "a.gif"));
  ASSERT_TRUE(info.ok) << info.error;
  EXPECT_EQ(info.frames, 3);
  EXPECT_EQ(info.delays, (std::vector<int>{25, 25, 25}));
  expect_user_error([&] { gan::write_gif(dir / "b.gif", frames, 0); }, gan::kExitUsage, {"--fps"});
  expect_user_error([&] { gan::write_gif(dir / "none/b.gif", frames, 10); }, gan::kExitIo, {"none/b.gif"});
  EXPECT_THROW(gan::encode_gif({}, 10), std::invalid_argument);
  EXPECT_THROW(gan::encode_gif({noise_image(8, 8, 1, 1), noise_image(9, 8, 1, 1)}, 10), std::invalid_argument);
}

// ---------------- gan-sample end to end ----------------

TEST_F(SamplerCli, SeedImagesDoNotDependOnWhatElseIsAsked) {
  TempDir out;
  std::string log;
  ASSERT_EQ(run(sample_cmd(*plain_) + " --seeds 0-5 --out " + (out / "g.png") + " --individual " + (out / "a"), &log), 0) << log;
  ASSERT_EQ(run(sample_cmd(*plain_) + " --seeds 9,5,3 --individual " + (out / "b"), &log), 0) << log;
  Png g = load_png(out / "g.png");
  EXPECT_EQ(g.w, 6 * 18 + 2);
  EXPECT_EQ(g.h, 18 + 2);
  EXPECT_EQ(std::distance(fs::directory_iterator(out / "a"), fs::directory_iterator()), 6);
  for (const char* f : {"seed000005.png", "seed000003.png"}) {
    Png x = load_png(out / ("a/" + std::string(f))), y = load_png(out / ("b/" + std::string(f)));
    ASSERT_EQ(x.w, 16);
    // Other batch sizes may round differently in the last bit; the 8-bit pixels agree to within one level.
    EXPECT_LE(max_abs_diff(x.px, y.px), 1) << f;
  }
  EXPECT_EQ(cell(g, 16, 0, 5), load_png(out / "a/seed000005.png").px);
  EXPECT_NE(load_png(out / "a/seed000004.png").px, load_png(out / "a/seed000005.png").px);
  // Truncation changes the images but keeps them per seed.
  ASSERT_EQ(run(sample_cmd(*plain_) + " --seeds 5 --truncation 0.5 --individual " + (out / "c"), &log), 0) << log;
  ASSERT_EQ(run(sample_cmd(*plain_) + " --seeds 2-5 --truncation 0.5 --individual " + (out / "d"), &log), 0) << log;
  EXPECT_LE(max_abs_diff(load_png(out / "c/seed000005.png").px, load_png(out / "d/seed000005.png").px), 1);
  EXPECT_NE(load_png(out / "c/seed000005.png").px, load_png(out / "a/seed000005.png").px);
}

TEST_F(SamplerCli, InterpolateWritesStripFramesAndGif) {
  TempDir out;
  std::string log;
  ASSERT_EQ(run(sample_cmd(*plain_) + " --interpolate 1,2,3 --steps 4 --out " + (out / "strip.png") + " --frames " +
                    (out / "fr") + " --gif " + (out / "walk.gif") + " --fps 5",
                &log),
            0)
      << log;
  Png strip = load_png(out / "strip.png");
  EXPECT_EQ(strip.w, 4 * 18 + 2);  // one row per pair of seeds
  EXPECT_EQ(strip.h, 2 * 18 + 2);
  EXPECT_EQ(std::distance(fs::directory_iterator(out / "fr"), fs::directory_iterator()), 7);  // 2 * (4 - 1) + 1
  const std::string gif = gan::read_file(out / "walk.gif");
  EXPECT_EQ(gif.compare(0, 6, "GIF89a"), 0);
  GifInfo info = walk_gif(gif);
  ASSERT_TRUE(info.ok) << info.error;
  EXPECT_EQ(info.frames, 7);
  EXPECT_EQ(info.delays, std::vector<int>(7, 20));
  gan::Image first;
  std::string err;
  ASSERT_TRUE(gan::decode_image_file(out / "walk.gif", first, err)) << err;
  EXPECT_EQ(first.width, 16);
  EXPECT_EQ(first.height, 16);
  // Gray GIFs are exact: the first GIF frame is frame 0, which is the strip's first cell; the walk ends at seed 3.
  Png f0 = load_png(out / "fr/frame_000000.png");
  std::vector<std::uint8_t> gif_first;
  for (int i = 0; i < 256; ++i) gif_first.push_back(first.pixels[static_cast<size_t>(i * first.channels)]);
  EXPECT_EQ(gif_first, f0.px);
  EXPECT_EQ(cell(strip, 16, 0, 0), f0.px);
  EXPECT_LE(max_abs_diff(cell(strip, 16, 1, 0), cell(strip, 16, 0, 3)), 1);  // seed 2 ends row 0 and starts row 1
  ASSERT_EQ(run(sample_cmd(*plain_) + " --seeds 1,3 --individual " + (out / "s"), &log), 0) << log;
  EXPECT_LE(max_abs_diff(load_png(out / "s/seed000001.png").px, f0.px), 1);
  EXPECT_LE(max_abs_diff(load_png(out / "s/seed000003.png").px, load_png(out / "fr/frame_000006.png").px), 1);
  // lerp gives other inner frames, the same ends.
  ASSERT_EQ(run(sample_cmd(*plain_) + " --interpolate 1,2 --steps 5 --mode lerp --frames " + (out / "lin"), &log), 0) << log;
  EXPECT_LE(max_abs_diff(load_png(out / "lin/frame_000000.png").px, f0.px), 1);
}

TEST_F(SamplerCli, ArithmeticRowHoldsTermsAndResult) {
  TempDir out;
  std::string log;
  ASSERT_EQ(run(sample_cmd(*plain_) + " --arithmetic '[1,2,3]-4+[5-7]' --out " + (out / "row.png"), &log), 0) << log;
  Png row = load_png(out / "row.png");
  EXPECT_EQ(row.w, 4 * 18 + 2);
  EXPECT_EQ(row.h, 18 + 2);
  // The single-seed term's image is that seed's image.
  ASSERT_EQ(run(sample_cmd(*plain_) + " --seeds 4 --individual " + (out / "s"), &log), 0) << log;
  EXPECT_LE(max_abs_diff(cell(row, 16, 0, 1), load_png(out / "s/seed000004.png").px), 1);
}

TEST_F(SamplerCli, BadOptionsGiveOneLineAndExitCode2) {
  TempDir out;
  const std::string png = " --out " + (out / "x.png");
  // Each run costs ~1 s of libtorch start-up: one case per kind of check (the parsers have their own tests above).
  const std::vector<std::pair<std::string, std::string>> cases{
      {" --seeds 5-3" + png, "runs backwards"},
      {" --class 1 --seeds 1" + png, "unconditional"},
      {" --gif " + (out / "a.gif"), "--gif needs --interpolate"},
      {" --interpolate 1" + png, "at least two seeds"},
      {" --interpolate 1,2 --mode cubic" + png, "--mode"},
      {" --seeds 1 --truncation -1" + png, "--truncation -1: give a positive PSI"},
      {" --arithmetic '1+'" + png, "--arithmetic"},
  };
  for (const auto& [args, expected] : cases) {
    std::string log;
    EXPECT_EQ(run(sample_cmd(*plain_) + args, &log), 2) << args << "\n" << log;
    EXPECT_NE(log.find(expected), std::string::npos) << args << "\n" << log;
    EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << args << "\n" << log;
  }
  EXPECT_FALSE(fs::exists(out / "x.png"));
}

TEST_F(SamplerCli, ConditionalModelGridHasOneRowPerClass) {
  TempDir out;
  std::string log;
  ASSERT_EQ(run(sample_cmd(*conditional_) + " --seeds 0-4 --out " + (out / "g.png") + " --individual " + (out / "all"), &log), 0) << log;
  Png g = load_png(out / "g.png");
  EXPECT_EQ(g.w, 5 * 18 + 2);  // columns: the seeds
  EXPECT_EQ(g.h, 3 * 18 + 2);  // rows: the 3 classes
  EXPECT_NE(cell(g, 16, 0, 2), cell(g, 16, 1, 2));  // same latent, other class, other image
  EXPECT_EQ(std::distance(fs::directory_iterator(out / "all"), fs::directory_iterator()), 15);
  // --class by name or index: one class; the image of (class two, seed 3) is the grid's cell (2, 3).
  ASSERT_EQ(run(sample_cmd(*conditional_) + " --seeds 0-4 --class two --individual " + (out / "two"), &log), 0) << log;
  EXPECT_LE(max_abs_diff(cell(g, 16, 2, 3), load_png(out / "two/class002_seed000003.png").px), 1);
  EXPECT_EQ(cell(g, 16, 2, 3), load_png(out / "all/class002_seed000003.png").px);  // same run, same tensor
  ASSERT_EQ(run(sample_cmd(*conditional_) + " --n 4 --class 1 --out " + (out / "one.png"), &log), 0) << log;
  EXPECT_EQ(load_png(out / "one.png").w, 4 * 18 + 2);
  // --n counts images in all, spread over the classes (a grid row per class when they divide evenly);
  // --n-per-class draws each latent in every class.
  ASSERT_EQ(run(sample_cmd(*conditional_) + " --n 10 --individual " + (out / "ten"), &log), 0) << log;
  EXPECT_EQ(std::distance(fs::directory_iterator(out / "ten"), fs::directory_iterator()), 10);
  EXPECT_TRUE(fs::exists(out / "ten/class000_000009.png"));  // image i has class i % 3
  EXPECT_TRUE(fs::exists(out / "ten/class002_000008.png"));
  ASSERT_EQ(run(sample_cmd(*conditional_) + " --n 9 --out " + (out / "nine.png"), &log), 0) << log;
  EXPECT_EQ(load_png(out / "nine.png").w, 3 * 18 + 2);  // 3 latents per row ...
  EXPECT_EQ(load_png(out / "nine.png").h, 3 * 18 + 2);  // ... one row per class
  ASSERT_EQ(run(sample_cmd(*conditional_) + " --n-per-class 2 --individual " + (out / "pc"), &log), 0) << log;
  EXPECT_EQ(std::distance(fs::directory_iterator(out / "pc"), fs::directory_iterator()), 6);
  // Interpolation and arithmetic within a class.
  ASSERT_EQ(run(sample_cmd(*conditional_) + " --class 1 --interpolate 0,1 --steps 3 --gif " + (out / "c.gif"), &log), 0) << log;
  EXPECT_EQ(walk_gif(gan::read_file(out / "c.gif")).frames, 3);
  ASSERT_EQ(run(sample_cmd(*conditional_) + " --class zero --arithmetic 1-2+3 --out " + (out / "a.png"), &log), 0) << log;
  // Unknown class: exit 2 and the valid ones listed.
  EXPECT_EQ(run(sample_cmd(*conditional_) + " --class bird --seeds 1 --out " + (out / "b.png"), &log), 2) << log;
  EXPECT_NE(log.find("valid: 0-2 or zero, one, two"), std::string::npos) << log;
  EXPECT_EQ(run(sample_cmd(*conditional_) + " --class 3 --seeds 1 --out " + (out / "b.png"), &log), 2) << log;
}

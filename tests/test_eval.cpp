#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gan/datasets.h"
#include "gan/eval.h"
#include "gan/files.h"
#include "gan/inception.h"
#include "gan/models.h"
#include "gan/weights.h"
#include "gan/trainer.h"
#include "image_fixtures.h"
#include "test_util.h"

namespace fs = std::filesystem;
using testutil::TempDir;
using testutil::run;

namespace {

at::Tensor randn(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randn({n, d}, gen, torch::kDouble);  // [n, d]
}

// 16x16 IDX images + labels of 10 classes: a bright 4x4 square in cell c of a 4x4 grid on a dark, noisy background.
// Returns the images file; the labels file sits next to it (images-idx3 -> labels-idx1).
std::string write_squares_dataset(const std::string& dir, int n, bool with_labels = true) {
  fixtures::Bytes px, labels;
  std::uint32_t state = 99;
  auto draw = [&](int lo, int hi) {
    state = state * 1664525u + 1013904223u;
    return lo + static_cast<int>((state >> 8) % static_cast<std::uint32_t>(hi - lo + 1));
  };
  for (int i = 0; i < n; ++i) {
    const int c = i % 10, cy = (c / 4) * 4, cx = (c % 4) * 4, level = draw(190, 250);
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) {
        const bool in = y >= cy && y < cy + 4 && x >= cx && x < cx + 4;
        px.push_back(static_cast<std::uint8_t>(std::clamp((in ? level : 30) + draw(-20, 20), 0, 255)));
      }
    labels.push_back(static_cast<std::uint8_t>(c));
  }
  const std::string images = dir + "/squares-images-idx3-ubyte";
  fixtures::write_file(images, fixtures::idx_images(n, 16, 16, px));
  if (with_labels) fixtures::write_file(dir + "/squares-labels-idx1-ubyte", fixtures::idx_labels(labels));
  return images;
}

gan::Config eval_config(const std::string& data, const std::string& cache) {
  gan::Config c;
  c.data.source = "idx";
  c.data.path = data;
  c.model.image_size = 16;
  c.model.channels = 1;
  c.eval.samples = 100;
  c.eval.cache = cache;
  c.eval.max_time = "";
  return c;
}

// The dataset's images in order, as a "generator" (a perfect one, up to sampling).
gan::GenerateFn real_images(const gan::Config& cfg, std::int64_t offset) {
  auto src = std::shared_ptr<gan::ImageSource>(gan::open_dataset(cfg.data, 16, 1));
  return [src, offset](std::int64_t first, std::int64_t count) {
    at::Tensor out = torch::empty({count, 1, 16, 16}, torch::kUInt8);  // [count, 1, 16, 16]
    for (std::int64_t i = 0; i < count; ++i)
      src->load((offset + first + i) % src->size(), out.data_ptr<std::uint8_t>() + i * 256);
    return out.to(torch::kFloat).div(127.5).sub(1.0);  // [count, 1, 16, 16] in [-1, 1]
  };
}

// One dataset and eval cache shared by the classifier and end-to-end tests (the classifier is trained once).
struct Shared {
  TempDir dir;
  std::string data, cache;
  Shared() {
    data = write_squares_dataset(dir.str(), 400);
    cache = dir / "cache";
  }
};
Shared& shared() {
  static Shared s;
  return s;
}


}  // namespace

TEST(EvalMetrics, FrechetDistanceOfIdenticalSetsIsZero) {
  at::Tensor a = randn(500, 8, 1);
  const double fd = gan::frechet_distance(a, a);
  std::printf("FD(a, a) = %.3g\n", fd);
  EXPECT_LT(fd, 1e-8);
}

TEST(EvalMetrics, FrechetDistanceOfMeanShiftIsSquaredShift) {
  at::Tensor a = randn(2000, 8, 2);
  at::Tensor shift = torch::arange(8, torch::kDouble) * 0.25;  // [8]; |shift|^2 = 0.0625 * 140 = 8.75
  const double fd = gan::frechet_distance(a, a + shift);
  std::printf("FD = %.10f, |shift|^2 = 8.75\n", fd);
  EXPECT_NEAR(fd, 8.75, 1e-8);
}

TEST(EvalMetrics, FrechetDistanceClosedFormForDiagonalCovariances) {
  // FD = |mu1 - mu2|^2 + sum (s1 - s2)^2 for diagonal covariances diag(s1^2), diag(s2^2).
  at::Tensor mu1 = torch::tensor({0.0, 1.0, 2.0}, torch::kDouble), mu2 = torch::tensor({1.0, 1.0, 0.0}, torch::kDouble);
  at::Tensor s1 = torch::tensor({1.0, 2.0, 0.5}, torch::kDouble), s2 = torch::tensor({3.0, 1.0, 0.5}, torch::kDouble);
  const double expected = 1 + 0 + 4 + 4 + 1 + 0;
  const double fd = gan::frechet_distance_stats(mu1, torch::diag(s1 * s1), mu2, torch::diag(s2 * s2));
  std::printf("FD = %.12f, expected %.1f\n", fd, expected);
  EXPECT_NEAR(fd, expected, 1e-9);
  // A common rotation of both covariances changes nothing.
  at::Tensor q = std::get<0>(at::linalg_qr(randn(3, 3, 3)));  // [3, 3] orthogonal
  const double rotated = gan::frechet_distance_stats(mu1, q.matmul(torch::diag(s1 * s1)).matmul(q.t()), mu2,
                                                     q.matmul(torch::diag(s2 * s2)).matmul(q.t()));
  EXPECT_NEAR(rotated, expected, 1e-9);
  // Sampled Gaussians approach the closed form.
  const double sampled = gan::frechet_distance(randn(20000, 3, 4) * s1 + mu1, randn(20000, 3, 5) * s2 + mu2);
  std::printf("sampled FD = %.4f\n", sampled);
  EXPECT_NEAR(sampled, expected, 0.2);
}

TEST(EvalMetrics, FrechetDistanceIsSymmetric) {
  at::Tensor a = randn(300, 6, 6), b = randn(400, 6, 7) * 1.5 + 0.3;
  const double ab = gan::frechet_distance(a, b), ba = gan::frechet_distance(b, a);
  std::printf("FD(a, b) = %.12f, FD(b, a) = %.12f\n", ab, ba);
  EXPECT_NEAR(ab, ba, 1e-9 * ab);
  EXPECT_GT(ab, 0.1);
}

TEST(EvalMetrics, KidIsNearZeroForOneDistributionAndPositiveForShifted) {
  at::Tensor a = randn(1000, 16, 8), b = randn(1000, 16, 9);
  gan::KidResult same = gan::kid(a, b, 50, 500), shifted = gan::kid(a, b + 0.5, 50, 500);
  std::printf("KID same %.5f +- %.5f, shifted %.5f +- %.5f\n", same.mean, same.std, shifted.mean, shifted.std);
  EXPECT_LT(std::abs(same.mean), 0.02);
  EXPECT_GT(shifted.mean, 0.1);
  EXPECT_GT(shifted.mean, 10 * std::abs(same.mean));
  EXPECT_NEAR(gan::kid(a, a, 10, 500).mean, 0.0, 0.02);
  EXPECT_GT(same.std, 0);
  // Subsets of all rows of both sets: one value, no spread (not "+- 0").
  const gan::KidResult whole = gan::kid(a, b + 0.5, 50, 1000), many = gan::kid(a, b + 0.5, 50, 999);
  EXPECT_TRUE(std::isnan(whole.std));
  EXPECT_TRUE(std::isfinite(many.std));
  EXPECT_NEAR(whole.mean, many.mean, 0.05 * many.mean);
}

TEST(EvalMetrics, PrecisionRecallOfIdenticalAndDisjointSets) {
  at::Tensor a = randn(400, 4, 10);
  gan::PrecisionRecall same = gan::precision_recall(a, a);
  EXPECT_DOUBLE_EQ(same.precision, 1.0);
  EXPECT_DOUBLE_EQ(same.recall, 1.0);
  gan::PrecisionRecall apart = gan::precision_recall(a, randn(300, 4, 11) + 100);
  EXPECT_DOUBLE_EQ(apart.precision, 0.0);
  EXPECT_DOUBLE_EQ(apart.recall, 0.0);
  // Generated points on one half of the real cloud: precise but with low recall.
  at::Tensor half = a.index_select(0, torch::nonzero(a.select(1, 0) > 0).squeeze(1));  // [~200, 4]
  gan::PrecisionRecall part = gan::precision_recall(a, half);
  std::printf("half: precision %.3f recall %.3f\n", part.precision, part.recall);
  EXPECT_DOUBLE_EQ(part.precision, 1.0);
  EXPECT_LT(part.recall, 0.75);
}

TEST(EvalMetrics, EntropyOfUniformHistogramIsLogK) {
  EXPECT_NEAR(gan::entropy(std::vector<double>(10, 0.1)), std::log(10.0), 1e-12);
  EXPECT_NEAR(gan::entropy(std::vector<double>(7, 3.0)), std::log(7.0), 1e-12);  // normalised
  EXPECT_EQ(gan::entropy({0, 1, 0}), 0.0);
  EXPECT_EQ(gan::entropy({}), 0.0);
}

TEST(EvalClassifier, TrainsOnceThenComesFromTheCache) {
  Shared& s = shared();
  gan::Config cfg = eval_config(s.data, s.cache);
  fs::remove_all(s.cache);  // start cold
  std::string path;
  {
    gan::Evaluator ev(cfg, torch::kCPU);
    const gan::ExtractorInfo& info = ev.extractor_info();
    std::printf("classifier: accuracy %.3f, %.1f s, %s\n", info.accuracy, info.train_seconds, info.cache_file.c_str());
    EXPECT_TRUE(info.trained_now);
    EXPECT_FALSE(info.real_stats_cached);
    EXPECT_GT(info.accuracy, 0.8);  // chance is 0.1
    path = info.cache_file;
    EXPECT_TRUE(fs::is_regular_file(path));
  }
  const auto mtime = fs::last_write_time(path);
  gan::Evaluator ev(cfg, torch::kCPU);
  EXPECT_FALSE(ev.extractor_info().trained_now);
  EXPECT_TRUE(ev.extractor_info().real_stats_cached);
  EXPECT_EQ(ev.extractor_info().cache_file, path);
  EXPECT_EQ(fs::last_write_time(path), mtime);

  // A perfect generator (real images) scores near the floor; one constant image covers one class.
  gan::EvalResult good = ev.evaluate(real_images(cfg, 0));
  std::printf("%s%s\n", gan::eval_table(good).c_str(), gan::eval_json(good).c_str());
  EXPECT_EQ(good.n_gen, 100);
  EXPECT_FALSE(good.capped);
  EXPECT_TRUE(std::isfinite(good.fd) && std::isfinite(good.fd_floor));
  EXPECT_GT(good.classes_covered, 8);
  EXPECT_GT(good.class_entropy, 0.9 * std::log(10.0));
  EXPECT_GT(good.precision, 0.5);
  auto one = [](std::int64_t, std::int64_t count) {
    at::Tensor x = torch::full({count, 1, 16, 16}, -0.8);  // [count, 1, 16, 16]
    x.narrow(2, 0, 4).narrow(3, 0, 4).fill_(0.8);           // class 0's square
    return x;
  };
  gan::EvalResult bad = ev.evaluate(one);
  std::printf("%s", gan::eval_table(bad).c_str());
  EXPECT_EQ(bad.classes_covered, 1);
  EXPECT_LT(bad.class_entropy, 0.1);
  EXPECT_GT(bad.fd, 5 * good.fd);
  EXPECT_LT(bad.recall, 0.2);
  EXPECT_EQ(bad.fd_floor, good.fd_floor);
}

TEST(EvalClassifier, ADifferentDatasetDoesNotReuseIt) {
  Shared& s = shared();
  TempDir other;
  gan::Config cfg = eval_config(write_squares_dataset(other.str(), 300), s.cache);
  cfg.eval.samples = 100;
  gan::Evaluator ev(cfg, torch::kCPU);
  EXPECT_TRUE(ev.extractor_info().trained_now);
}

TEST(EvalClassifier, UnlabelledDataNeedsTheInceptionOrATorchScriptExtractor) {
  TempDir dir;
  gan::Config cfg = eval_config(write_squares_dataset(dir.str(), 100, /*with_labels=*/false), dir / "cache");
  testutil::expect_user_error([&] { gan::Evaluator ev(cfg, torch::kCPU); }, gan::kExitUsage,
                              {"eval.extractor", "no class labels", "pt_inception-2015-12-05-6726825d.pth",
                               "TorchScript"});
}

TEST(EvalExtractor, TorchScriptModelGivesTheFeatures) {
  TempDir dir;
  torch::jit::Module m("RowMeans");
  m.define(R"(
def forward(self, x):
    return torch.mean(x, [2])
)");
  const std::string path = dir / "rows.pt";
  m.save(path);
  gan::Config cfg = eval_config(write_squares_dataset(dir.str(), 200), dir / "cache");
  cfg.eval.extractor = path;
  gan::Evaluator ev(cfg, torch::kCPU);
  EXPECT_EQ(ev.extractor_info().description, path);
  gan::EvalResult r = ev.evaluate(real_images(cfg, 0));
  std::printf("%s", gan::eval_table(r).c_str());
  EXPECT_EQ(r.feature_dim, 16);  // [N, 1, 16] flattened
  EXPECT_TRUE(std::isfinite(r.fd));
  EXPECT_TRUE(r.class_hist.empty());
  EXPECT_NE(gan::eval_json(r).find("\"extractor\": \"" + path + "\""), std::string::npos);
  // Same file again: the real features come from the cache.
  gan::Evaluator again(cfg, torch::kCPU);
  EXPECT_TRUE(again.extractor_info().real_stats_cached);
}

TEST(EvalExtractor, BadPathIsAUserErrorNamingTheKey) {
  TempDir dir;
  gan::Config cfg = eval_config(write_squares_dataset(dir.str(), 100), dir / "cache");
  cfg.eval.extractor = dir / "missing.pt";
  testutil::expect_user_error([&] { gan::Evaluator ev(cfg, torch::kCPU); }, gan::kExitUsage,
                              {"eval.extractor", "missing.pt"});
  fixtures::write_file(dir / "junk.pt", fixtures::Bytes(100, 7));
  cfg.eval.extractor = dir / "junk.pt";
  testutil::expect_user_error([&] { gan::Evaluator ev(cfg, torch::kCPU); }, gan::kExitUsage,
                              {"eval.extractor", "junk.pt", "TorchScript"});
}

TEST(EvalExtractor, MaxTimeCapsTheSampleCount) {
  TempDir dir;
  torch::jit::Module m("RowMeans");
  m.define("def forward(self, x):\n    return torch.mean(x, [2])\n");
  m.save(dir / "rows.pt");
  gan::Config cfg = eval_config(write_squares_dataset(dir.str(), 2000), dir / "cache");
  cfg.eval.extractor = dir / "rows.pt";
  cfg.eval.samples = 1000;
  cfg.eval.max_time = "1s";
  gan::Evaluator ev(cfg, torch::kCPU);
  auto fast = real_images(cfg, 0);
  auto slow = [&](std::int64_t first, std::int64_t count) {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));  // 500 images (the minimum) take 1.2 s
    return fast(first, count);
  };
  gan::EvalResult r = ev.evaluate(slow);
  std::printf("%s", gan::eval_table(r).c_str());
  EXPECT_TRUE(r.capped);
  EXPECT_EQ(r.n_gen, gan::kMinEvalSamples);
  EXPECT_NE(gan::eval_table(r).find("CAPPED"), std::string::npos);
  EXPECT_TRUE(std::isfinite(r.fd));
}

TEST(EvalSampler, SameSeedSameImagesWhateverTheChunks) {
  gan::ModelConfig m;
  m.image_size = 16;
  m.nz = 8;
  m.ngf = 4;
  m.conditional = true;
  m.num_classes = 3;
  gan::Generator g(m);
  g->eval();
  gan::GenerateFn a = gan::generator_sampler(g, m, torch::kCPU, 5), b = gan::generator_sampler(g, m, torch::kCPU, 5);
  at::Tensor whole = a(0, 6);                           // [6, 1, 16, 16]
  at::Tensor parts = torch::cat({b(0, 2), b(2, 4)});    // [6, 1, 16, 16]
  EXPECT_EQ(whole.sizes(), (std::vector<std::int64_t>{6, 1, 16, 16}));
  // The same latents and labels; the batch size may change GEMM rounding only.
  const double split = (whole - parts).abs().max().item<double>();
  const double restart = (a(3, 3) - whole.narrow(0, 3, 3)).abs().max().item<double>();  // a restart at any index
  const double other = (gan::generator_sampler(g, m, torch::kCPU, 6)(0, 6) - whole).abs().max().item<double>();
  std::printf("max |diff|: split %.3g, restart %.3g, other seed %.3g\n", split, restart, other);
  EXPECT_LT(split, 1e-5);
  EXPECT_LT(restart, 1e-5);
  EXPECT_GT(other, 1e-2);
}

TEST(EvalCli, EndToEndOnATinyRun) {
  Shared& s = shared();
  TempDir dir;
  gan::Config cfg = testutil::tiny_train_config(dir, s.data, 2);
  cfg.output.samples = 10;
  cfg.output.grid_rows = 8;
  gan::TrainSummary t = gan::train(cfg);
  ASSERT_EQ(t.exit_code, 0);
  std::string out;
  const std::string json = dir / "eval.json";
  int code = run(std::string(GAN_EVAL_EXE) + " --checkpoint " + t.checkpoint + " --samples 100 --device cpu --cache " +
                     s.cache + " --json " + json + " --set train.threads=1",
                 &out);
  std::printf("%s", out.c_str());
  ASSERT_EQ(code, 0) << out;
  std::ifstream in(json);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(text.find("\"n_gen\": 100"), std::string::npos) << text;
  auto at = text.find("\"fd\": ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_TRUE(std::isfinite(std::strtod(text.c_str() + at + 6, nullptr))) << text;
  EXPECT_NE(out.find("real-vs-real floor"), std::string::npos);

  // Usage errors are one line and exit 2.
  EXPECT_EQ(run(std::string(GAN_EVAL_EXE), &out), 2) << out;
  EXPECT_NE(out.find("--checkpoint"), std::string::npos) << out;
  EXPECT_EQ(run(std::string(GAN_EVAL_EXE) + " --checkpoint " + t.checkpoint + " --device cpu --extractor " +
                    (dir / "nope.pt"),
                &out),
            2)
      << out;
  EXPECT_NE(out.find("eval.extractor"), std::string::npos) << out;
}

// The FID Inception (src/eval/inception.cpp) against its PyTorch reference (tests/fid_inception_ref.py: pytorch-fid's
// network in plain torch.nn, checked there against pytorch-fid's own torchvision-based one, max difference 0): the
// same weights file, written as pytorch-fid's is (legacy torch.save layout, fc [1008, 2048]), the same features for
// gray and RGB images of other sizes; the refusals of other weights; and gan::Evaluator scoring with it.
namespace {
bool have_python_torch() {
  std::string out;
  return run("/usr/bin/python3 -c 'import torch, numpy'", &out) == 0;
}
// The reference's files (a 96 MB weights file, images, features), written once for both tests.
const TempDir& inception_files() {
  static TempDir dir;
  static const int written = [] {
    std::string out;
    const int code =
        run("/usr/bin/python3 " + std::string(GAN_SOURCE_DIR) + "/tests/fid_inception_ref.py write " + dir.str(), &out);
    if (code != 0) std::printf("%s", out.c_str());
    return code;
  }();
  EXPECT_EQ(written, 0);
  return dir;
}
}  // namespace

TEST(EvalInception, SameFeaturesAsPyTorchFromTheSameWeightsFile) {
  if (!have_python_torch()) GTEST_SKIP() << "no python3-torch (Debian package); CI installs it";
  const TempDir& dir = inception_files();
  const gan::StateDict w = gan::load_weights_file(dir / "inception.pth");
  EXPECT_TRUE(gan::is_inception_weights(w));
  EXPECT_EQ(w.size(), 566u);  // 94 convolutions + 94 BatchNorms (5 tensors each) + fc
  gan::FidInception net;
  gan::load_fid_inception(net, w, "inception.pth");
  for (bool channels_last : {false, true}) {
    net->set_channels_last(channels_last);
    for (const char* name : {"gray", "rgb"}) {
      const at::Tensor x = gan::load_npy(dir / (std::string(name) + ".npy"));
      const at::Tensor want = gan::load_npy(dir / (std::string(name) + "_features.npy"));
      const at::Tensor f = net->features(x, channels_last ? 1 : 4);  // the chunking must not change anything
      ASSERT_EQ(f.sizes(), want.sizes()) << name;
      const double rel = ((f.to(torch::kDouble) - want).abs().max() / want.abs().max()).item<double>();
      std::printf("%s %s%s: max relative difference to PyTorch %.2e\n", name, c10::str(x.sizes()).c_str(),
                  channels_last ? " channels-last" : "", rel);
      EXPECT_LT(rel, 1e-4) << name << " " << channels_last;
    }
  }
  // torchvision's ImageNet weights (fc of 1000 classes) and a file that lacks a tensor are refused by name.
  gan::StateDict tv = w;
  for (auto& [name, t] : tv)
    if (name == "fc.weight") t = torch::zeros({1000, 2048});
  testutil::expect_user_error([&] { gan::load_fid_inception(net, tv, "tv.pth"); }, gan::kExitUsage,
                              {"tv.pth", "torchvision's ImageNet Inception-v3 weights"});
  gan::StateDict cut(w.begin() + 1, w.end());
  testutil::expect_user_error([&] { gan::load_fid_inception(net, cut, "cut.pth"); }, gan::kExitUsage,
                              {"cut.pth", "missing Conv2d_1a_3x3.conv.weight", "pt_inception-2015-12-05"});
}

TEST(EvalInception, EvaluatorScoresWithTheWeightsFile) {
  if (!have_python_torch()) GTEST_SKIP() << "no python3-torch (Debian package); CI installs it";
  const TempDir& ref = inception_files();
  TempDir dir;
  // 20 samples, below the config's minimum of 100 (the struct is not validated here): 40 real and 20 generated images
  // through the Inception, where 100 took 300 (99 s of one AVX2 core, the suite's long pole).
  gan::Config cfg = eval_config(write_squares_dataset(dir.str(), 40), dir / "cache");
  cfg.eval.samples = 20;
  cfg.eval.extractor = ref / "inception.pth";
  gan::Evaluator ev(cfg, torch::kCPU);
  EXPECT_EQ(ev.extractor_info().description, "inception-fid:" + (ref / "inception.pth"));
  const gan::EvalResult r = ev.evaluate(real_images(cfg, 7));
  std::printf("%s", gan::eval_table(r).c_str());
  EXPECT_EQ(r.n_real, 20);
  EXPECT_EQ(r.n_gen, 20);
  EXPECT_EQ(r.feature_dim, 2048);
  EXPECT_TRUE(std::isfinite(r.fd) && r.fd >= 0);
  EXPECT_TRUE(r.class_hist.empty());
  // Other weights are named: a state_dict that is not Inception's.
  gan::Generator g(cfg.model);
  gan::save_pt(dir / "g.pt", gan::state_dict(*g));
  cfg.eval.extractor = dir / "g.pt";
  testutil::expect_user_error([&] { gan::Evaluator bad(cfg, torch::kCPU); }, gan::kExitUsage,
                              {"g.pt", "not Inception-v3's"});
  // A cut download of the weights file: the reader's line, not TorchScript's.
  std::ifstream in(ref / "inception.pth", std::ios::binary);
  std::string head(3000, '\0');
  in.read(&head[0], 3000);
  gan::write_file_atomic(dir / "cut.pth", head);
  cfg.eval.extractor = dir / "cut.pth";
  testutil::expect_user_error([&] { gan::Evaluator bad(cfg, torch::kCPU); }, gan::kExitUsage,
                              {"eval.extractor", "cut.pth: not a readable PyTorch file", "(truncated file?)"});
}

// gan-eval --images: another tool's samples (a folder of PNGs, one of them broken) scored against the config's data,
// and the refusals of a folder too small, of a folder with no images and of two sources at once.
TEST(EvalCli, ScoresAFolderOfAnotherToolsImages) {
  TempDir dir;
  gan::Config cfg = eval_config(write_squares_dataset(dir.str(), 300), dir / "cache");
  torch::jit::Module m("RowMeans");
  m.define("def forward(self, x):\n    return torch.mean(x, [2])\n");
  m.save(dir / "rows.pt");
  cfg.eval.extractor = dir / "rows.pt";
  cfg.eval.samples = 200;
  gan::write_file_atomic(dir / "cfg.yaml", gan::to_yaml(cfg));
  // 120 of the dataset's own images (a perfect "generator") as PNG files, and a file that does not decode.
  auto src = gan::open_dataset(cfg.data, 16, 1);
  fs::create_directories(dir / "samples");
  fs::create_directories(dir / "few");
  fixtures::Bytes px(256);
  for (int i = 0; i < 120; ++i) {
    ASSERT_TRUE(src->load(150 + i, px.data()));
    char name[32];
    std::snprintf(name, sizeof name, "/%03d.png", i);
    fixtures::write_file(dir / "samples" + name, fixtures::png8(16, 16, 1, px));
    if (i < 5) fixtures::write_file(dir / "few" + name, fixtures::png8(16, 16, 1, px));
  }
  fixtures::write_file(dir / "samples/zz-broken.png", fixtures::Bytes(64, 9));
  std::string out;
  const std::string json = dir / "s.json";
  ASSERT_EQ(run(std::string(GAN_EVAL_EXE) + " --images " + (dir / "samples") + " --config " + (dir / "cfg.yaml") +
                    " --device cpu --json " + json,
                &out),
            0)
      << out;
  std::printf("%s", out.c_str());
  EXPECT_NE(out.find("121 image files, fewer than eval.samples 200; scoring all of them"), std::string::npos) << out;
  const std::string text = testutil::slurp(json);
  EXPECT_NE(text.find("\"n_gen\": 120"), std::string::npos) << text;  // the broken file skipped
  auto at = text.find("\"fd\": ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_LT(std::strtod(text.c_str() + at + 6, nullptr), 1.0) << text;  // real images: near the floor
  EXPECT_EQ(run(std::string(GAN_EVAL_EXE) + " --images " + (dir / "few") + " --config " + (dir / "cfg.yaml"), &out), 3)
      << out;
  EXPECT_NE(out.find("5 image files; scores need at least 100"), std::string::npos) << out;
  fs::create_directories(dir / "empty/sub");
  fixtures::write_file(dir / "empty/sub/notes.txt", fixtures::Bytes(8, 'a'));
  EXPECT_EQ(run(std::string(GAN_EVAL_EXE) + " --images " + (dir / "empty") + " --config " + (dir / "cfg.yaml"), &out),
            3)
      << out;
  EXPECT_NE(out.find("--images " + (dir / "empty") + " holds no .jpg"), std::string::npos) << out;
  EXPECT_EQ(out.find("data.path"), std::string::npos) << out;
  EXPECT_EQ(run(std::string(GAN_EVAL_EXE) + " --images " + (dir / "few") + " --real-only", &out), 2) << out;
  EXPECT_NE(out.find("give one of --checkpoint"), std::string::npos) << out;
}

#include <gtest/gtest.h>
#include <stb/stb_image.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "gan/checkpoint.h"
#include "gan/config.h"
#include "gan/models.h"
#include "gan/sampler.h"
#include "gan/trainer.h"
#include "checkpoint_fixture.h"
#include "image_fixtures.h"
#include "test_util.h"

namespace fs = std::filesystem;
using testutil::TempDir;
using testutil::run;
using testutil::tiny_train_config;
using testutil::write_halves_dataset;

namespace {

std::vector<std::string> lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// max |a - b| over all parameters and buffers of two modules.
double max_difference(torch::nn::Module& a, torch::nn::Module& b) {
  double worst = 0;
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& p : pa) worst = std::max(worst, (p.value() - pb[p.key()]).abs().max().item<double>());
  auto ba = a.named_buffers(), bb = b.named_buffers();
  for (const auto& p : ba)
    worst = std::max(worst, (p.value().to(torch::kDouble) - bb[p.key()].to(torch::kDouble)).abs().max().item<double>());
  return worst;
}

struct Loaded {
  gan::Generator g{nullptr};
  gan::Discriminator d{nullptr};
};
Loaded load(const std::string& ckpt) {
  gan::Config c = gan::read_checkpoint_config(ckpt);
  Loaded l{gan::Generator(c.model), gan::Discriminator(c.model)};
  gan::load_checkpoint(ckpt, torch::kCPU, l.g, &l.d);
  return l;
}


}  // namespace

TEST(Training, ShortRunWritesRunFolder) {
  TempDir dir;
  gan::Config cfg = tiny_train_config(dir, write_halves_dataset(dir, 64, 16), 6);
  gan::TrainSummary s = gan::train(cfg);
  const std::string run = dir / "runs/tiny";
  EXPECT_EQ(s.run_dir, run);
  EXPECT_EQ(s.steps, 6);
  EXPECT_EQ(s.exit_code, 0);
  for (const char* f : {"config.yaml", "train.log", "metrics.jsonl", "samples/step_0000003.png",
                        "samples/step_0000006.png", "samples/latest.png", "checkpoints/step_0000003.pt",
                        "checkpoints/step_0000006.pt", "checkpoints/latest.pt"})
    EXPECT_TRUE(fs::is_regular_file(run + "/" + f)) << f;
  // The stored config is the resolved one.
  gan::Config stored = gan::load_config(run + "/config.yaml");
  EXPECT_EQ(gan::to_yaml(stored), gan::to_yaml(cfg));
  auto rows = lines(run + "/metrics.jsonl");
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_NE(rows[0].find("\"step\": 1,"), std::string::npos) << rows[0];
  EXPECT_NE(rows[5].find("\"loss_d\""), std::string::npos);
  // Grid: 12 images of 16x16, 4 per row -> 3 rows.
  int w, h, n;
  unsigned char* px = stbi_load((run + "/samples/latest.png").c_str(), &w, &h, &n, 0);
  ASSERT_NE(px, nullptr);
  stbi_image_free(px);
  EXPECT_EQ(w, 4 * 18 + 2);
  EXPECT_EQ(h, 3 * 18 + 2);
  EXPECT_EQ(n, 1);
  // summary.json: how it ended, and what wrote it.
  const std::string summary = testutil::slurp(run + "/summary.json");
  EXPECT_NE(summary.find("\"exit_reason\": \"finished\", \"message\": null, \"steps\": 6, \"exit_code\": 0"),
            std::string::npos) << summary;
  EXPECT_NE(summary.find("\"versions\": {\"gan_trainer\": \"0."), std::string::npos) << summary;
  EXPECT_NE(summary.find("\"best_eval\": null"), std::string::npos) << summary;
  EXPECT_TRUE(fs::is_regular_file(run + "/report.html"));  // the run report, written at the end
  // gan-sample --info tells what the checkpoint holds without a config or a device.
  std::string info;
  ASSERT_EQ(testutil::run(std::string(GAN_SAMPLE_EXE) + " --info " + run + "/checkpoints/latest.pt", &info), 0) << info;
  for (const char* part : {"step 6, epoch 2 (image 32 of its order), saved by 1 process", "model: 16x16x1, nz 16",
                           "parameters: G ", "EMA generator: no", "format 1; written by {\"gan_trainer\": \"0.",
                           "last evaluation: none", "config (tiny):", "  batch_size: 16"})
    EXPECT_NE(info.find(part), std::string::npos) << "'" << part << "' not in:\n" << info;
  // Every program says its version.
  for (const char* exe : {GAN_TRAIN_EXE, GAN_SAMPLE_EXE, GAN_DATA_EXE, GAN_EVAL_EXE}) {
    std::string v;
    ASSERT_EQ(testutil::run(std::string(exe) + " --version", &v), 0) << v;
    const std::string name = fs::path(exe).filename().string();
    EXPECT_EQ(v.rfind(name + " 0.", 0), 0u) << v;
    EXPECT_NE(v.find("(LibTorch "), std::string::npos) << v;
  }
  // A second fresh run into the same folder is refused instead of overwriting it.
  testutil::expect_user_error([&] { gan::train(cfg); }, gan::kExitUsage, {"already holds a run", "--resume auto"});
}

TEST(Training, SamplesFromCheckpointWithoutConfig) {
  TempDir dir;
  gan::Config cfg = tiny_train_config(dir, write_halves_dataset(dir, 64, 16), 3);
  gan::TrainSummary s = gan::train(cfg);
  fs::remove(dir / "halves-idx3-ubyte");  // the dataset is gone; the checkpoint alone must suffice
  gan::SampleOptions o;
  o.checkpoint = s.run_dir + "/checkpoints/latest.pt";
  o.n = 10;
  o.out = dir / "grid.png";
  o.individual = dir / "each";
  o.seed = 7;
  o.device = "cpu";
  EXPECT_EQ(gan::sample(o), 11);
  int w, h, n;
  unsigned char* px = stbi_load(o.out.c_str(), &w, &h, &n, 0);
  ASSERT_NE(px, nullptr);
  EXPECT_EQ(w, 8 * 18 + 2);
  EXPECT_EQ(h, 2 * 18 + 2);
  std::vector<unsigned char> first(px, px + w * h * n);
  stbi_image_free(px);
  EXPECT_EQ(std::distance(fs::directory_iterator(o.individual), fs::directory_iterator()), 10);
  px = stbi_load((o.individual + "/000009.png").c_str(), &w, &h, &n, 0);
  ASSERT_NE(px, nullptr);
  stbi_image_free(px);
  EXPECT_EQ(w, 16);
  EXPECT_EQ(h, 16);
  // Same seed, same images; another seed, other images.
  gan::sample(o);
  px = stbi_load(o.out.c_str(), &w, &h, &n, 0);
  EXPECT_TRUE(std::equal(first.begin(), first.end(), px));
  stbi_image_free(px);
  o.seed = 8;
  o.individual.clear();
  gan::sample(o);
  px = stbi_load(o.out.c_str(), &w, &h, &n, 0);
  EXPECT_FALSE(std::equal(first.begin(), first.end(), px));
  stbi_image_free(px);
}

TEST(Training, CheckpointsKeepTheUpconvFormsAndAResumeUsesThem) {
  TempDir dir;
  gan::Config part = tiny_train_config(dir, write_halves_dataset(dir, 40, 16), 3);
  part.output.name = "forms";
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::info);  // the forms are an info line of train.log
  gan::TrainSummary b = gan::train(part);
  // 16x16: G's stride-2 layers take 4x4 and 8x8 inputs; at this size they keep the fixed rule (too small to time).
  gan::Config c = gan::read_checkpoint_config(b.checkpoint);
  gan::Generator g(c.model);
  gan::TrainingState st;
  gan::load_checkpoint(b.checkpoint, torch::kCPU, g, nullptr, nullptr, nullptr, &st);
  EXPECT_EQ(st.upconv_forms, "gemm,phase");
  EXPECT_EQ(st.downconv_forms, "direct,direct");  // D's 1 and 8 input channels: conv2d by the fixed rule
  const std::string log = testutil::slurp(b.run_dir + "/train.log");
  EXPECT_NE(log.find("4x4 gemm (fixed rule: too small to time) | 8x8 phase (fixed rule"), std::string::npos) << log;
  gan::Config more = part;
  more.train.steps = 6;
  gan::TrainSummary r = gan::train(more, b.checkpoint);
  spdlog::set_level(level);
  EXPECT_NE(testutil::slurp(r.run_dir + "/train.log").find("as measured by the run that saved the checkpoint: gemm,phase"),
            std::string::npos);
  gan::TrainingState after;
  gan::load_checkpoint(r.checkpoint, torch::kCPU, g, nullptr, nullptr, nullptr, &after);
  EXPECT_EQ(after.upconv_forms, "gemm,phase");
  EXPECT_EQ(after.downconv_forms, "direct,direct");
}

// A run on the CPU saves no device generator and no fp16 loss scale; a state with them (a CUDA run's:
// tests/test_cuda.cpp resumes such runs) comes back exactly, and a checkpoint without them still loads.
TEST(Training, CheckpointsKeepTheDeviceGeneratorAndLossScaleOfACudaRun) {
  TempDir dir;
  gan::Config cfg = tiny_train_config(dir, write_halves_dataset(dir, 40, 16), 2);
  gan::TrainSummary s = gan::train(cfg);
  testutil::Editable e = testutil::load_editable(s.checkpoint);
  gan::TrainingState& st = e.nets.state;
  EXPECT_FALSE(st.device_rng_state.defined());
  EXPECT_EQ(st.loss_scale, 0);
  st.device_rng_state = torch::arange(16, torch::kUInt8);  // a CUDA generator's state is 16 bytes: seed, offset
  st.loss_scale = 2048;
  st.loss_scale_good_steps = 17;
  const std::string again = dir / "again.pt";
  e.save(again);
  const gan::TrainingState back = testutil::load_all(again).state;
  ASSERT_TRUE(back.device_rng_state.defined());
  EXPECT_TRUE(torch::equal(back.device_rng_state, st.device_rng_state));
  EXPECT_EQ(back.loss_scale, 2048);
  EXPECT_EQ(back.loss_scale_good_steps, 17);
  EXPECT_EQ(back.step, st.step);
  // A damaged RNG state (here 3 bytes where the CPU generator's is thousands) is refused in one line on resume.
  st.rng_state = torch::zeros({3}, torch::kUInt8);
  e.save(s.checkpoint);
  gan::Config more = cfg;
  more.train.steps = 4;
  testutil::expect_user_error([&] { gan::train(more, s.checkpoint); }, gan::kExitCheckpoint,
                              {"RNG state does not fit", "resume from another checkpoint"});
}

TEST(Training, ResumeContinuesStepCountAndMatchesUninterruptedRun) {
  TempDir dir;
  std::string data = write_halves_dataset(dir, 40, 16);  // 2 batches per epoch: the resume crosses an epoch
  gan::Config full = tiny_train_config(dir, data, 6);
  full.output.name = "full";
  gan::TrainSummary a = gan::train(full);

  gan::Config part = tiny_train_config(dir, data, 3);
  part.output.name = "part";
  gan::TrainSummary b = gan::train(part);
  EXPECT_EQ(b.steps, 3);
  gan::Config more = part;
  more.train.steps = 6;
  gan::TrainSummary c = gan::train(more, b.checkpoint);
  EXPECT_EQ(c.run_dir, b.run_dir);
  EXPECT_EQ(c.steps, 6);
  auto rows = lines(c.run_dir + "/metrics.jsonl");
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_NE(rows[3].find("\"step\": 4,"), std::string::npos) << rows[3];
  Loaded x = load(a.checkpoint), y = load(c.checkpoint);
  double dg = max_difference(*x.g, *y.g), dd = max_difference(*x.d, *y.d);
  std::printf("resumed vs uninterrupted: max |dG| %.3g, max |dD| %.3g\n", dg, dd);
  EXPECT_EQ(dg, 0.0);
  EXPECT_EQ(dd, 0.0);
  // auto finds the newest run of this config name.
  gan::Config probe = part;
  probe.output.name.clear();
  probe.name = "nothing-here";
  EXPECT_EQ(gan::find_resume_checkpoint(probe, "auto"), "");
  EXPECT_EQ(gan::find_resume_checkpoint(more, "auto"), more.output.dir + "/part/checkpoints/step_0000006.pt");
}

TEST(Training, GeneratorLearnsTheDataStatistic) {
  // Data: left half bright, right half dark (contrast ~1.2). G's samples start with no such contrast.
  TempDir dir;
  gan::Config cfg = tiny_train_config(dir, write_halves_dataset(dir, 512, 16), 0);
  cfg.train.threads = 1;  // ctest runs tests in parallel: more threads than cores makes OpenMP spin
  cfg.train.batch_size = 32;
  cfg.model.ngf = cfg.model.ndf = 16;  // measured: contrast 0.89-1.01 after 300 steps for seeds 1-4
  cfg.output.sample_every = cfg.output.checkpoint_every = 100000;
  auto contrast = [&](const std::string& ckpt, gan::Config c) {
    gan::Generator g(c.model);
    if (!ckpt.empty()) gan::load_checkpoint(ckpt, torch::kCPU, g);
    else {
      torch::manual_seed(c.train.seed);
      gan::dcgan_init(*g);
    }
    g->eval();
    torch::NoGradGuard ng;
    auto x = g->forward(torch::randn({256, c.model.nz}));
    return (x.narrow(3, 0, 8).mean() - x.narrow(3, 8, 8).mean()).item<double>();
  };
  const double before = contrast("", cfg);
  cfg.train.steps = 300;
  gan::TrainSummary s = gan::train(cfg);
  const double after = contrast(s.checkpoint, cfg);
  std::printf("left-right contrast of G's samples: before %.3f, after 300 steps %.3f (data: ~1.2)\n", before, after);
  EXPECT_LT(std::abs(before), 0.1);
  EXPECT_GT(after, 0.7);
}

TEST(Cli, ExitCodesAndOneLineErrors) {
  TempDir dir;
  std::string out;
  fixtures::write_file(dir / "typo.cfg", fixtures::Bytes{'t', 'r', 'a', 'i', 'n', ':', '\n', ' ', ' ', 'l', 'r', 'r',
                                                         ':', ' ', '1', '\n'});
  EXPECT_EQ(run(std::string(GAN_TRAIN_EXE) + " --config " + (dir / "typo.cfg"), &out), 2) << out;
  EXPECT_NE(out.find("typo.cfg:2: unknown key 'train.lrr' (did you mean 'lr'?)"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;

  EXPECT_EQ(run(std::string(GAN_TRAIN_EXE) + " --set data.source=folder --set data.path=" + (dir / "none") +
                    " --out " + (dir / "runs"),
                &out),
            3)
      << out;
  EXPECT_NE(out.find("is not a folder"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "runs")) << "nothing is created for a failed start";

  EXPECT_EQ(run(std::string(GAN_TRAIN_EXE) + " --dry-run --steps 5 --set model.ngf=16", &out), 0) << out;
  EXPECT_NE(out.find("ngf: 16"), std::string::npos) << out;
  EXPECT_NE(out.find("steps: 5"), std::string::npos) << out;

  fixtures::write_file(dir / "junk.pt", fixtures::Bytes(100, 7));
  EXPECT_EQ(run(std::string(GAN_SAMPLE_EXE) + " --checkpoint " + (dir / "junk.pt") + " --out " + (dir / "g.png"), &out),
            4)
      << out;
  EXPECT_NE(out.find("junk.pt: unreadable"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(run(std::string(GAN_SAMPLE_EXE) + " --out x.png", &out), 2) << out;
}

TEST(Training, NewRunInAFolderWithoutCheckpointsDropsStaleMetricsRows) {
  // A process killed before its first checkpoint leaves metrics rows; the next run there starts at step 0 again.
  TempDir dir;
  gan::Config cfg = tiny_train_config(dir, write_halves_dataset(dir, 64, 16), 2);
  fs::create_directories(dir / "runs/tiny");
  std::ofstream(dir / "runs/tiny/metrics.jsonl") << "{\"step\": 1, \"stale\": true}\n{\"step\": 2, \"stale\": true}\n";
  gan::train(cfg);
  auto rows = lines(dir / "runs/tiny/metrics.jsonl");
  EXPECT_EQ(rows.size(), 2u);
  for (const auto& r : rows) EXPECT_EQ(r.find("stale"), std::string::npos) << r;
}

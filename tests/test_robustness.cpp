// Runs that survive: kill -9 and resume, signals, time budget, divergence, keep_last, bad checkpoints, disk full.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stb/stb_image.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gan/checkpoint.h"
#include "gan/config.h"
#include "gan/models.h"
#include "gan/trainer.h"
#include "checkpoint_fixture.h"
#include "image_fixtures.h"
#include "test_util.h"

namespace fs = std::filesystem;
using testutil::bitwise_equal;
using testutil::count_lines;
using testutil::expect_user_error;
using testutil::load_all;
using testutil::Nets;
using testutil::slurp;
using testutil::spawn;
using testutil::TempDir;
using testutil::wait_exit;
using testutil::wait_for_lines;

namespace {

// A small IDX dataset of 64 16x16 images with some structure.
std::string write_dataset(const TempDir& dir) {
  fixtures::Bytes px;
  for (int i = 0; i < 64; ++i)
    for (int k = 0; k < 256; ++k) px.push_back(static_cast<std::uint8_t>((k % 16 < 8 ? 200 : 40) + (i * 7 + k) % 13));
  std::string path = dir / "data-idx3-ubyte";
  fixtures::write_file(path, fixtures::idx_images(64, 16, 16, px));
  return path;
}

std::string config_text(const std::string& data, const std::string& out, int steps, int every) {
  return "data:\n  source: idx\n  path: " + data +
         "\nmodel:\n  image_size: 16\n  channels: 1\n  nz: 16\n  ngf: 8\n  ndf: 8\n"
         "train:\n  device: cpu\n  threads: 1\n  batch_size: 16\n  steps: " +
         std::to_string(steps) + "\noutput:\n  dir: " + out + "\n  log_every: 1000\n  metrics_every: 1\n" +
         "  sample_every: " + std::to_string(every) + "\n  checkpoint_every: " + std::to_string(every) +
         "\n  samples: 8\n";
}

gan::Config tiny(const TempDir& dir, int steps, int every, const std::string& name) {
  gan::Config c = gan::parse_config(config_text(write_dataset(dir), dir / "runs", steps, every), "tiny.cfg");
  c.output.name = name;
  c.name = "tiny";
  return c;
}

bool all_finite(torch::nn::Module& m) {
  for (const auto& p : m.parameters())
    if (!torch::isfinite(p).all().item<bool>()) return false;
  return true;
}

// Every file a reader looks at (no ".tmp.") in the run is complete: checkpoints load, PNGs decode.
void expect_run_readable(const std::string& run) {
  for (const auto& sub : {"checkpoints", "samples"}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(run + "/" + sub, ec)) {
      const std::string p = e.path().string();
      if (p.find(".tmp.") != std::string::npos) continue;
      if (p.size() > 3 && p.substr(p.size() - 3) == ".pt") {
        EXPECT_NO_THROW(gan::read_checkpoint_config(p)) << p;
      } else {
        int w, h, n;
        unsigned char* px = stbi_load(p.c_str(), &w, &h, &n, 0);
        EXPECT_NE(px, nullptr) << p;
        stbi_image_free(px);
      }
    }
  }
}

}  // namespace

TEST(Robustness, SigkillAtRandomMomentsThenResumeIsBitwiseExact) {
  TempDir dir;
  const int steps = 600;
  std::string text = config_text(write_dataset(dir), dir / "runs", steps, 5) + "  keep_last: 4\n";
  fixtures::write_file(dir / "k.cfg", fixtures::Bytes(text.begin(), text.end()));
  // Reference: uninterrupted.
  ASSERT_EQ(wait_exit(spawn({GAN_TRAIN_EXE, "--config", dir / "k.cfg", "--name", "ref"}, dir / "ref.log")), 0)
      << slurp(dir / "ref.log");
  // Killed with SIGKILL at pseudo-random instants, resumed with --resume auto each time.
  const std::string run = dir / "runs/killed";
  int kills = 0, loops = 0;
  std::uint32_t rng = 2024;
  for (; loops < 12; ++loops) {
    pid_t pid = spawn({GAN_TRAIN_EXE, "--config", dir / "k.cfg", "--name", "killed", "--resume", "auto"},
                      dir / "killed.log");
    rng = rng * 1664525u + 1013904223u;
    std::this_thread::sleep_for(std::chrono::milliseconds(400 + (rng >> 8) % 800));
    if (waitpid(pid, nullptr, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      const int rc = wait_exit(pid);
      if (rc == 0) break;  // it finished between the check and the kill
      EXPECT_EQ(rc, 128 + SIGKILL);
      ++kills;
      if (fs::exists(run)) expect_run_readable(run);
    } else {
      break;  // finished before the kill
    }
  }
  int rc = wait_exit(spawn({GAN_TRAIN_EXE, "--config", dir / "k.cfg", "--name", "killed", "--resume", "auto"},
                           dir / "final.log"));
  ASSERT_EQ(rc, 0) << slurp(dir / "final.log");
  std::printf("kill-and-resume: %d loops, %d SIGKILLs\n", loops, kills);
  EXPECT_GE(kills, 3);
  Nets ref = load_all(dir / "runs/ref/checkpoints/latest.pt"), got = load_all(run + "/checkpoints/latest.pt");
  EXPECT_EQ(got.state.step, steps);
  EXPECT_TRUE(bitwise_equal(*ref.g, *got.g));
  EXPECT_TRUE(bitwise_equal(*ref.d, *got.d));
  // metrics.jsonl: one row per step, no duplicates from the steps that were re-done.
  EXPECT_EQ(count_lines(run + "/metrics.jsonl"), static_cast<size_t>(steps));
  EXPECT_EQ(slurp(run + "/metrics.jsonl").find("\"step\": 1,"), slurp(run + "/metrics.jsonl").rfind("\"step\": 1,"));
}

TEST(Robustness, SigintAndSigtermSaveAndExitWithDocumentedCodes) {
  TempDir dir;
  std::string text = config_text(write_dataset(dir), dir / "runs", 1000000, 1000);
  fixtures::write_file(dir / "s.cfg", fixtures::Bytes(text.begin(), text.end()));
  for (int sig : {SIGINT, SIGTERM}) {
    const std::string name = sig == SIGINT ? "int" : "term";
    pid_t pid = spawn({GAN_TRAIN_EXE, "--config", dir / "s.cfg", "--name", name}, dir / (name + ".log"));
    ASSERT_TRUE(wait_for_lines(dir / ("runs/" + name + "/metrics.jsonl"), 5, 60));
    kill(pid, sig);
    EXPECT_EQ(wait_exit(pid), sig == SIGINT ? 130 : 143);
    std::string log = slurp(dir / (name + ".log"));
    EXPECT_NE(log.find("stopped by signal at step"), std::string::npos) << log;
    const std::string summary = slurp(dir / ("runs/" + name + "/summary.json"));
    EXPECT_NE(summary.find("\"exit_reason\": \"signal\", \"message\": null, \"steps\": "), std::string::npos) << summary;
    EXPECT_NE(summary.find(sig == SIGINT ? "\"exit_code\": 130" : "\"exit_code\": 143"), std::string::npos) << summary;
    Nets n = load_all(dir / ("runs/" + name + "/checkpoints/latest.pt"));
    EXPECT_GE(n.state.step, 5);
    EXPECT_TRUE(fs::exists(dir / ("runs/" + name + "/samples/latest.png")));
    // The checkpoint it names is the step it stopped at, and resuming continues from there.
    EXPECT_NE(log.find("step_" + std::string(7 - std::to_string(n.state.step).size(), '0') +
                       std::to_string(n.state.step) + ".pt"),
              std::string::npos)
        << log;
  }
  // A second Ctrl-C quits at once; nothing a reader looks at is damaged.
  pid_t pid = spawn({GAN_TRAIN_EXE, "--config", dir / "s.cfg", "--name", "twice"}, dir / "twice.log");
  ASSERT_TRUE(wait_for_lines(dir / "runs/twice/metrics.jsonl", 3, 60));
  kill(pid, SIGINT);
  kill(pid, SIGINT);
  EXPECT_EQ(wait_exit(pid), 130);
  expect_run_readable(dir / "runs/twice");
}

TEST(Robustness, MaxTimeStopsCleanly) {
  TempDir dir;
  std::string text = config_text(write_dataset(dir), dir / "runs", 1000000, 1000);
  fixtures::write_file(dir / "t.cfg", fixtures::Bytes(text.begin(), text.end()));
  auto t0 = std::chrono::steady_clock::now();
  int rc = wait_exit(spawn({GAN_TRAIN_EXE, "--config", dir / "t.cfg", "--name", "t", "--set", "train.max_time=2s"},
                           dir / "t.log"));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(rc, 75) << slurp(dir / "t.log");
  EXPECT_LT(secs, 30);
  EXPECT_NE(slurp(dir / "t.log").find("reached train.max_time = 2s"), std::string::npos);
  EXPECT_NE(slurp(dir / "runs/t/summary.json").find("\"exit_reason\": \"time_limit\""), std::string::npos);
  EXPECT_GT(load_all(dir / "runs/t/checkpoints/latest.pt").state.step, 0);
  EXPECT_EQ(gan::parse_duration("1d12h"), 1.5 * 86400);
  EXPECT_EQ(gan::parse_duration("1h30m"), 5400);
  EXPECT_EQ(gan::parse_duration("6h"), 21600);
  EXPECT_LT(gan::parse_duration("6"), 0);
  EXPECT_LT(gan::parse_duration("soon"), 0);
  expect_user_error([] { gan::parse_config("train:\n  max_time: 6 hours\n", "m.cfg"); }, gan::kExitUsage,
                    {"m.cfg:2", "train.max_time"});
}

TEST(Robustness, NonFiniteLossStopsAndNamesLastGoodCheckpoint) {
  TempDir dir;
  gan::Config cfg = tiny(dir, 20, 4, "nan");
  gan::TrainHooks hooks;
  hooks.poison_d_loss = [](std::int64_t step) { return step == 7; };
  expect_user_error([&] { gan::train(cfg, "", hooks); }, gan::kExitDiverged,
                    {"diverged at step 7", "non-finite D loss", "last good checkpoint: ", "step_0000004.pt"});
  Nets n = load_all(dir / "runs/nan/checkpoints/latest.pt");
  EXPECT_EQ(n.state.step, 4);
  EXPECT_TRUE(all_finite(*n.g) && all_finite(*n.d));
  // summary.json is written however the run ends: here with the reason, the code and the one line.
  const std::string summary = slurp(dir / "runs/nan/summary.json");
  EXPECT_NE(summary.find("\"exit_reason\": \"diverged\", \"message\": \"training diverged at step 7"),
            std::string::npos) << summary;
  EXPECT_NE(summary.find("\"exit_code\": 6"), std::string::npos) << summary;
  EXPECT_NE(summary.find("step_0000004.pt"), std::string::npos) << summary;
}

TEST(Robustness, NonFiniteLossRollsBackAtMostKTimes) {
  TempDir dir;
  gan::Config cfg = tiny(dir, 20, 4, "rb");
  cfg.train.on_nan = "rollback";
  cfg.train.max_rollbacks = 2;
  int poisoned = 0;
  gan::TrainHooks once;
  once.poison_d_loss = [&](std::int64_t step) { return step == 7 && poisoned++ == 0; };
  gan::TrainSummary s = gan::train(cfg, "", once);
  EXPECT_EQ(s.rollbacks, 1);
  EXPECT_EQ(s.steps, 20);
  Nets n = load_all(s.checkpoint);
  EXPECT_TRUE(all_finite(*n.g) && all_finite(*n.d));

  gan::Config always = tiny(dir, 20, 4, "rb2");
  always.train.on_nan = "rollback";
  always.train.max_rollbacks = 2;
  gan::TrainHooks forever;
  forever.poison_d_loss = [](std::int64_t step) { return step >= 7; };
  expect_user_error([&] { gan::train(always, "", forever); }, gan::kExitDiverged,
                    {"again after 2 rollbacks", "step_0000004.pt"});
  gan::Config early = tiny(dir, 20, 4, "rb3");
  early.train.on_nan = "rollback";
  gan::TrainHooks first;
  first.poison_d_loss = [](std::int64_t step) { return step == 2; };
  expect_user_error([&] { gan::train(early, "", first); }, gan::kExitDiverged, {"before the first checkpoint"});
}

TEST(Robustness, DeferredCheckAsOnCudaNamesTheBadStepAndSavesNothingNonFinite) {
  // On CUDA the finite check is read only where statistics are (here every 4 steps): a NaN at step 7 is found at
  // step 8, before step 8's checkpoint is written, and reported as step 7.
  TempDir dir;
  gan::Config cfg = tiny(dir, 20, 4, "dnan");
  cfg.output.metrics_every = 4;
  gan::TrainHooks hooks;
  hooks.deferred_divergence_check = true;
  hooks.poison_d_loss = [](std::int64_t step) { return step == 7; };
  expect_user_error([&] { gan::train(cfg, "", hooks); }, gan::kExitDiverged,
                    {"diverged at step 7", "non-finite D loss", "step_0000004.pt"});
  Nets n = load_all(dir / "runs/dnan/checkpoints/latest.pt");
  EXPECT_EQ(n.state.step, 4);
  EXPECT_TRUE(all_finite(*n.g) && all_finite(*n.d));
  EXPECT_EQ(gan::step_checkpoints(dir / "runs/dnan").size(), 1u);

  gan::Config rb = tiny(dir, 20, 4, "drb");
  rb.output.metrics_every = 4;
  rb.train.on_nan = "rollback";
  int poisoned = 0;
  gan::TrainHooks once;
  once.deferred_divergence_check = true;
  once.poison_d_loss = [&](std::int64_t step) { return step == 7 && poisoned++ == 0; };
  gan::TrainSummary s = gan::train(rb, "", once);
  EXPECT_EQ(s.rollbacks, 1);
  EXPECT_EQ(s.steps, 20);
  Nets r = load_all(s.checkpoint);
  EXPECT_TRUE(all_finite(*r.g) && all_finite(*r.d));
}

TEST(Robustness, KeepLastDeletesOnlyOlderCheckpoints) {
  TempDir dir;
  gan::Config cfg = tiny(dir, 12, 2, "keep");
  cfg.output.keep_last = 2;
  gan::TrainSummary s = gan::train(cfg);
  auto left = gan::step_checkpoints(s.run_dir);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_NE(left[0].find("step_0000012.pt"), std::string::npos);
  EXPECT_NE(left[1].find("step_0000010.pt"), std::string::npos);
  EXPECT_EQ(load_all(s.run_dir + "/checkpoints/latest.pt").state.step, 12);
}

TEST(Robustness, ResumeAutoOrRunFolderSkipsACorruptNewestCheckpoint) {
  TempDir dir;
  gan::Config cfg = tiny(dir, 6, 3, "skip");
  gan::TrainSummary s = gan::train(cfg);
  const std::string newest = s.run_dir + "/checkpoints/step_0000006.pt";
  fixtures::Bytes bytes;
  {
    std::ifstream in(newest, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  fs::remove(newest);  // break the hard link with latest.pt before truncating
  fixtures::write_file(newest, fixtures::truncated(bytes, bytes.size() / 2));
  EXPECT_EQ(gan::find_resume_checkpoint(cfg, "auto"), s.run_dir + "/checkpoints/step_0000003.pt");
  // The run folder itself (as gan-sample and gan-eval take it) means the same: its newest checkpoint that opens.
  EXPECT_EQ(gan::find_resume_checkpoint(cfg, s.run_dir), s.run_dir + "/checkpoints/step_0000003.pt");
  EXPECT_EQ(gan::find_resume_checkpoint(cfg, s.run_dir + "/"), s.run_dir + "/checkpoints/step_0000003.pt");
  EXPECT_EQ(gan::find_resume_checkpoint(cfg, s.run_dir + "/latest"), s.run_dir + "/checkpoints/latest.pt");
  testutil::expect_user_error([&] { gan::find_resume_checkpoint(cfg, dir.str()); }, gan::kExitUsage,
                              {"--resume " + dir.str(), "not a run folder (it has no checkpoints/)"});
  testutil::expect_user_error([&] { gan::find_resume_checkpoint(cfg, dir / "nope.pt"); }, gan::kExitCheckpoint,
                              {"nope.pt: no such checkpoint file", "its run folder"});
  const std::string step3 = s.run_dir + "/checkpoints/step_0000003.pt";
  fs::rename(step3, dir / "step3.pt");
  testutil::expect_user_error([&] { gan::find_resume_checkpoint(cfg, s.run_dir); }, gan::kExitCheckpoint,
                              {"--resume " + s.run_dir, "no step checkpoint that opens"});
  fs::rename(dir / "step3.pt", step3);
  gan::Config more = cfg;
  more.train.steps = 9;
  gan::TrainSummary r = gan::train(more, gan::find_resume_checkpoint(cfg, "auto"));
  EXPECT_EQ(r.steps, 9);
  EXPECT_EQ(count_lines(s.run_dir + "/metrics.jsonl"), 9u);
}

TEST(Robustness, BadCheckpointsAreRefusedWithReasons) {
  TempDir dir;
  gan::Config cfg = tiny(dir, 3, 3, "bad");
  gan::TrainSummary s = gan::train(cfg);
  fixtures::Bytes bytes;
  {
    std::ifstream in(s.checkpoint, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  fixtures::write_file(dir / "truncated.pt", fixtures::truncated(bytes, bytes.size() - 100));
  expect_user_error([&] { gan::read_checkpoint_config(dir / "truncated.pt"); }, gan::kExitCheckpoint,
                    {"truncated.pt", "truncated, corrupt or not a gan-train checkpoint"});
  // A torch archive that is not ours.
  torch::serialize::OutputArchive foreign;
  foreign.write("weight", torch::zeros({2}));
  foreign.save_to(dir / "foreign.pt");
  expect_user_error([&] { gan::read_checkpoint_config(dir / "foreign.pt"); }, gan::kExitCheckpoint,
                    {"foreign.pt", "not a gan-train checkpoint"});
  // A newer format version.
  torch::serialize::OutputArchive newer;
  newer.write("magic", c10::IValue(std::string("gan-trainer checkpoint")));
  newer.write("format", c10::IValue(static_cast<std::int64_t>(gan::kCheckpointFormat + 1)));
  newer.save_to(dir / "newer.pt");
  expect_user_error([&] { gan::read_checkpoint_config(dir / "newer.pt"); }, gan::kExitCheckpoint,
                    {"newer.pt", "newer than this program's"});
  // Another architecture: the differing keys are named.
  gan::ModelConfig other = cfg.model;
  other.ngf = 16;
  gan::Generator g(other);
  expect_user_error([&] { gan::load_checkpoint(s.checkpoint, torch::kCPU, g); }, gan::kExitCheckpoint,
                    {"generator does not match", "main.0.weight stored [16, 16, 4, 4] vs model [16, 32, 4, 4]"});
  // From the command line: resuming with a config of another width names the keys.
  std::string text = config_text(cfg.data.path, dir / "runs", 6, 3);
  text.replace(text.find("ngf: 8"), 6, "ngf: 16");
  fixtures::write_file(dir / "wide.cfg", fixtures::Bytes(text.begin(), text.end()));
  int rc = wait_exit(spawn({GAN_TRAIN_EXE, "--config", dir / "wide.cfg", "--resume", s.checkpoint}, dir / "w.log"));
  EXPECT_EQ(rc, 4);
  EXPECT_NE(slurp(dir / "w.log").find("model.ngf: 8 vs 16"), std::string::npos) << slurp(dir / "w.log");
}

TEST(Robustness, FullDiskKeepsOlderCheckpointsIntact) {
  TempDir dir;
  std::string text = config_text(write_dataset(dir), dir / "runs", 3, 3);
  fixtures::write_file(dir / "f.cfg", fixtures::Bytes(text.begin(), text.end()));
  ASSERT_EQ(wait_exit(spawn({GAN_TRAIN_EXE, "--config", dir / "f.cfg", "--name", "full"}, dir / "a.log")), 0);
  const std::string first = dir / "runs/full/checkpoints/step_0000003.pt";
  const auto size = fs::file_size(first);
  // Continue under a file-size limit smaller than a checkpoint: the write fails like a full disk would.
  std::string cmd = "ulimit -f " + std::to_string(size / 1024 / 2) + "; exec " + GAN_TRAIN_EXE + " --config " +
                    (dir / "f.cfg") + " --name full --resume auto --steps 6";
  int rc = wait_exit(spawn({"/bin/bash", "-c", cmd}, dir / "b.log"));
  std::string log = slurp(dir / "b.log");
  EXPECT_EQ(rc, 5) << log;
  EXPECT_NE(log.find("step_0000006.pt"), std::string::npos) << log;
  EXPECT_NE(log.find("File too large"), std::string::npos) << log;
  EXPECT_EQ(load_all(first).state.step, 3);
  EXPECT_EQ(load_all(dir / "runs/full/checkpoints/latest.pt").state.step, 3);
  EXPECT_FALSE(fs::exists(dir / "runs/full/checkpoints/step_0000006.pt"));
  for (const auto& e : fs::directory_iterator(dir / "runs/full/checkpoints"))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

TEST(Robustness, UnwritableOutputFolderIsOneLine) {
  TempDir dir;
  std::string text = config_text(write_dataset(dir), dir / "afile/runs", 3, 3);
  fixtures::write_file(dir / "u.cfg", fixtures::Bytes(text.begin(), text.end()));
  fixtures::write_file(dir / "afile", fixtures::Bytes{'x'});
  int rc = wait_exit(spawn({GAN_TRAIN_EXE, "--config", dir / "u.cfg"}, dir / "u.log"));
  std::string log = slurp(dir / "u.log");
  EXPECT_EQ(rc, 5) << log;
  EXPECT_NE(log.find("gan-train: error: cannot create folder"), std::string::npos) << log;
  EXPECT_NE(log.find("afile/runs"), std::string::npos) << log;
}

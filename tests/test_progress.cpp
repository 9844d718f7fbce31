// The terminal during training: a progress bar on a terminal (run under a pseudo-terminal made by script(1)), plain
// log lines through a pipe, --quiet and --verbose; and gan-eval's lines while a slow extraction runs.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <regex>
#include <string>
#include <thread>

#include "gan/progress.h"
#include "image_fixtures.h"
#include "test_util.h"

namespace {

using testutil::TempDir;
using testutil::slurp;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// 64 gray 16x16 images and a config of `steps` steps that logs a progress line every 50 steps.
std::string write_config(const TempDir& dir, int steps) {
  fixtures::Bytes px;
  for (int i = 0; i < 64; ++i)
    for (int k = 0; k < 256; ++k) px.push_back(static_cast<std::uint8_t>((k % 16 < 8 ? 200 : 40) + (i * 7 + k) % 13));
  fixtures::write_file(dir / "data-idx3-ubyte", fixtures::idx_images(64, 16, 16, px));
  const std::string text = "data:\n  source: idx\n  path: " + (dir / "data-idx3-ubyte") +
                           "\nmodel:\n  image_size: 16\n  channels: 1\n  nz: 16\n  ngf: 8\n  ndf: 8\n"
                           "train:\n  device: cpu\n  threads: 1\n  batch_size: 16\n  steps: " +
                           std::to_string(steps) + "\noutput:\n  dir: " + (dir / "runs") +
                           "\n  log_every: 50\n  metrics_every: 10\n  sample_every: 100\n  checkpoint_every: 1000\n"
                           "  samples: 8\n";
  fixtures::write_file(dir / "p.cfg", fixtures::Bytes(text.begin(), text.end()));
  return dir / "p.cfg";
}

// Runs gan-train with `args` on a pseudo-terminal; returns what the terminal received, and its exit code in `rc`.
std::string on_terminal(const TempDir& dir, const std::string& args, int* rc, double* seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string out;
  *rc = testutil::run("script -qfec '" + std::string(GAN_TRAIN_EXE) + " " + args + "' " + (dir / "typescript"), &out);
  *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return slurp(dir / "typescript");
}

bool have_script() { return std::system("command -v script > /dev/null 2>&1") == 0; }

}  // namespace

TEST(Progress, TerminalGetsOneBarRedrawnAtMostTenTimesASecondWithLogLinesAbove) {
  if (!have_script()) GTEST_SKIP() << "script(1) (bsdutils) not installed";
  TempDir dir;
  const std::string cfg = write_config(dir, 300);
  int rc = 0;
  double seconds = 0;
  const std::string tty = on_terminal(dir, "--config " + cfg + " --name bar", &rc, &seconds);
  ASSERT_EQ(rc, 0) << tty;
  // The bar: wiped and redrawn in place, with the step, the losses, the speed and the time left.
  const size_t draws = count(tty, "\r\033[2Kstep ");
  EXPECT_GE(draws, 1u) << tty;
  EXPECT_TRUE(std::regex_search(tty, std::regex("\r\033\\[2Kstep [0-9]+/300 \\([0-9]+%\\) epoch [0-9]+ \\| loss D "
                                                "[0-9.]+ G [0-9.]+ \\| [0-9]+ img/s \\| ETA [0-9]+m[0-9]+s")))
      << tty;
  // At most 10 redraws a second, plus the redraw after each log line printed above the bar.
  const size_t log_lines = count(tty, "] info ") + count(tty, "] warning ");
  EXPECT_LE(draws, static_cast<size_t>(10 * seconds) + log_lines + 1) << draws << " draws in " << seconds << " s";
  // Log lines go above the bar: the bar is wiped first, so each starts at the left edge of a clean line.
  EXPECT_NE(tty.find("\r\033[2K[" ), std::string::npos) << tty;
  const size_t done = tty.find("info done: step 300");
  ASSERT_NE(done, std::string::npos) << tty;
  // The bar is gone at the end: nothing is drawn after the last line.
  EXPECT_EQ(tty.find("\033[2Kstep ", done), std::string::npos) << tty.substr(done);
  // The periodic progress lines, which the bar replaces on the terminal, are all in train.log.
  EXPECT_EQ(count(tty, "D(G(z))"), 0u) << tty;
  const std::string log = slurp(dir / "runs/bar/train.log");
  for (int step : {50, 100, 150, 200, 250, 300})
    EXPECT_NE(log.find("step " + std::to_string(step) + "/300 ("), std::string::npos) << step << "\n" << log;
  EXPECT_EQ(log.find('\033'), std::string::npos) << log;
}

TEST(Progress, PipeGetsPlainLinesOnly) {
  TempDir dir;
  const std::string cfg = write_config(dir, 100);
  int rc = testutil::wait_exit(testutil::spawn({GAN_TRAIN_EXE, "--config", cfg, "--name", "plain"}, dir / "out"));
  const std::string out = slurp(dir / "out");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_EQ(out.find('\033'), std::string::npos) << out;
  EXPECT_NE(out.find("step 50/100 (50%) epoch"), std::string::npos) << out;
  EXPECT_NE(out.find("step 100/100 (100%) epoch"), std::string::npos) << out;
  EXPECT_NE(out.find("info done: step 100"), std::string::npos) << out;
}

TEST(Progress, QuietPrintsNothingButTrainLogKeepsEverything) {
  if (!have_script()) GTEST_SKIP() << "script(1) (bsdutils) not installed";
  TempDir dir;
  const std::string cfg = write_config(dir, 100);
  int rc = 0;
  double seconds = 0;
  const std::string tty = on_terminal(dir, "--config " + cfg + " --name q --quiet", &rc, &seconds);
  ASSERT_EQ(rc, 0) << tty;
  EXPECT_EQ(count(tty, "step "), 0u) << tty;
  EXPECT_EQ(count(tty, "] info "), 0u) << tty;
  const std::string log = slurp(dir / "runs/q/train.log");
  EXPECT_NE(log.find("step 100/100 (100%)"), std::string::npos) << log;
  EXPECT_NE(log.find("done: step 100"), std::string::npos) << log;
}

TEST(Progress, TrainLogHasEachLineWhileTheRunGoesOnAndAfterAKill) {
  TempDir dir;
  const std::string cfg = write_config(dir, 1000000);
  const pid_t pid = testutil::spawn({GAN_TRAIN_EXE, "--config", cfg, "--name", "live", "-q"}, dir / "out.log");
  const bool running = testutil::wait_for_lines(dir / "runs/live/metrics.jsonl", 3, 60);
  const std::string log = slurp(dir / "runs/live/train.log");  // while it trains
  kill(pid, SIGKILL);
  testutil::wait_exit(pid);
  ASSERT_TRUE(running) << slurp(dir / "out.log");
  EXPECT_NE(log.find("] [info] run folder "), std::string::npos) << log;
  EXPECT_NE(log.find("] [info] length: 1000000 steps"), std::string::npos) << log;
  EXPECT_NE(slurp(dir / "runs/live/train.log").find("] [info] length: "), std::string::npos);  // kept after the kill
}

TEST(Progress, VerboseShowsDebugLinesAndContradictionIsAUsageError) {
  TempDir dir;
  const std::string cfg = write_config(dir, 20);
  std::string out;
  EXPECT_EQ(testutil::run(std::string(GAN_TRAIN_EXE) + " --config " + cfg + " -q -v", &out), 2) << out;
  EXPECT_NE(out.find("gan-train: error: --quiet and --verbose contradict each other"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "runs")) << "a usage error must not create a run folder";
  EXPECT_EQ(testutil::run(std::string(GAN_TRAIN_EXE) + " --config " + cfg + " --name v --verbose", &out), 0) << out;
  EXPECT_NE(out.find("] debug "), std::string::npos) << out;
}

// gan-eval's slow-extraction lines: one when due (here: always), with the count, the rate and what is left; none
// before the interval has passed.
TEST(RateLog, LogsCountRateAndTimeLeftOnlyWhenDue) {
  gan::RateLog always("eval: real features", 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::string line = always.update(10, 1000);
  EXPECT_NE(line.find("eval: real features 10/1000 images ("), std::string::npos) << line;
  EXPECT_TRUE(std::regex_search(line, std::regex(R"(\(\d+\.\d img/s, about \d+ (s|min) left\))"))) << line;
  EXPECT_EQ(always.update(0, 1000), "");  // nothing done yet: no rate to give
  gan::RateLog seldom("eval: generated", 3600);
  EXPECT_EQ(seldom.update(500, 1000), "");
}

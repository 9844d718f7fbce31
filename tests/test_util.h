// Small helpers shared by the tests.
#pragma once
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gan/config.h"
#include "gan/errors.h"
#include "image_fixtures.h"

namespace testutil {

// Runs `f`, expects a gan::UserError with `code` whose message contains every string in `parts`.
inline void expect_user_error(const std::function<void()>& f, gan::ExitCode code, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected a UserError";
  } catch (const gan::UserError& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
  }
}

// A fresh temporary folder, removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "gan-test-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  std::string str() const { return path.string(); }
};

// Runs a shell command; returns its exit code (-1 when killed by a signal) and puts its stdout+stderr into `output`.
inline int run(const std::string& cmd, std::string* output) {
  TempDir tmp;
  std::string full = cmd + " > " + (tmp / "out") + " 2>&1";
  int status = std::system(full.c_str());
  std::ifstream in(tmp / "out");
  output->assign(std::istreambuf_iterator<char>(in), {});
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A whole file as a string ("" when it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Starts `args` with stdout+stderr into `log`; returns the pid.
inline pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// The exit code of a child, 128 + N when killed by signal N.
inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline size_t count_lines(const std::string& path) {
  std::string s = slurp(path);
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

// Waits until `path` has at least `n` lines (or `seconds` pass).
inline bool wait_for_lines(const std::string& path, size_t n, double seconds) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (count_lines(path) >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// The tests' training run on 16x16 gray IDX images `data`: nz 16, ngf = ndf = 8, batch 16, one CPU thread, a grid
// (12 samples, 4 rows) and a checkpoint every 3 steps, a metrics row every step, into dir/runs/tiny.
inline gan::Config tiny_train_config(const TempDir& dir, const std::string& data, std::int64_t steps) {
  gan::Config c;
  c.data.source = "idx";
  c.data.path = data;
  c.model.image_size = 16;
  c.model.channels = 1;
  c.model.nz = 16;
  c.model.ngf = 8;
  c.model.ndf = 8;
  c.train.batch_size = 16;
  c.train.steps = steps;
  c.train.device = "cpu";
  c.train.threads = 1;
  c.output.dir = dir / "runs";
  c.output.name = "tiny";
  c.output.sample_every = 3;
  c.output.checkpoint_every = 3;
  c.output.log_every = 1000;
  c.output.metrics_every = 1;
  c.output.samples = 12;
  c.output.grid_rows = 4;
  c.name = "tiny";
  return c;
}

// An IDX file of n images (size x size): the left half bright (a level in 160..250 per image), the right half dark
// (5..95), plus pixel noise. Mean left-right contrast in [-1, 1] units: about 1.2.
inline std::string write_halves_dataset(const TempDir& dir, int n, int size) {
  fixtures::Bytes b;
  std::uint32_t state = 12345;
  auto draw = [&](int lo, int hi) {
    state = state * 1664525u + 1013904223u;
    return lo + static_cast<int>((state >> 8) % static_cast<std::uint32_t>(hi - lo + 1));
  };
  for (int i = 0; i < n; ++i) {
    const int left = draw(160, 250), right = draw(5, 95);
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        b.push_back(static_cast<std::uint8_t>(std::clamp((x < size / 2 ? left : right) + draw(-16, 15), 0, 255)));
  }
  std::string path = dir / "halves-idx3-ubyte";
  fixtures::write_file(path, fixtures::idx_images(n, size, size, b));
  return path;
}

}  // namespace testutil

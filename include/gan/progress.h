// The terminal during training: on a terminal (stderr is a TTY), one progress-bar line on stderr, redrawn at most 10
// times a second, with the log lines printed above it; elsewhere (CI, `| tee`, docker logs) nothing but the plain
// log lines. As tqdm does it, which is what users know.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace gan {

class ProgressBar {
 public:
  // Turns the bar on when stderr is a terminal and `wanted` (gan-train without --quiet), and routes the console log
  // through it so that log lines print above the bar. Returns whether the bar is on.
  static bool enable(bool wanted);
  static bool active();
  // Whether a redraw is due (at most every 100 ms): build the text only then.
  static bool due();
  // Draws `text` as the bar line (cut to the terminal's width).
  static void draw(const std::string& text);
  // Removes the bar line (at the end of training, before the last log lines).
  static void clear();
};

// A log line at most every `every_s` seconds while a long job runs, none when it ends sooner: gan-eval's features with
// the FID Inception on a CPU take minutes, e.g. "eval: real features 1500/10000 images (15.6 img/s, about 9 min left)".
class RateLog {
 public:
  explicit RateLog(std::string what, double every_s = 30);
  // After `done` of `total` images: logs the line when one is due and returns it ("" when none was).
  std::string update(std::int64_t done, std::int64_t total);

 private:
  std::string what_;
  double every_s_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace gan

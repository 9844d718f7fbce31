// The terminal during training: on a terminal (stderr is a TTY), one progress-bar line on stderr, redrawn at most 10
// times a second, with the log lines printed above it; elsewhere (CI, `| tee`, docker logs) nothing but the plain
// log lines. As tqdm does it, which is what users know.
#pragma once
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

}  // namespace gan

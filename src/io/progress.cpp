#include "gan/progress.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <utility>

namespace gan {
namespace {

std::mutex g_mu;               // the terminal: the bar and the log lines above it
std::atomic<bool> g_on{false};
std::string g_bar;             // the line as drawn ("" = none on screen)
std::chrono::steady_clock::time_point g_last;

void write_all(int fd, const std::string& s) {
  for (size_t done = 0; done < s.size();) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

size_t columns() {
  winsize ws{};
  return ::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10 ? ws.ws_col : 100;
}

// The console sink while the bar is on: each log line goes to stdout after the bar is wiped, and the bar comes back
// below it.
class AboveTheBar : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    std::string text(buf.data(), buf.size());
    // The level's name in colour, as the plain console sink shows it: yellow warnings, red errors.
    const char* colour = msg.level >= spdlog::level::err ? "\033[31;1m" : msg.level == spdlog::level::warn ? "\033[33;1m"
                                                                                                           : nullptr;
    if (colour && ::isatty(STDOUT_FILENO) && msg.color_range_end > msg.color_range_start &&
        msg.color_range_end <= text.size())
      text = text.substr(0, msg.color_range_start) + colour +
             text.substr(msg.color_range_start, msg.color_range_end - msg.color_range_start) + "\033[0m" +
             text.substr(msg.color_range_end);
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_bar.empty()) write_all(STDERR_FILENO, "\r\033[2K");
    std::fflush(stdout);
    write_all(STDOUT_FILENO, text);
    if (!g_bar.empty()) write_all(STDERR_FILENO, g_bar);
  }
  void flush_() override {}
};

}  // namespace

bool ProgressBar::enable(bool wanted) {
  if (!wanted || !::isatty(STDERR_FILENO)) return false;
  auto logger = spdlog::default_logger();
  auto sink = std::make_shared<AboveTheBar>();
  sink->set_pattern("[%H:%M:%S] %^%l%$ %v");
  logger->sinks().clear();
  logger->sinks().push_back(sink);
  g_on = true;
  return true;
}

bool ProgressBar::active() { return g_on; }

bool ProgressBar::due() {
  if (!g_on) return false;
  std::lock_guard<std::mutex> lock(g_mu);
  return std::chrono::steady_clock::now() - g_last >= std::chrono::milliseconds(100);
}

void ProgressBar::draw(const std::string& text) {
  if (!g_on) return;
  std::lock_guard<std::mutex> lock(g_mu);
  g_last = std::chrono::steady_clock::now();
  g_bar = "\r\033[2K" + text.substr(0, columns() - 1);
  write_all(STDERR_FILENO, g_bar);
}

void ProgressBar::clear() {
  if (!g_on) return;
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_bar.empty()) write_all(STDERR_FILENO, "\r\033[2K");
  g_bar.clear();
}

RateLog::RateLog(std::string what, double every_s)
    : what_(std::move(what)), every_s_(every_s), start_(std::chrono::steady_clock::now()), last_(start_) {}

std::string RateLog::update(std::int64_t done, std::int64_t total) {
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_).count() < every_s_ || done <= 0) return "";
  last_ = now;
  const double rate = static_cast<double>(done) / std::max(1e-9, std::chrono::duration<double>(now - start_).count());
  const double left = static_cast<double>(std::max<std::int64_t>(0, total - done)) / rate;
  char eta[32];
  if (left < 90) std::snprintf(eta, sizeof eta, "%.0f s", left);
  else std::snprintf(eta, sizeof eta, "%.0f min", std::ceil(left / 60));
  char line[256];
  std::snprintf(line, sizeof line, "%s %lld/%lld images (%.1f img/s, about %s left)", what_.c_str(),
                static_cast<long long>(done), static_cast<long long>(total), rate, eta);
  spdlog::info("{}", line);
  return line;
}

}  // namespace gan

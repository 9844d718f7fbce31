#include "gan/tensorboard.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

#include "gan/errors.h"
#include "gan/image.h"
#include "tensorboard_messages.h"

namespace gan {
namespace {

template <typename T>
void little_endian(std::string& out, T v) {  // x86-64 and the record format are both little-endian
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

const std::array<std::uint32_t, 256>& crc_table() {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t n) {
  const auto& t = crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::uint32_t masked_crc32c(const void* data, std::size_t n) {
  const std::uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

EventWriter::EventWriter(const std::string& dir) {
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  // As TensorBoard's own writers name them, with a per-process count: two sessions of one process within one second
  // (a run, then its resumption) get two files.
  static std::atomic<int> serial{0};
  char name[400];
  std::snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s.%d.%d", static_cast<long long>(std::time(nullptr)),
                host, static_cast<int>(::getpid()), serial++);
  path_ = dir + "/" + name;
  file_ = std::fopen(path_.c_str(), "ab");
  if (!file_) throw_io_error("create", path_, errno);
  record(tb::file_version_event(wall_time()));
}

EventWriter::~EventWriter() {
  if (file_) std::fclose(file_);
}

void EventWriter::record(const std::string& event) {
  std::string rec;
  const std::uint64_t length = event.size();
  little_endian(rec, length);
  little_endian(rec, masked_crc32c(rec.data(), 8));
  rec += event;
  little_endian(rec, masked_crc32c(event.data(), event.size()));
  // One write per record, flushed: a killed process leaves at most its last record short, which readers skip.
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size() || std::fflush(file_) != 0)
    throw_io_error("write", path_, errno);
}

void EventWriter::scalars(std::int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  record(tb::scalars_event(wall_time(), step, values));
}

void EventWriter::image(std::int64_t step, const std::string& tag, const Image& img) {
  // colorspace: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA: the channel count
  record(tb::image_event(wall_time(), step, tag, img.height, img.width, img.channels, encode_png(img)));
}

void EventWriter::text(std::int64_t step, const std::string& tag, const std::string& text) {
  record(tb::text_event(wall_time(), step, tag, text));
}

void EventWriter::restart(std::int64_t step) { record(tb::session_start_event(wall_time(), step)); }

}  // namespace gan

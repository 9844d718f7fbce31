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

namespace gan {
namespace {

// Protocol-buffer wire format: just what the messages below need.
void varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
void key(std::string& out, int field, int wire) { varint(out, static_cast<std::uint64_t>(field) << 3 | wire); }
void bytes_field(std::string& out, int field, const std::string& bytes) {
  key(out, field, 2);
  varint(out, bytes.size());
  out += bytes;
}
void int_field(std::string& out, int field, std::int64_t v) {
  key(out, field, 0);
  varint(out, static_cast<std::uint64_t>(v));
}
template <typename T>
void little_endian(std::string& out, T v) {  // x86-64 and the format are both little-endian
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}
void double_field(std::string& out, int field, double v) {
  key(out, field, 1);
  little_endian(out, v);
}
void float_field(std::string& out, int field, float v) {
  key(out, field, 5);
  little_endian(out, v);
}

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Event{wall_time 1, step 2, summary 5} around a Summary{value 1: ...} made of `values`.
std::string summary_event(std::int64_t step, const std::vector<std::string>& values) {
  std::string summary;
  for (const auto& v : values) bytes_field(summary, 1, v);
  std::string event;
  double_field(event, 1, wall_time());
  int_field(event, 2, step);
  bytes_field(event, 5, summary);
  return event;
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
  std::string event;
  double_field(event, 1, wall_time());
  bytes_field(event, 3, "brain.Event:2");
  record(event);
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
  std::vector<std::string> vs;
  for (const auto& [tag, v] : values) {
    std::string value;
    bytes_field(value, 1, tag);
    float_field(value, 2, static_cast<float>(v));
    vs.push_back(value);
  }
  record(summary_event(step, vs));
}

void EventWriter::image(std::int64_t step, const std::string& tag, const Image& img) {
  std::string image;
  int_field(image, 1, img.height);
  int_field(image, 2, img.width);
  int_field(image, 3, img.channels);  // colorspace: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  bytes_field(image, 4, encode_png(img));
  std::string value;
  bytes_field(value, 1, tag);
  bytes_field(value, 4, image);
  record(summary_event(step, {value}));
}

void EventWriter::text(std::int64_t step, const std::string& tag, const std::string& text) {
  std::string tensor;  // TensorProto{dtype 1: DT_STRING (7), tensor_shape 2: scalar, string_val 8}
  int_field(tensor, 1, 7);
  bytes_field(tensor, 2, "");
  bytes_field(tensor, 8, text);
  std::string plugin;  // PluginData{plugin_name 1}
  bytes_field(plugin, 1, "text");
  std::string metadata;  // SummaryMetadata{plugin_data 1}
  bytes_field(metadata, 1, plugin);
  std::string value;
  bytes_field(value, 1, tag);
  bytes_field(value, 8, tensor);
  bytes_field(value, 9, metadata);
  record(summary_event(step, {value}));
}

void EventWriter::restart(std::int64_t step) {
  std::string log;  // SessionLog{status 1: START (1)}
  int_field(log, 1, 1);
  std::string event;
  double_field(event, 1, wall_time());
  int_field(event, 2, step);
  bytes_field(event, 6, log);
  record(event);
}

}  // namespace gan

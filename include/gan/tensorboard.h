// TensorBoard event files, written without TensorFlow or a protobuf library: each record is an Event message encoded
// by hand (the handful of fields TensorBoard reads), framed as TFRecord does:
//   u64 length, u32 masked CRC32C of those 8 bytes, the message, u32 masked CRC32C of the message
// with mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8. Field numbers are those of tensorflow/core/util/event.proto
// and summary.proto: Event{wall_time 1, step 2, file_version 3, summary 5, session_log 6}; Summary{value 1};
// Value{tag 1, simple_value 2, image 4, tensor 8, metadata 9}; Image{height 1, width 2, colorspace 3, encoded 4}.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace gan {

struct Image;

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord files use it.
std::uint32_t crc32c(const void* data, std::size_t n);
// TFRecord's masked form of a CRC.
std::uint32_t masked_crc32c(const void* data, std::size_t n);

class EventWriter {
 public:
  // Creates `dir`/events.out.tfevents.<unix time>.<host>.<pid>.<n> and writes its first record (file_version
  // "brain.Event:2"). Throws UserError(kExitIo) naming the file when it cannot be created.
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  const std::string& path() const { return path_; }
  // Scalars of one step in one event (TensorBoard's time series, one per tag).
  void scalars(std::int64_t step, const std::vector<std::pair<std::string, double>>& values);
  // An image summary holding the PNG of `image`.
  void image(std::int64_t step, const std::string& tag, const Image& image);
  // A text summary (TensorBoard's text plugin renders it as markdown).
  void text(std::int64_t step, const std::string& tag, const std::string& text);
  // SessionLog START at `step`: TensorBoard drops what earlier files recorded at this step and after (the steps a
  // resumed run does again).
  void restart(std::int64_t step);

 private:
  void record(const std::string& event);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace gan

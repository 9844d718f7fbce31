// TensorBoard event files: each record is an Event message (src/io/tensorboard.proto, a subset of TensorBoard's own
// messages with their field numbers, serialized by the protobuf runtime), framed as TFRecord does:
//   u64 length, u32 masked CRC32C of those 8 bytes, the message, u32 masked CRC32C of the message
// with mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8. Every record is flushed as it is written.
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

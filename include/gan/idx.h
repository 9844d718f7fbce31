// The IDX format of (Fashion-)MNIST, raw or gzip-compressed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gan {

struct IdxArray {
  std::vector<std::int64_t> dims;  // e.g. {60000, 28, 28} for images, {60000} for labels
  std::vector<std::uint8_t> data;  // row-major unsigned bytes
};

// Reads an unsigned-byte IDX file (magic 0x00000801/0x00000803...). `.gz` or raw, detected from the content.
// Throws UserError(kExitData) naming the file and the problem (missing, truncated, wrong type).
IdxArray read_idx(const std::string& path);

}  // namespace gan

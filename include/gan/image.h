// Images in memory, sample grids and PNG writing (decoding files is data/decode.h).
#pragma once
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace gan {

using Rgb = std::array<std::uint8_t, 3>;

struct Image {
  int width = 0, height = 0, channels = 0;  // channels 1..4 (gray, gray+alpha, RGB, RGBA)
  std::vector<std::uint8_t> pixels;         // row-major, interleaved: [height, width, channels]
};

// Tiles images [N, C, H, W] with values in [-1, 1] like torchvision's make_grid + save_image: `nrow` images per
// row, `padding` pixels of `pad_value` around each; values map to round((x + 1) / 2 * 255) clamped to 0..255.
Image make_grid(const at::Tensor& images, int nrow, int padding = 2, std::uint8_t pad_value = 0);

// The PNG file's bytes ("" when the image cannot be encoded).
std::string encode_png(const Image& image);

// Writes a PNG atomically (temporary file + rename). Throws UserError(kExitIo).
void write_png(const std::string& path, const Image& image);

}  // namespace gan

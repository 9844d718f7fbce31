// Image decoding (stb_image), conversion to the model's format, sample grids and PNG writing.
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

// Largest width*height a file may claim; checked from the header before any pixel is allocated.
constexpr std::int64_t kMaxImagePixels = 64LL * 1024 * 1024;

// Decodes PNG (gray, gray+alpha, RGB, RGBA, palette, 16-bit), JPEG, BMP, TGA or GIF (first frame).
// Returns false and fills `error` when the file cannot be read or decoded or claims too many pixels.
bool decode_image(const std::vector<std::uint8_t>& file_bytes, Image& out, std::string& error);
bool decode_image_file(const std::string& path, Image& out, std::string& error);

// Composites alpha over `background`, converts to `channels` (1: luma 0.299R+0.587G+0.114B, 3: gray replicated),
// centre-crops to a square and resizes to size x size (stb_image_resize; Mitchell when shrinking).
Image prepare_image(const Image& in, int channels, int size, const Rgb& background);

// Parses "#rrggbb".
Rgb parse_colour(const std::string& hex);

// Tiles images [N, C, H, W] with values in [-1, 1] like torchvision's make_grid + save_image: `nrow` images per
// row, `padding` pixels of `pad_value` around each; values map to round((x + 1) / 2 * 255) clamped to 0..255.
Image make_grid(const at::Tensor& images, int nrow, int padding = 2, std::uint8_t pad_value = 0);

// The PNG file's bytes ("" when the image cannot be encoded).
std::string encode_png(const Image& image);

// Writes a PNG atomically (temporary file + rename). Throws UserError(kExitIo).
void write_png(const std::string& path, const Image& image);

}  // namespace gan

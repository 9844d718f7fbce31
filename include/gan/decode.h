// Decoding: an image file's bytes -> pixels -> the model's [channels, size, size] bytes. The one data room that the
// image sources (datasets.h), the data cache (cache.h) and gan-data all call down into; it calls nothing else in data/.
// JPEGs go through libjpeg-turbo, which can decode at 1/2, 1/4 or 1/8 of the size in the DCT domain when the target is
// that much smaller; CMYK JPEGs, the JPEGs libjpeg-turbo refuses, and every other format go through stb_image.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gan/config.h"
#include "gan/image.h"

namespace gan {

// Largest width*height a file may claim; checked from the header before any pixel is allocated.
constexpr std::int64_t kMaxImagePixels = 64LL * 1024 * 1024;

// What decode_image found besides the pixels.
struct DecodeInfo {
  int width = 0, height = 0;  // the file's own size
  int scale = 1;              // decoded at 1/scale of it (DCT-domain downscaling of a JPEG; 1, 2, 4 or 8)
  bool turbo = false;         // decoded by libjpeg-turbo (else stb_image)
};

// Decodes PNG (gray, gray+alpha, RGB, RGBA, palette, 16-bit), JPEG, BMP, TGA or GIF (first frame). With min_side > 0
// a JPEG is decoded at the smallest of 1/8, 1/4, 1/2 of its size whose shorter side is still >= min_side.
// Returns false and fills `error` when the file cannot be read or decoded or claims too many pixels.
bool decode_image(const std::vector<std::uint8_t>& file_bytes, Image& out, std::string& error, int min_side = 0,
                  DecodeInfo* info = nullptr);
bool decode_image_file(const std::string& path, Image& out, std::string& error, int min_side = 0,
                       DecodeInfo* info = nullptr);

// Process-wide: with true, decode as before libjpeg-turbo: every JPEG through stb_image at full size and every
// shrink by stb_image_resize (the reference that gan-data bench measures against, and the tests' "today's pixels").
// Thread-safe; off by default.
void use_reference_decoding(bool on);

// Composites alpha over `background`, converts to `channels` (1: luma 0.299R+0.587G+0.114B, 3: gray replicated),
// centre-crops to a square and resizes to size x size (stb_image_resize; Mitchell when shrinking).
Image prepare_image(const Image& in, int channels, int size, const Rgb& background);

// Interleaved [H, W, C] pixels -> planar [C, H, W] bytes at dst.
void to_chw(const Image& image, std::uint8_t* dst);

// Parses "#rrggbb".
Rgb parse_colour(const std::string& hex);

// Everything a folder image's bytes depend on (the data cache's settings).
struct DecodeSpec {
  int size = 0, channels = 0;
  Rgb background{255, 255, 255};
  int min_image_size = 0;  // files with a smaller side are refused
};
DecodeSpec decode_spec(const DataConfig& data, int size, int channels);

// Decodes one image file into bytes [channels, size, size] as every folder source does: decode (a JPEG at most
// halved, quartered or eighthed down to `size`), refuse files below min_image_size, composite on the background,
// crop, resize, convert. Returns false and fills `error` when the file is unusable. Thread-safe, logs nothing. (The
// data cache stores its output: change it and bump kCacheFormatVersion in cache.h.)
bool decode_to_chw(const std::string& path, const DecodeSpec& spec, std::uint8_t* dst, std::string& error);

}  // namespace gan

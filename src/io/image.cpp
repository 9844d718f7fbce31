#include "gan/image.h"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <iterator>

#include "gan/errors.h"
#include "gan/files.h"

namespace gan {

namespace {
// What a PNG or JPEG header says, read without decoding (stb refuses to report sizes beyond 2^30 bytes).
struct Header {
  std::int64_t width = 0, height = 0;
  int jpeg_components = 0;   // 4 = CMYK or YCCK
  int adobe_transform = -1;  // JPEG APP14 "Adobe" transform: 0 CMYK/RGB, 1 YCbCr, 2 YCCK; -1 none
};

bool read_header(const std::vector<std::uint8_t>& b, Header& hd) {
  auto be16 = [&](size_t i) { return (b[i] << 8) | b[i + 1]; };
  static const std::uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.size() >= 24 && std::equal(png, png + 8, b.begin())) {
    hd.width = (std::int64_t(be16(16)) << 16) | be16(18);
    hd.height = (std::int64_t(be16(20)) << 16) | be16(22);
    return true;
  }
  if (b.size() < 4 || b[0] != 0xFF || b[1] != 0xD8) return false;
  for (size_t i = 2; i + 4 <= b.size();) {  // walk the JPEG markers up to the first SOFn
    if (b[i] != 0xFF) return false;
    const std::uint8_t m = b[i + 1];
    if (m == 0xFF) { ++i; continue; }
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
    if (m == 0xD9 || m == 0xDA) return false;
    const size_t len = static_cast<size_t>(be16(i + 2));
    if (len < 2 || i + 2 + len > b.size()) return false;
    const std::uint8_t* p = b.data() + i + 4;
    if (m == 0xEE && len >= 14 && std::equal(p, p + 5, "Adobe")) hd.adobe_transform = p[11];
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && len >= 8) {
      hd.height = (p[1] << 8) | p[2];
      hd.width = (p[3] << 8) | p[4];
      hd.jpeg_components = p[5];
      return true;
    }
    i += 2 + len;
  }
  return false;
}

// A JPEG whose data stops before its end-of-image marker. Newer stb_image versions decode such a file without an
// error and fill the missing part with grey, so the check is made here. Scans cannot contain FF D9 (0xFF is
// byte-stuffed in entropy-coded data), and markers before the first SOS (an EXIF thumbnail's EOI among them) are
// skipped by their lengths; trailing data after the EOI (camera trailers, motion-photo videos) is allowed.
bool jpeg_truncated(const std::vector<std::uint8_t>& b) {
  if (b.size() < 4 || b[0] != 0xFF || b[1] != 0xD8) return false;
  size_t i = 2;
  while (i + 4 <= b.size()) {  // to the first SOS
    if (b[i] != 0xFF) return false;  // not a marker where one belongs: leave the verdict to the decoder
    const std::uint8_t m = b[i + 1];
    if (m == 0xFF) { ++i; continue; }
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
    if (m == 0xD9) return false;
    if (m == 0xDA) break;
    i += 2 + static_cast<size_t>((b[i + 2] << 8) | b[i + 3]);
  }
  if (i + 4 > b.size()) return true;
  for (size_t k = i + 2; k + 1 < b.size(); ++k)
    if (b[k] == 0xFF && b[k + 1] == 0xD9) return false;
  return true;
}
}  // namespace

bool decode_image(const std::vector<std::uint8_t>& bytes, Image& out, std::string& error) {
  if (bytes.empty()) {
    error = "empty file";
    return false;
  }
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    error = "file too large";
    return false;
  }
  int w = 0, h = 0, n = 0;
  const int len = static_cast<int>(bytes.size());
  Header hd;
  const bool info = stbi_info_from_memory(bytes.data(), len, &w, &h, &n);
  const bool parsed = read_header(bytes, hd);
  if (info) hd.width = w, hd.height = h;
  if ((info || parsed) && (hd.width <= 0 || hd.height <= 0 || hd.width * hd.height > kMaxImagePixels)) {
    error = "header claims " + std::to_string(hd.width) + "x" + std::to_string(hd.height) +
            " pixels, more than the limit of " + std::to_string(kMaxImagePixels) + "; refused before decoding";
    return false;
  }
  // stb converts Adobe CMYK (transform 0) and YCCK (2) JPEGs correctly, but decodes a 4-component JPEG without
  // that marker as YCbCr and drops K: wrong colours with no error. Refuse those.
  if (hd.jpeg_components == 4 && hd.adobe_transform != 0 && hd.adobe_transform != 2) {
    error = "4-component (CMYK) JPEG without an Adobe colour-transform marker; its colours cannot be decoded "
            "reliably: convert it to RGB";
    return false;
  }
  if (!info) {
    error = std::string("not a decodable image (") + stbi_failure_reason() + ")";
    return false;
  }
  if (jpeg_truncated(bytes)) {
    error = "truncated JPEG (the file ends before its end-of-image marker): re-download or re-encode it";
    return false;
  }
  unsigned char* px = stbi_load_from_memory(bytes.data(), len, &w, &h, &n, 0);
  if (!px) {
    error = std::string("cannot decode (") + stbi_failure_reason() + ")";
    return false;
  }
  out.width = w;
  out.height = h;
  out.channels = n;
  out.pixels.assign(px, px + static_cast<size_t>(w) * h * n);
  stbi_image_free(px);
  return true;
}

bool decode_image_file(const std::string& path, Image& out, std::string& error) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    error = "cannot open";
    return false;
  }
  const std::streamoff size = in.tellg();
  std::vector<std::uint8_t> bytes(static_cast<size_t>(std::max<std::streamoff>(size, 0)));
  in.seekg(0);
  if (size < 0 || (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))) {
    error = "cannot read";
    return false;
  }
  return decode_image(bytes, out, error);
}

Rgb parse_colour(const std::string& hex) {
  Rgb c{255, 255, 255};
  if (hex.size() == 7 && hex[0] == '#')
    for (int i = 0; i < 3; ++i) c[i] = static_cast<std::uint8_t>(std::stoi(hex.substr(1 + 2 * i, 2), nullptr, 16));
  return c;
}

namespace {
// std::lround for x in [0, 255], without the libm call (x - trunc(x) is exact for x >= 0; halves round up).
inline std::uint8_t round_half_up(float x) {
  const int r = static_cast<int>(x);
  return static_cast<std::uint8_t>(r + (x - static_cast<float>(r) >= 0.5f ? 1 : 0));
}
}  // namespace

Image prepare_image(const Image& in, int channels, int size, const Rgb& bg) {
  const int n = in.channels;
  const bool has_alpha = n == 2 || n == 4;
  const bool colour = n >= 3;
  // 1. Centre crop to a square (only those pixels are converted).
  const int side = std::min(in.width, in.height);
  const int x0 = (in.width - side) / 2, y0 = (in.height - side) / 2;
  const std::uint8_t* crop = in.pixels.data() + (static_cast<size_t>(y0) * in.width + x0) * n;
  int stride = in.width * n;
  // 2. Composite alpha and convert to the target channel count. Without alpha and with the same channel count the
  // pixels are already right (gray: the luma weights map every gray level to itself), so they are used in place.
  std::vector<std::uint8_t> conv;
  if (has_alpha || n != channels) {
    conv.resize(static_cast<size_t>(side) * side * channels);
    for (int y = 0; y < side; ++y) {
      const std::uint8_t* row = crop + static_cast<size_t>(y) * stride;
      std::uint8_t* q = conv.data() + static_cast<size_t>(y) * side * channels;
      if (!has_alpha && n == 1) {  // gray -> RGB: replicate
        for (int x = 0; x < side; ++x, q += 3) q[0] = q[1] = q[2] = row[x];
        continue;
      }
      for (int x = 0; x < side; ++x, q += channels) {
        const std::uint8_t* p = row + static_cast<size_t>(x) * n;
        float rgb[3];
        for (int c = 0; c < 3; ++c) rgb[c] = colour ? p[c] : p[0];
        if (has_alpha) {
          float a = p[n - 1] / 255.0f;
          for (int c = 0; c < 3; ++c) rgb[c] = rgb[c] * a + bg[c] * (1.0f - a);
        }
        if (channels == 1) {
          const float luma = 0.299f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2];
          q[0] = round_half_up(std::clamp(luma, 0.0f, 255.0f));
        } else {
          for (int c = 0; c < 3; ++c) q[c] = round_half_up(std::clamp(rgb[c], 0.0f, 255.0f));
        }
      }
    }
    crop = conv.data();
    stride = side * channels;
  }
  // 3. Resize.
  Image out;
  out.width = out.height = size;
  out.channels = channels;
  out.pixels.resize(static_cast<size_t>(size) * size * channels);
  if (side == size) {
    for (int y = 0; y < size; ++y)
      std::copy_n(crop + static_cast<size_t>(y) * stride, static_cast<size_t>(size) * channels,
                  out.pixels.data() + static_cast<size_t>(y) * size * channels);
  } else {
    stbir_resize_uint8(crop, side, side, stride, out.pixels.data(), size, size, 0, channels);
  }
  return out;
}

Image make_grid(const at::Tensor& images, int nrow, int padding, std::uint8_t pad_value) {
  TORCH_CHECK(images.dim() == 4, "make_grid expects [N, C, H, W], got ", images.sizes());
  auto x = images.detach().to(torch::kCPU, torch::kFloat);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  TORCH_CHECK(c == 1 || c == 3, "make_grid expects 1 or 3 channels");
  const int64_t cols = std::min<int64_t>(nrow, n), rows = (n + cols - 1) / cols;
  const int64_t gh = rows * (h + padding) + padding, gw = cols * (w + padding) + padding;
  // [N, C, H, W] in [-1, 1] -> [N, H, W, C] bytes.
  auto bytes = x.add(1).div_(2).mul_(255).add_(0.5).clamp_(0, 255).to(torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
  Image grid;
  grid.width = static_cast<int>(gw);
  grid.height = static_cast<int>(gh);
  grid.channels = static_cast<int>(c);
  grid.pixels.assign(static_cast<size_t>(gh * gw * c), pad_value);
  const std::uint8_t* src = bytes.data_ptr<std::uint8_t>();
  for (int64_t k = 0; k < n; ++k) {
    const int64_t top = (k / cols) * (h + padding) + padding, left = (k % cols) * (w + padding) + padding;
    for (int64_t y = 0; y < h; ++y)
      std::copy_n(src + ((k * h + y) * w) * c, w * c, grid.pixels.data() + ((top + y) * gw + left) * c);
  }
  return grid;
}

std::string encode_png(const Image& image) {
  std::string bytes;
  auto sink = [](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  if (!stbi_write_png_to_func(sink, &bytes, image.width, image.height, image.channels, image.pixels.data(),
                              image.width * image.channels))
    return "";
  return bytes;
}

void write_png(const std::string& path, const Image& image) {
  const std::string bytes = encode_png(image);
  if (bytes.empty()) throw UserError(kExitIo, "cannot encode PNG " + path);
  write_file_atomic(path, bytes);
}

}  // namespace gan

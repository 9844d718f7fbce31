// Decoding below the rest of data/: file bytes -> pixels (libjpeg-turbo for JPEGs, shrinking in the DCT domain when
// the target allows; stb_image otherwise) -> crop, composite, convert, shrink -> planar bytes for the model.
#include "gan/decode.h"

#include <fcntl.h>
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <limits>

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

namespace {
std::atomic<bool> reference_decoding{false};

// One libjpeg-turbo decompressor per thread (created on first use, destroyed with the thread).
struct TurboHandle {
  tjhandle h = tjInitDecompress();
  ~TurboHandle() {
    if (h) tjDestroy(h);
  }
};

// The smallest of 1/8, 1/4, 1/2 (libjpeg-turbo's IDCT scaling; its exact size is TJSCALED's ceiling) at which the
// shorter side stays >= min_side; 1 when none does or min_side is 0.
int jpeg_scale(int width, int height, int min_side) {
  if (min_side <= 0) return 1;
  const int side = std::min(width, height);
  for (int den : {8, 4, 2})
    if ((side + den - 1) / den >= min_side) return den;
  return 1;
}

// A gray or YCbCr JPEG through libjpeg-turbo, at 1/scale. False (the caller falls back to stb_image, whose verdict
// then stands) when libjpeg-turbo reports any error or warning: corrupt data is never half-decoded here.
bool decode_turbo(const std::vector<std::uint8_t>& bytes, int min_side, Image& out, DecodeInfo& info) {
  thread_local TurboHandle tj;
  if (!tj.h) return false;
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  const auto size = static_cast<unsigned long>(bytes.size());
  if (tjDecompressHeader3(tj.h, bytes.data(), size, &w, &h, &subsamp, &colorspace) != 0) return false;
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK || w <= 0 || h <= 0) return false;
  const bool gray = colorspace == TJCS_GRAY;
  const int scale = jpeg_scale(w, h, min_side);
  const tjscalingfactor f{1, scale};
  const int sw = TJSCALED(w, f), sh = TJSCALED(h, f), n = gray ? 1 : 3;
  out.pixels.resize(static_cast<size_t>(sw) * sh * n);
  if (tjDecompress2(tj.h, bytes.data(), size, out.pixels.data(), sw, sw * n, sh, gray ? TJPF_GRAY : TJPF_RGB,
                    TJFLAG_STOPONWARNING) != 0)
    return false;
  out.width = sw;
  out.height = sh;
  out.channels = n;
  info.width = w;
  info.height = h;
  info.scale = scale;
  info.turbo = true;
  return true;
}
}  // namespace

void use_reference_decoding(bool on) { reference_decoding.store(on); }

bool decode_image(const std::vector<std::uint8_t>& bytes, Image& out, std::string& error, int min_side,
                  DecodeInfo* info_out) {
  DecodeInfo scratch;
  DecodeInfo& info = info_out ? *info_out : scratch;
  info = DecodeInfo{};
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
  const bool stb_ok = stbi_info_from_memory(bytes.data(), len, &w, &h, &n);
  const bool parsed = read_header(bytes, hd);
  if (stb_ok) hd.width = w, hd.height = h;
  if ((stb_ok || parsed) && (hd.width <= 0 || hd.height <= 0 || hd.width * hd.height > kMaxImagePixels)) {
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
  if (!stb_ok) {
    error = std::string("not a decodable image (") + stbi_failure_reason() + ")";
    return false;
  }
  if (jpeg_truncated(bytes)) {
    error = "truncated JPEG (the file ends before its end-of-image marker): re-download or re-encode it";
    return false;
  }
  if (hd.jpeg_components != 0 && hd.jpeg_components != 4 && !reference_decoding.load(std::memory_order_relaxed) &&
      decode_turbo(bytes, min_side, out, info)) return true;
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
  info.width = w;
  info.height = h;
  return true;
}

bool decode_image_file(const std::string& path, Image& out, std::string& error, int min_side, DecodeInfo* info) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot open";
    return false;
  }
  struct stat st {};
  std::vector<std::uint8_t> bytes;
  bool ok = ::fstat(fd, &st) == 0 && st.st_size >= 0;
  if (ok) {
    bytes.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (ok && got < bytes.size()) {
      const ssize_t r = ::read(fd, bytes.data() + got, bytes.size() - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) ok = false;  // an error, or the file shrank while being read
      else got += static_cast<size_t>(r);
    }
  }
  ::close(fd);
  if (!ok) {
    error = "cannot read";
    return false;
  }
  return decode_image(bytes, out, error, min_side, info);
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

namespace {
// stb_image_resize's Mitchell filter (B = C = 1/3), the one it uses when shrinking.
inline float mitchell(float x) {
  x = std::fabs(x);
  if (x < 1.0f) return (16 + x * x * (21 * x - 36)) / 18;
  if (x < 2.0f) return (32 + x * (-60 + x * (36 - 7 * x))) / 18;
  return 0.0f;
}

// The weights with which `in` samples make each of `out` < `in` samples: what stbir_resize_uint8 computes when it
// shrinks (input n weighs scale * mitchell(o + 1/2 - (n + 1/2) * scale) for output o, scale = out / in, samples
// beyond the edges read the edge one, each output's weights normalised to sum 1), gathered per output as `taps`
// (index, weight) pairs so that the loops below run without branches.
struct Taps {
  int taps = 0;
  std::vector<int> index;     // [out, taps], clamped to [0, in)
  std::vector<float> weight;  // [out, taps]; unused taps weigh 0
};

Taps shrink_taps(int in, int out) {
  const float scale = static_cast<float>(out) / static_cast<float>(in);
  const float radius = 2.0f / scale;  // Mitchell's support, in input samples
  Taps t;
  t.taps = static_cast<int>(std::ceil(2 * radius)) + 1;
  t.index.assign(static_cast<size_t>(out) * t.taps, 0);
  t.weight.assign(static_cast<size_t>(out) * t.taps, 0.0f);
  for (int o = 0; o < out; ++o) {
    // Inputs n with |o + 1/2 - (n + 1/2) * scale| < 2, i.e. (n + 1/2) within `radius` of the output's centre.
    const float centre = (static_cast<float>(o) + 0.5f) / scale;
    const int first = static_cast<int>(std::floor(centre - 0.5f - radius));
    int* idx = &t.index[static_cast<size_t>(o) * t.taps];
    float* w = &t.weight[static_cast<size_t>(o) * t.taps];
    float total = 0;
    for (int k = 0; k < t.taps; ++k) {
      const int n = first + k;
      const float x = (static_cast<float>(o) + 0.5f) - (static_cast<float>(n) + 0.5f) * scale;
      idx[k] = std::clamp(n, 0, in - 1);
      w[k] = mitchell(x) * scale;
      total += w[k];
    }
    for (int k = 0; k < t.taps; ++k) w[k] /= total;
  }
  return t;
}

// out[0, n) = sum over output o's taps of weight * rows[index] (each a contiguous run of n values, `stride` apart):
// one pass of the shrink, a whole-vector multiply-add per tap.
template <typename T>
void weighted_rows(const T* rows, size_t stride, const Taps& t, int o, int n, float* out) {
  const int* idx = &t.index[static_cast<size_t>(o) * t.taps];
  const float* w = &t.weight[static_cast<size_t>(o) * t.taps];
  std::fill(out, out + n, 0.0f);
  for (int k = 0; k < t.taps; ++k) {
    if (w[k] == 0.0f) continue;
    const float wk = w[k];
    const T* in = rows + static_cast<size_t>(idx[k]) * stride;
    for (int i = 0; i < n; ++i) out[i] += wk * static_cast<float>(in[i]);
  }
}

// Shrinks the square side x side (row stride `stride` bytes, `channels` interleaved) to size x size < side as
// stbir_resize_uint8 does (same filter, weights, edge rule and rounding); it differs only in the order of the float
// additions (columns first here): at most 1 level, rarely (Decode.ShrinkMatchesStbImageResize). Both passes are
// whole-vector multiply-adds (the intermediate is stored transposed), ~6x faster than stbir here.
void shrink_square(const std::uint8_t* src, int side, int stride, int channels, int size, std::uint8_t* dst) {
  thread_local int cached_in = 0, cached_out = 0;
  thread_local Taps taps;
  if (cached_in != side || cached_out != size) {
    taps = shrink_taps(side, size);
    cached_in = side;
    cached_out = size;
  }
  const int c = channels, n = side * c, m = size * c;
  thread_local std::vector<float> row, cols, acc;
  row.resize(static_cast<size_t>(n));
  cols.resize(static_cast<size_t>(side) * m);  // [side (input x), size (output y), c]: shrunk vertically, transposed
  acc.resize(static_cast<size_t>(m));
  // 1. Columns: output row y = the weighted input rows, then scattered into cols[x][y][ch].
  for (int y = 0; y < size; ++y) {
    weighted_rows(src, static_cast<size_t>(stride), taps, y, n, row.data());
    for (int x = 0; x < side; ++x)
      for (int ch = 0; ch < c; ++ch) cols[static_cast<size_t>(x) * m + y * c + ch] = row[static_cast<size_t>(x) * c + ch];
  }
  // 2. Rows: output column x = the weighted columns (each a contiguous [size, c] vector), rounded as stbir rounds
  // ((int)(saturate(v / 255) * 255 + 0.5)) into dst[y][x][ch].
  for (int x = 0; x < size; ++x) {
    weighted_rows(cols.data(), static_cast<size_t>(m), taps, x, m, acc.data());
    for (int y = 0; y < size; ++y)
      for (int ch = 0; ch < c; ++ch) {
        const float v = std::min(std::max(acc[static_cast<size_t>(y) * c + ch], 0.0f), 255.0f) + 0.5f;
        dst[(static_cast<size_t>(y) * size + x) * c + ch] = static_cast<std::uint8_t>(static_cast<int>(v));
      }
  }
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
  } else if (side > size && channels <= 4 && !reference_decoding.load(std::memory_order_relaxed)) {
    shrink_square(crop, side, stride, channels, size, out.pixels.data());
  } else {  // enlarging (Catmull-Rom)
    stbir_resize_uint8(crop, side, side, stride, out.pixels.data(), size, size, 0, channels);
  }
  return out;
}

void to_chw(const Image& p, std::uint8_t* dst) {
  const size_t hw = static_cast<size_t>(p.width) * p.height;
  if (p.channels == 1) {
    std::copy_n(p.pixels.data(), hw, dst);
    return;
  }
  for (size_t k = 0; k < hw; ++k)
    for (int c = 0; c < p.channels; ++c) dst[c * hw + k] = p.pixels[k * p.channels + c];
}

DecodeSpec decode_spec(const DataConfig& data, int size, int channels) {
  DecodeSpec s;
  s.size = size;
  s.channels = channels;
  s.background = parse_colour(data.background);
  s.min_image_size = data.min_image_size;
  return s;
}

bool decode_to_chw(const std::string& path, const DecodeSpec& spec, std::uint8_t* dst, std::string& error) {
  Image img;
  DecodeInfo info;
  if (!decode_image_file(path, img, error, spec.size, &info)) return false;
  if (info.width < spec.min_image_size || info.height < spec.min_image_size) {
    error = "too small (" + std::to_string(info.width) + "x" + std::to_string(info.height) +
            ", data.min_image_size is " + std::to_string(spec.min_image_size) + ")";
    return false;
  }
  to_chw(prepare_image(img, spec.channels, spec.size, spec.background), dst);
  return true;
}

}  // namespace gan

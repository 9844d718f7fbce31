#include "image_fixtures.h"

#include <stb/stb_image_write.h>  // implementation lives in libstb (-lstb)

#include <algorithm>
#include <array>
#include <fstream>
#include <stdexcept>
#include <unordered_map>

namespace fixtures {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("fixtures: " + what); }

// Validates dimensions and returns the pixel count.
std::size_t check_size(int w, int h, int max_dim = 1 << 24) {
  if (w <= 0 || h <= 0 || w > max_dim || h > max_dim)
    fail("bad image size " + std::to_string(w) + "x" + std::to_string(h));
  return static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
}

std::size_t check_buffer(int w, int h, int channels, std::size_t have) {
  if (channels < 1 || channels > 4) fail("channels must be 1..4, got " + std::to_string(channels));
  const std::size_t need = check_size(w, h) * static_cast<std::size_t>(channels);
  if (have != need)
    fail("pixel buffer has " + std::to_string(have) + " values, expected " + std::to_string(need));
  return need;
}

// Palette of 1..256 RGB triples; returns the number of entries.
int check_palette(const Bytes& palette_rgb) {
  if (palette_rgb.empty() || palette_rgb.size() % 3 != 0 || palette_rgb.size() > 256 * 3)
    fail("palette must hold 1..256 RGB triples");
  return static_cast<int>(palette_rgb.size() / 3);
}

void check_indices(const Bytes& indices, std::size_t count, int palette_size) {
  if (indices.size() != count) fail("index buffer has wrong size");
  for (std::uint8_t i : indices)
    if (i >= palette_size) fail("palette index " + std::to_string(i) + " out of range");
}

void put16be(Bytes& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
void put32be(Bytes& out, std::uint32_t v) {
  put16be(out, v >> 16);
  put16be(out, v & 0xFFFF);
}
void put16le(Bytes& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
}

// ---- stb_image_write wrappers ----------------------------------------------------------

void append_cb(void* context, void* data, int size) {
  auto* out = static_cast<Bytes*>(context);
  const auto* p = static_cast<const std::uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

template <typename WriteFn>
Bytes via_stb(const char* kind, int w, int h, int channels, const Bytes& pixels, WriteFn write) {
  check_buffer(w, h, channels, pixels.size());
  Bytes out;
  if (!write(&out) || out.empty()) fail(std::string("stb_image_write failed to write ") + kind);
  return out;
}

// ---- PNG building blocks ---------------------------------------------------------------

// CRC-32 (ISO 3309 / PNG), reflected polynomial 0xEDB88320.
std::uint32_t crc32(const std::uint8_t* data, std::size_t n, std::uint32_t crc = 0) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// Adler-32 (zlib trailer): two running sums modulo 65521.
std::uint32_t adler32(const Bytes& data) {
  std::uint32_t a = 1, b = 0;
  for (std::uint8_t v : data) {
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

// zlib stream made of deflate "stored" blocks: header 0x78 0x01 (deflate, 32K window,
// (0x78*256+0x01) % 31 == 0), then per block: 1 byte BFINAL|BTYPE=00 (byte aligned),
// LEN and ~LEN as 16-bit little-endian, LEN raw bytes (<= 65535); then big-endian Adler-32.
Bytes zlib_stored(const Bytes& raw) {
  Bytes out{0x78, 0x01};
  std::size_t pos = 0;
  do {
    const std::size_t len = std::min<std::size_t>(65535, raw.size() - pos);
    const bool last = pos + len == raw.size();
    out.push_back(last ? 1 : 0);
    put16le(out, static_cast<std::uint32_t>(len));
    put16le(out, static_cast<std::uint32_t>(~len & 0xFFFF));
    out.insert(out.end(), raw.begin() + pos, raw.begin() + pos + len);
    pos += len;
  } while (pos < raw.size());
  put32be(out, adler32(raw));
  return out;
}

// Chunk = 4-byte big-endian length, 4-byte type, data, CRC-32 over type + data.
void png_chunk(Bytes& out, const char* type, const Bytes& data) {
  put32be(out, static_cast<std::uint32_t>(data.size()));
  const std::size_t type_at = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put32be(out, crc32(out.data() + type_at, 4 + data.size()));
}

// Signature + IHDR (width, height, bit depth, colour type, compression 0, filter 0, no interlace).
Bytes png_start(std::uint32_t w, std::uint32_t h, int depth, int colour_type) {
  Bytes out{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes ihdr;
  put32be(ihdr, w);
  put32be(ihdr, h);
  ihdr.insert(ihdr.end(), {static_cast<std::uint8_t>(depth), static_cast<std::uint8_t>(colour_type), 0, 0, 0});
  png_chunk(out, "IHDR", ihdr);
  return out;
}

// IDAT from unfiltered scanlines (each row prefixed by filter type 0), then IEND.
void png_finish(Bytes& out, const Bytes& rows_data, std::size_t row_bytes) {
  Bytes raw;
  raw.reserve(rows_data.size() + rows_data.size() / row_bytes);
  for (std::size_t at = 0; at < rows_data.size(); at += row_bytes) {
    raw.push_back(0);
    raw.insert(raw.end(), rows_data.begin() + at, rows_data.begin() + at + row_bytes);
  }
  png_chunk(out, "IDAT", zlib_stored(raw));
  png_chunk(out, "IEND", {});
}

// ---- GIF LZW ---------------------------------------------------------------------------

// Packs variable-width codes least-significant-bit first, as GIF requires.
struct BitWriter {
  Bytes bytes;
  std::uint32_t acc = 0;
  int nbits = 0;
  void put(int code, int width) {
    acc |= static_cast<std::uint32_t>(code) << nbits;
    for (nbits += width; nbits >= 8; nbits -= 8, acc >>= 8) bytes.push_back(acc & 0xFF);
  }
  Bytes finish() {
    if (nbits > 0) bytes.push_back(acc & 0xFF);
    return bytes;
  }
};

// Classic GIF LZW. Codes 0..2^min-1 are literals, then CLEAR and END; new entries from
// 2^min+2 up to 4095. The decoder adds each entry one code later than the encoder, so the
// code width grows right after the encoder assigns code 2^width; when code 4095 is taken we
// send CLEAR (at 12 bits) and restart.
Bytes lzw_encode(const Bytes& indices, int min_code_size) {
  const int clear = 1 << min_code_size, end = clear + 1;
  int width = min_code_size + 1, next = clear + 2;
  std::unordered_map<std::uint32_t, int> dict;  // (prefix code << 8 | byte) -> code
  BitWriter bits;
  bits.put(clear, width);
  int prefix = indices[0];
  auto add_entry = [&](std::uint32_t key) {  // new code for key, or CLEAR when the table is full
    if (next == 4096) {
      bits.put(clear, width);
      dict.clear();
      width = min_code_size + 1;
      next = clear + 2;
      return;
    }
    dict[key] = next;
    if (next == (1 << width) && width < 12) ++width;
    ++next;
  };
  for (std::size_t i = 1; i < indices.size(); ++i) {
    const std::uint32_t key = (static_cast<std::uint32_t>(prefix) << 8) | indices[i];
    auto it = dict.find(key);
    if (it != dict.end()) {
      prefix = it->second;
      continue;
    }
    bits.put(prefix, width);
    add_entry(key);
    prefix = indices[i];
  }
  bits.put(prefix, width);
  // The decoder adds one more entry after reading the last code; mirror its width growth so
  // END is written at the width it will read.
  if (next < 4096 && next == (1 << width) && width < 12) ++width;
  bits.put(end, width);
  return bits.finish();
}

}  // namespace

// ---- public API ------------------------------------------------------------------------

Bytes pattern(int w, int h, int channels, unsigned seed) {
  if (channels < 1 || channels > 4) fail("channels must be 1..4");
  Bytes out(check_size(w, h) * static_cast<std::size_t>(channels));
  const int offset = static_cast<int>(seed * 13u % 40u);
  std::size_t i = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c) {
        const int gx = w > 1 ? x * 255 / (w - 1) : 0, gy = h > 1 ? y * 255 / (h - 1) : 0;
        const int g[4] = {gx, gy, (gx + gy) / 2, 255 - (gx + gy) / 2};
        const int noise = static_cast<int>((x * 7u + y * 3u + c * 5u + seed) % 5u);
        out[i++] = static_cast<std::uint8_t>(g[c] * 200 / 255 + offset + noise);  // <= 243
      }
  return out;
}

Bytes png8(int w, int h, int channels, const Bytes& pixels) {
  return via_stb("PNG", w, h, channels, pixels, [&](Bytes* out) {
    return stbi_write_png_to_func(append_cb, out, w, h, channels, pixels.data(), w * channels);
  });
}

Bytes jpeg(int w, int h, int channels, const Bytes& pixels, int quality) {
  if (quality < 1 || quality > 100) fail("JPEG quality must be 1..100");
  check_size(w, h, 65535);
  return via_stb("JPEG", w, h, channels, pixels, [&](Bytes* out) {
    return stbi_write_jpg_to_func(append_cb, out, w, h, channels, pixels.data(), quality);
  });
}

Bytes bmp(int w, int h, int channels, const Bytes& pixels) {
  return via_stb("BMP", w, h, channels, pixels, [&](Bytes* out) {
    return stbi_write_bmp_to_func(append_cb, out, w, h, channels, pixels.data());
  });
}

Bytes tga(int w, int h, int channels, const Bytes& pixels) {
  check_size(w, h, 65535);  // 16-bit size fields
  return via_stb("TGA", w, h, channels, pixels, [&](Bytes* out) {
    return stbi_write_tga_to_func(append_cb, out, w, h, channels, pixels.data());
  });
}

Bytes png_palette(int w, int h, const Bytes& indices, const Bytes& palette_rgb, const Bytes& alpha) {
  const int n = check_palette(palette_rgb);
  check_indices(indices, check_size(w, h), n);
  if (alpha.size() > static_cast<std::size_t>(n)) fail("more alpha values than palette entries");
  Bytes out = png_start(w, h, 8, 3);
  png_chunk(out, "PLTE", palette_rgb);
  if (!alpha.empty()) png_chunk(out, "tRNS", alpha);  // one alpha byte per leading palette entry
  png_finish(out, indices, static_cast<std::size_t>(w));
  return out;
}

Bytes png16(int w, int h, int channels, const std::vector<std::uint16_t>& pixels) {
  check_buffer(w, h, channels, pixels.size());
  static const int colour_type[5] = {0, 0, 4, 2, 6};
  Bytes samples;  // 16-bit samples are stored big-endian
  samples.reserve(pixels.size() * 2);
  for (std::uint16_t v : pixels) put16be(samples, v);
  Bytes out = png_start(w, h, 16, colour_type[channels]);
  png_finish(out, samples, static_cast<std::size_t>(w) * channels * 2);
  return out;
}

Bytes gif(int w, int h, const std::vector<Bytes>& frames, const Bytes& palette_rgb) {
  const std::size_t count = check_size(w, h, 65535);
  const int n = check_palette(palette_rgb);
  if (frames.empty()) fail("GIF needs at least one frame");
  for (const Bytes& f : frames) check_indices(f, count, n);
  // The global colour table holds 2^(k+1) entries (k = 0..7); LZW minimum code size is
  // max(2, k+1), the number of bits per index.
  int k = 0;
  while ((2 << k) < n) ++k;
  const int min_code_size = std::max(2, k + 1);

  Bytes out{'G', 'I', 'F', '8', '9', 'a'};
  put16le(out, w);  // logical screen descriptor
  put16le(out, h);
  out.push_back(static_cast<std::uint8_t>(0x80 | (k << 4) | k));  // global table, colour res, size
  out.push_back(0);                                               // background colour index
  out.push_back(0);                                               // pixel aspect ratio
  out.insert(out.end(), palette_rgb.begin(), palette_rgb.end());
  out.resize(out.size() + (static_cast<std::size_t>(2 << k) - n) * 3, 0);  // pad table

  for (const Bytes& frame : frames) {
    // Graphic control extension: disposal 1 (leave in place), delay 10/100 s, no transparency.
    out.insert(out.end(), {0x21, 0xF9, 4, 0x04, 10, 0, 0, 0});
    out.push_back(0x2C);  // image descriptor: left, top, width, height, flags (no local table)
    put16le(out, 0);
    put16le(out, 0);
    put16le(out, w);
    put16le(out, h);
    out.push_back(0);
    out.push_back(static_cast<std::uint8_t>(min_code_size));
    const Bytes data = lzw_encode(frame, min_code_size);
    for (std::size_t at = 0; at < data.size(); at += 255) {  // sub-blocks of <= 255 bytes
      const std::size_t len = std::min<std::size_t>(255, data.size() - at);
      out.push_back(static_cast<std::uint8_t>(len));
      out.insert(out.end(), data.begin() + at, data.begin() + at + len);
    }
    out.push_back(0);  // block terminator
  }
  out.push_back(0x3B);  // trailer
  return out;
}

// ---- embedded JPEGs --------------------------------------------------------------------
// Generated once with Pillow 9.4.0 (Debian's /usr/bin/python3); rerunning the command prints
// the same bytes as hex.

// /usr/bin/python3 -c "import io; from PIL import Image; b=io.BytesIO(); Image.new('RGB',(16,16),(200,60,30)).save(b,'JPEG',progressive=True,quality=95); print(b.getvalue().hex())"
static const unsigned char kProgressiveJpeg[522] = {
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02,
    0x01, 0x01, 0x01, 0x02, 0x02, 0x02, 0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05, 0x04,
    0x04, 0x03, 0x04, 0x06, 0x05, 0x06, 0x06, 0x06, 0x05, 0x06, 0x06, 0x06, 0x07, 0x09, 0x08, 0x06,
    0x07, 0x09, 0x07, 0x06, 0x06, 0x08, 0x0b, 0x08, 0x09, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x06, 0x08,
    0x0b, 0x0c, 0x0b, 0x0a, 0x0c, 0x09, 0x0a, 0x0a, 0x0a, 0xff, 0xdb, 0x00, 0x43, 0x01, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x05, 0x03, 0x03, 0x05, 0x0a, 0x07, 0x06, 0x07, 0x0a, 0x0a, 0x0a, 0x0a,
    0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a,
    0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a,
    0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0xff, 0xc2,
    0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x10, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11,
    0x01, 0xff, 0xc4, 0x00, 0x15, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0xff, 0xc4, 0x00, 0x15, 0x01, 0x01, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x08, 0xff,
    0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x10, 0x03, 0x10, 0x00, 0x00, 0x01, 0x83, 0x06, 0x34,
    0x87, 0xff, 0xc4, 0x00, 0x14, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x05,
    0x02, 0x1f, 0xff, 0xc4, 0x00, 0x14, 0x11, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xda, 0x00, 0x08, 0x01, 0x03, 0x01, 0x01,
    0x3f, 0x01, 0x7f, 0xff, 0xc4, 0x00, 0x14, 0x11, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xda, 0x00, 0x08, 0x01, 0x02, 0x01,
    0x01, 0x3f, 0x01, 0x7f, 0xff, 0xc4, 0x00, 0x14, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01,
    0x00, 0x06, 0x3f, 0x02, 0x1f, 0xff, 0xc4, 0x00, 0x14, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xff, 0xda, 0x00, 0x08, 0x01,
    0x01, 0x00, 0x01, 0x3f, 0x21, 0x1f, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03,
    0x00, 0x00, 0x00, 0x10, 0x03, 0xff, 0xc4, 0x00, 0x14, 0x11, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xda, 0x00, 0x08, 0x01,
    0x03, 0x01, 0x01, 0x3f, 0x10, 0x7f, 0xff, 0xc4, 0x00, 0x14, 0x11, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xda, 0x00, 0x08,
    0x01, 0x02, 0x01, 0x01, 0x3f, 0x10, 0x7f, 0xff, 0xc4, 0x00, 0x14, 0x10, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xff, 0xda, 0x00,
    0x08, 0x01, 0x01, 0x00, 0x01, 0x3f, 0x10, 0x1f, 0xff, 0xd9,
};

// /usr/bin/python3 -c "import io; from PIL import Image; b=io.BytesIO(); Image.new('CMYK',(16,16),(20,180,220,40)).save(b,'JPEG',quality=95); print(b.getvalue().hex())"
static const unsigned char kCmykJpeg[362] = {
    0xff, 0xd8, 0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01,
    0x01, 0x02, 0x02, 0x02, 0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05, 0x04, 0x04, 0x03,
    0x04, 0x06, 0x05, 0x06, 0x06, 0x06, 0x05, 0x06, 0x06, 0x06, 0x07, 0x09, 0x08, 0x06, 0x07, 0x09,
    0x07, 0x06, 0x06, 0x08, 0x0b, 0x08, 0x09, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x06, 0x08, 0x0b, 0x0c,
    0x0b, 0x0a, 0x0c, 0x09, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00, 0x14, 0x08, 0x00, 0x10, 0x00, 0x10,
    0x04, 0x43, 0x11, 0x00, 0x4d, 0x11, 0x00, 0x59, 0x11, 0x00, 0x4b, 0x11, 0x00, 0xff, 0xc4, 0x00,
    0x1f, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xff, 0xc4,
    0x00, 0xb5, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00,
    0x00, 0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13,
    0x51, 0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15,
    0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
    0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46,
    0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66,
    0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86,
    0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4,
    0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2,
    0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9,
    0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5,
    0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda, 0x00, 0x0e, 0x04, 0x43, 0x00, 0x4d, 0x00, 0x59, 0x00,
    0x4b, 0x00, 0x00, 0x3f, 0x00, 0xfd, 0xac, 0xaf, 0x8a, 0xeb, 0xf2, 0x2e, 0xbf, 0x57, 0x28, 0xa2,
    0x8a, 0x28, 0xa2, 0x8a, 0x28, 0xa2, 0x8a, 0x2b, 0xff, 0xd9,
};

Bytes progressive_jpeg() { return Bytes(kProgressiveJpeg, kProgressiveJpeg + sizeof kProgressiveJpeg); }

Bytes cmyk_jpeg() { return Bytes(kCmykJpeg, kCmykJpeg + sizeof kCmykJpeg); }

Bytes truncated(const Bytes& file, std::size_t keep) {
  if (keep > file.size()) fail("cannot keep more bytes than the file has");
  return Bytes(file.begin(), file.begin() + keep);
}

Bytes png_header_claiming(int w, int h) {
  if (w <= 0 || h <= 0) fail("claimed size must be positive");
  Bytes out = png_start(w, h, 8, 2);
  png_chunk(out, "IEND", {});
  return out;
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail("cannot open " + path + " for writing");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) fail("failed writing " + path);
}

Bytes idx_images(int n, int rows, int cols, const Bytes& pixels) {
  if (n < 0 || rows <= 0 || cols <= 0 || pixels.size() != static_cast<size_t>(n) * rows * cols)
    throw std::runtime_error("idx_images: pixel count does not match n x rows x cols");
  Bytes b = {0, 0, 0x08, 3};  // magic: unsigned byte, 3 dimensions
  for (int v : {n, rows, cols})
    for (int shift : {24, 16, 8, 0}) b.push_back(static_cast<std::uint8_t>(v >> shift));  // big-endian sizes
  b.insert(b.end(), pixels.begin(), pixels.end());
  return b;
}

Bytes idx_labels(const Bytes& labels) {
  const auto n = static_cast<std::uint32_t>(labels.size());
  Bytes b = {0, 0, 0x08, 1};  // magic: unsigned byte, 1 dimension
  for (int shift : {24, 16, 8, 0}) b.push_back(static_cast<std::uint8_t>(n >> shift));  // big-endian count
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

}  // namespace fixtures

#include "gan/gif.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "gan/errors.h"
#include "gan/files.h"

namespace gan {

namespace {

constexpr int kRedLevels = 6, kGreenLevels = 7, kBlueLevels = 6;  // 252 colours

void put16(std::string& out, int v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
}

// Codes of variable width, least significant bit first, as GIF's LZW wants them.
class BitWriter {
 public:
  void put(int code, int bits) {
    acc_ |= static_cast<std::uint32_t>(code) << nbits_;
    nbits_ += bits;
    while (nbits_ >= 8) {
      bytes_.push_back(static_cast<char>(acc_ & 0xff));
      acc_ >>= 8;
      nbits_ -= 8;
    }
  }
  std::string finish() {
    if (nbits_ > 0) bytes_.push_back(static_cast<char>(acc_ & 0xff));
    acc_ = 0;
    nbits_ = 0;
    return std::move(bytes_);
  }

 private:
  std::string bytes_;
  std::uint32_t acc_ = 0;
  int nbits_ = 0;
};

// LZW-compresses 8-bit palette indices (minimum code size 8, codes up to 12 bits, a clear code when the table
// is full). The code width grows as soon as the encoder's newest code needs it; the decoder, one entry behind,
// grows at the same point in the stream.
std::string lzw_encode(const std::vector<std::uint8_t>& indices) {
  constexpr int kClear = 256, kEnd = 257, kMaxCode = 4095;
  std::vector<std::uint16_t> child(static_cast<size_t>(kMaxCode + 1) * 256, 0);  // (prefix, byte) -> code; 0 = none
  BitWriter bits;
  int code_size = 9, last_code = kEnd;
  bits.put(kClear, code_size);
  int current = indices[0];
  for (size_t i = 1; i < indices.size(); ++i) {
    const int next = indices[i];
    std::uint16_t& slot = child[static_cast<size_t>(current) * 256 + static_cast<size_t>(next)];
    if (slot != 0) {
      current = slot;
      continue;
    }
    bits.put(current, code_size);
    slot = static_cast<std::uint16_t>(++last_code);
    if (last_code >= (1 << code_size)) ++code_size;
    if (last_code == kMaxCode) {
      bits.put(kClear, code_size);
      std::fill(child.begin(), child.end(), 0);
      code_size = 9;
      last_code = kEnd;
    }
    current = next;
  }
  bits.put(current, code_size);
  bits.put(kEnd, code_size);
  return bits.finish();
}

}  // namespace

int cube_index(int r, int g, int b) {
  const int ri = (r * (kRedLevels - 1) + 127) / 255, gi = (g * (kGreenLevels - 1) + 127) / 255,
            bi = (b * (kBlueLevels - 1) + 127) / 255;
  return (ri * kGreenLevels + gi) * kBlueLevels + bi;
}

Rgb cube_colour(int index) {
  const int bi = index % kBlueLevels, gi = (index / kBlueLevels) % kGreenLevels, ri = index / (kBlueLevels * kGreenLevels);
  auto level = [](int i, int levels) {
    return static_cast<std::uint8_t>((i * 255 + (levels - 1) / 2) / (levels - 1));
  };
  return {level(ri, kRedLevels), level(gi, kGreenLevels), level(bi, kBlueLevels)};
}

std::string encode_gif(const std::vector<Image>& frames, int delay_cs) {
  if (frames.empty()) throw std::invalid_argument("encode_gif: no frames");
  const int w = frames[0].width, h = frames[0].height, c = frames[0].channels;
  if (w < 1 || h < 1 || w > 65535 || h > 65535 || (c != 1 && c != 3))
    throw std::invalid_argument("encode_gif: frames must be 1..65535 pixels wide and high, with 1 or 3 channels");
  for (const Image& f : frames)
    if (f.width != w || f.height != h || f.channels != c ||
        f.pixels.size() != static_cast<size_t>(w) * static_cast<size_t>(h) * static_cast<size_t>(c))
      throw std::invalid_argument("encode_gif: all frames must have the same size and channels");
  delay_cs = std::clamp(delay_cs, 0, 65535);

  std::string out = "GIF89a";
  put16(out, w);
  put16(out, h);
  out.push_back(static_cast<char>(0xF7));  // global colour table, 8 bits per primary, 256 entries
  out.push_back(0);                        // background colour index
  out.push_back(0);                        // no aspect ratio
  for (int i = 0; i < 256; ++i) {          // global colour table
    Rgb col = c == 1 ? Rgb{static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i)}
                     : (i < kRedLevels * kGreenLevels * kBlueLevels ? cube_colour(i) : Rgb{0, 0, 0});
    out.append(reinterpret_cast<const char*>(col.data()), 3);
  }
  // NETSCAPE2.0 application extension: loop forever.
  out += std::string("\x21\xFF\x0B" "NETSCAPE2.0" "\x03\x01\x00\x00\x00", 19);

  std::vector<std::uint8_t> indices(static_cast<size_t>(w) * static_cast<size_t>(h));
  for (const Image& f : frames) {
    // Graphic control extension: disposal "do not dispose" (1), no transparency, the delay.
    out += std::string("\x21\xF9\x04\x04", 4);
    put16(out, delay_cs);
    out.push_back(0);  // transparent index (unused)
    out.push_back(0);  // block terminator
    // Image descriptor: the whole canvas, no local colour table, not interlaced.
    out.push_back(0x2C);
    put16(out, 0);
    put16(out, 0);
    put16(out, w);
    put16(out, h);
    out.push_back(0);
    const std::uint8_t* px = f.pixels.data();
    if (c == 1) {
      std::copy(px, px + indices.size(), indices.begin());
    } else {
      for (size_t i = 0; i < indices.size(); ++i)
        indices[i] = static_cast<std::uint8_t>(cube_index(px[3 * i], px[3 * i + 1], px[3 * i + 2]));
    }
    out.push_back(8);  // LZW minimum code size
    const std::string data = lzw_encode(indices);
    for (size_t pos = 0; pos < data.size(); pos += 255) {  // data sub-blocks of at most 255 bytes
      const size_t len = std::min<size_t>(255, data.size() - pos);
      out.push_back(static_cast<char>(len));
      out.append(data, pos, len);
    }
    out.push_back(0);  // end of the image data
  }
  out.push_back(0x3B);  // trailer
  return out;
}

void write_gif(const std::string& path, const std::vector<Image>& frames, double fps) {
  if (!(fps >= 0.1 && fps <= 50))
    throw UserError(kExitUsage, "--fps " + format_number(fps) + " is out of range: give 0.1 to 50 frames per second");
  const int delay_cs = std::max(1, static_cast<int>(std::lround(100.0 / fps)));
  write_file_atomic(path, encode_gif(frames, delay_cs));
}

}  // namespace gan

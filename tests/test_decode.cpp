// The decoding room (gan/decode.h): libjpeg-turbo with DCT-domain downscaling against stb_image, the fast shrink
// against stb_image_resize, and the fallbacks that keep every bad-input verdict stb's.
#include <gtest/gtest.h>
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <turbojpeg.h>

#include <cmath>
#include <random>

#include "gan/config.h"
#include "gan/decode.h"
#include "image_fixtures.h"
#include "test_util.h"

using fixtures::Bytes;
using testutil::TempDir;

namespace {

// A photo-like RGB image: smooth colour waves, an oval with texture and noise (JPEG-compresses like a photograph).
Bytes photo(int w, int h, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0, 1);
  std::normal_distribution<float> noise(0, 4);
  float f[3][4];
  for (auto& c : f)
    for (float& v : c) v = 0.02f + 0.08f * u(rng);
  Bytes px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const float dx = (x - w / 2.0f) / (w / 3.0f), dy = (y - h / 2.0f) / (h / 2.5f);
      for (int c = 0; c < 3; ++c) {
        float v = 128 + 50 * std::sin(f[c][0] * x + f[c][1] * y) + 30 * std::cos(f[c][2] * x - f[c][3] * y);
        if (dx * dx + dy * dy < 1) v = 180 - 40 * c + 12 * std::sin(0.5f * x) * std::sin(0.4f * y);
        px[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<std::uint8_t>(std::clamp(v + noise(rng), 0.f, 255.f));
      }
    }
  return px;
}

struct Diff {
  double mean = 0;
  int max = 0;
};
Diff diff(const Bytes& a, const Bytes& b) {
  EXPECT_EQ(a.size(), b.size());
  Diff d;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const int e = std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]));
    d.mean += e;
    d.max = std::max(d.max, e);
  }
  d.mean /= static_cast<double>(std::max<size_t>(a.size(), 1));
  return d;
}

// decode_to_chw of `file` (written to disk) with libjpeg-turbo on or off.
Bytes chw(const Bytes& file, int size, int channels, bool turbo) {
  TempDir dir;
  fixtures::write_file(dir / "x.jpg", file);
  gan::DecodeSpec spec;
  spec.size = size;
  spec.channels = channels;
  spec.min_image_size = 8;
  Bytes out(static_cast<size_t>(channels) * size * size);
  std::string error;
  gan::use_reference_decoding(!turbo);
  const bool ok = gan::decode_to_chw(dir / "x.jpg", spec, out.data(), error);
  gan::use_reference_decoding(false);
  EXPECT_TRUE(ok) << error;
  return out;
}

}  // namespace

TEST(Decode, JpegIsShrunkInTheDctDomainOnlyAsFarAsTheTargetAllows) {
  const Bytes jpg = fixtures::jpeg(178, 218, 3, photo(178, 218, 1), 90);
  struct Case {
    int min_side, scale, width, height;
  };
  // 178 / 2 = 89, / 4 = 44.5 -> 45, / 8 = 22.25 -> 23 (libjpeg-turbo rounds the scaled size up).
  for (const Case& c : {Case{0, 1, 178, 218}, Case{64, 2, 89, 109}, Case{89, 2, 89, 109}, Case{90, 1, 178, 218},
                        Case{45, 4, 45, 55}, Case{44, 4, 45, 55}, Case{23, 8, 23, 28}, Case{1, 8, 23, 28},
                        Case{300, 1, 178, 218}}) {
    gan::Image img;
    gan::DecodeInfo info;
    std::string error;
    ASSERT_TRUE(gan::decode_image(jpg, img, error, c.min_side, &info)) << error;
    EXPECT_TRUE(info.turbo);
    EXPECT_EQ(info.scale, c.scale) << "min_side " << c.min_side;
    EXPECT_EQ(img.width, c.width) << "min_side " << c.min_side;
    EXPECT_EQ(img.height, c.height) << "min_side " << c.min_side;
    EXPECT_EQ(img.channels, 3);
    EXPECT_EQ(info.width, 178);
    EXPECT_EQ(info.height, 218);
  }
}

TEST(Decode, TurboPixelsStayWithinTheDocumentedToleranceOfStb) {
  // README "Data cache and gan-data": against the stb_image path (full-size decode, crop, Mitchell shrink), a JPEG
  // decoded by libjpeg-turbo differs by at most 0.25 levels on average (of 255) at full size and 1.0 when halved in
  // the DCT domain, and no pixel by more than 4 / 32 levels.
  double worst_full = 0, worst_half = 0;
  for (unsigned seed = 0; seed < 4; ++seed) {
    const Bytes jpg = fixtures::jpeg(178, 218, 3, photo(178, 218, seed), 90);
    const Bytes stb64 = chw(jpg, 64, 3, false), turbo64 = chw(jpg, 64, 3, true);    // 178 -> 89 in the DCT
    const Bytes stb128 = chw(jpg, 128, 3, false), turbo128 = chw(jpg, 128, 3, true);  // no DCT shrink
    const Diff half = diff(stb64, turbo64), full = diff(stb128, turbo128);
    EXPECT_LE(half.mean, 1.0) << seed;
    EXPECT_LE(half.max, 32) << seed;
    EXPECT_LE(full.mean, 0.25) << seed;
    EXPECT_LE(full.max, 4) << seed;
    EXPECT_GT(half.mean, 0.0) << "the two paths cannot be the same decoder";
    worst_full = std::max(worst_full, full.mean);
    worst_half = std::max(worst_half, half.mean);
  }
  std::printf("mean |turbo - stb|: full size %.3f, DCT-halved %.3f levels\n", worst_full, worst_half);
  // Gray JPEGs stay one channel through libjpeg-turbo, and come out as stb's within the same tolerance.
  Bytes gray(160 * 200);
  const Bytes rgb = photo(160, 200, 7);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = rgb[3 * i + 1];
  // stb_image_write stores gray as three components: a one-component JPEG comes from libjpeg-turbo's encoder.
  tjhandle enc = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long len = 0;
  ASSERT_EQ(tjCompress2(enc, gray.data(), 160, 160, 200, TJPF_GRAY, &buf, &len, TJSAMP_GRAY, 90, 0), 0);
  const Bytes gjpg(buf, buf + len);
  tjFree(buf);
  tjDestroy(enc);
  ASSERT_EQ(gjpg[0], 0xFF);
  gan::Image img;
  gan::DecodeInfo info;
  std::string error;
  ASSERT_TRUE(gan::decode_image(gjpg, img, error, 32, &info)) << error;
  EXPECT_TRUE(info.turbo);
  EXPECT_EQ(img.channels, 1);
  EXPECT_EQ(info.scale, 4);  // 160 / 4 = 40 >= 32; / 8 = 20 < 32
  EXPECT_LE(diff(chw(gjpg, 32, 1, false), chw(gjpg, 32, 1, true)).mean, 1.0);
}

TEST(Decode, ShrinkMatchesStbImageResize) {
  // prepare_image's own shrink against stbir_resize_uint8 (which it replaced for speed) on the centre square.
  struct Case {
    int w, h, channels, size;
  };
  for (const Case& c : {Case{89, 109, 3, 64}, Case{178, 218, 3, 64}, Case{65, 65, 3, 64}, Case{300, 200, 1, 32},
                        Case{128, 128, 3, 64}, Case{97, 97, 1, 13}}) {
    gan::Image img;
    img.width = c.w;
    img.height = c.h;
    img.channels = c.channels;
    const Bytes rgb = photo(c.w, c.h, static_cast<unsigned>(c.w));
    for (size_t i = 0; i < static_cast<size_t>(c.w) * c.h; ++i)
      for (int ch = 0; ch < c.channels; ++ch) img.pixels.push_back(rgb[3 * i + ch]);
    const gan::Image ours = gan::prepare_image(img, c.channels, c.size, {0, 0, 0});
    const int side = std::min(c.w, c.h), x0 = (c.w - side) / 2, y0 = (c.h - side) / 2;
    Bytes ref(static_cast<size_t>(c.size) * c.size * c.channels);
    stbir_resize_uint8(img.pixels.data() + (static_cast<size_t>(y0) * c.w + x0) * c.channels, side, side,
                       c.w * c.channels, ref.data(), c.size, c.size, 0, c.channels);
    const Diff d = diff(ours.pixels, ref);
    EXPECT_LE(d.max, 1) << c.w << "x" << c.h << " -> " << c.size;
    EXPECT_LE(d.mean, 0.01) << c.w << "x" << c.h << " -> " << c.size;
  }
}

TEST(Decode, JpegsLibjpegTurboRefusesKeepStbsVerdict) {
  // Scan data cut in the middle with the end-of-image marker kept: libjpeg-turbo warns ("premature end of data
  // segment"), so the file goes to stb_image as before, and the result is exactly stb's.
  const Bytes jpg = fixtures::jpeg(64, 64, 3, photo(64, 64, 3), 90);
  size_t sos = 2;
  while (!(jpg[sos] == 0xFF && jpg[sos + 1] == 0xDA)) sos += 2 + ((jpg[sos + 2] << 8) | jpg[sos + 3]);
  Bytes cut(jpg.begin(), jpg.begin() + static_cast<long>(sos + (jpg.size() - sos) / 2));
  cut.push_back(0xFF);
  cut.push_back(0xD9);
  gan::Image turbo_on, turbo_off;
  gan::DecodeInfo info;
  std::string e1, e2;
  const bool ok_on = gan::decode_image(cut, turbo_on, e1, 0, &info);
  gan::use_reference_decoding(true);
  const bool ok_off = gan::decode_image(cut, turbo_off, e2);
  gan::use_reference_decoding(false);
  EXPECT_FALSE(info.turbo);
  EXPECT_EQ(ok_on, ok_off);
  EXPECT_EQ(e1, e2);
  EXPECT_EQ(turbo_on.pixels, turbo_off.pixels);
  // CMYK JPEGs (4 components) are never handed to libjpeg-turbo (it cannot give RGB for them); stb converts them.
  ASSERT_TRUE(gan::decode_image(fixtures::cmyk_jpeg(), turbo_on, e1, 0, &info)) << e1;
  EXPECT_FALSE(info.turbo);
  EXPECT_EQ(turbo_on.channels, 3);
  // Progressive JPEGs go through libjpeg-turbo (the colour is checked in BadImages.EveryKind...).
  ASSERT_TRUE(gan::decode_image(fixtures::progressive_jpeg(), turbo_on, e1, 0, &info)) << e1;
  EXPECT_TRUE(info.turbo);
}

// Checks that the image fixtures decode as intended with stb_image (implementation in -lstb).
#include "image_fixtures.h"

#include <gtest/gtest.h>
#include <stb/stb_image.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

using fixtures::Bytes;

namespace {

struct Image {
  bool ok = false;
  int w = 0, h = 0, channels = 0;  // channels as reported by stb (the file's own count)
  Bytes pixels;                    // decoded with req_comp = 0, i.e. `channels` per pixel
  std::vector<std::uint16_t> pixels16;
};

Image decode(const Bytes& file) {
  Image im;
  stbi_uc* p = stbi_load_from_memory(file.data(), static_cast<int>(file.size()), &im.w, &im.h,
                                     &im.channels, 0);
  if (!p) return im;
  im.ok = true;
  im.pixels.assign(p, p + static_cast<std::size_t>(im.w) * im.h * im.channels);
  stbi_image_free(p);
  return im;
}

Image decode16(const Bytes& file) {
  Image im;
  stbi_us* p = stbi_load_16_from_memory(file.data(), static_cast<int>(file.size()), &im.w, &im.h,
                                        &im.channels, 0);
  if (!p) return im;
  im.ok = true;
  im.pixels16.assign(p, p + static_cast<std::size_t>(im.w) * im.h * im.channels);
  stbi_image_free(p);
  return im;
}

// Converts interleaved pixels to `to` channels the way the BMP/JPEG writers store them:
// grey is replicated to RGB, alpha is dropped unless kept (to == 4 from 4).
Bytes to_rgb(const Bytes& px, int from, int to) {
  Bytes out;
  for (std::size_t i = 0; i < px.size(); i += from) {
    const std::uint8_t* p = &px[i];
    if (from <= 2) out.insert(out.end(), {p[0], p[0], p[0]});
    else out.insert(out.end(), {p[0], p[1], p[2]});
    if (to == 4) out.push_back(p[3]);
  }
  return out;
}

// Palette indices expanded to RGB, or RGBA (missing tRNS entries are opaque).
Bytes expand_palette(const Bytes& idx, const Bytes& pal, const Bytes& alpha, int channels) {
  Bytes out;
  for (std::uint8_t i : idx) {
    out.insert(out.end(), {pal[i * 3], pal[i * 3 + 1], pal[i * 3 + 2]});
    if (channels == 4) out.push_back(i < alpha.size() ? alpha[i] : 255);
  }
  return out;
}

Bytes random_palette(int n, unsigned seed) {
  Bytes pal;
  std::srand(seed);
  for (int i = 0; i < n * 3; ++i) pal.push_back(static_cast<std::uint8_t>(std::rand() & 0xFF));
  return pal;
}

// Varied indices in [0, n): a smooth part plus pseudo-random runs, so LZW sees both
// repeated strings and fresh ones.
Bytes varied_indices(int w, int h, int n, unsigned seed) {
  Bytes idx;
  std::uint32_t s = seed;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      s = s * 1103515245u + 12345u;
      const int v = ((x / 3 + y * 5) % n + ((s >> 16) % 4 == 0 ? (s >> 8) % n : 0)) % n;
      idx.push_back(static_cast<std::uint8_t>(v));
    }
  return idx;
}

// Colours stb returns (always RGBA, alpha 255) for a GIF frame.
Bytes gif_rgba(const Bytes& idx, const Bytes& pal) { return expand_palette(idx, pal, {}, 4); }

// Offset of the first JPEG marker segment `marker` (its 0xFF byte) before SOS, or npos.
// Walks SOI then the length-prefixed segments.
std::size_t jpeg_segment(const Bytes& f, std::uint8_t marker) {
  for (std::size_t at = 2; at + 4 <= f.size() && f[at] == 0xFF; at += 2 + (f[at + 2] << 8 | f[at + 3])) {
    if (f[at + 1] == marker) return at;
    if (f[at + 1] == 0xDA) break;  // SOS: entropy-coded data follows
  }
  return std::string::npos;
}

// Every pixel of a solid image equals `want` (channels = want.size()).
bool all_pixels_are(const Image& im, const Bytes& want) {
  if (im.pixels.size() != static_cast<std::size_t>(im.w) * im.h * want.size()) return false;
  for (std::size_t i = 0; i < im.pixels.size(); ++i)
    if (im.pixels[i] != want[i % want.size()]) return false;
  return true;
}

// First pixel as "(r,g,b)" for failure messages.
std::string first_pixel(const Image& im) {
  std::string s = "(";
  for (int c = 0; c < im.channels && c < int(im.pixels.size()); ++c)
    s += (c ? "," : "") + std::to_string(im.pixels[c]);
  return s + ")";
}

}  // namespace

TEST(ImageFixtures, PatternIsDeterministicAndVaried) {
  const Bytes a = fixtures::pattern(16, 8, 3, 7);
  EXPECT_EQ(a, fixtures::pattern(16, 8, 3, 7));
  EXPECT_NE(a, fixtures::pattern(16, 8, 3, 8));
  ASSERT_EQ(a.size(), 16u * 8 * 3);
  EXPECT_NE(a[0], a[3 * 15]);       // varies along x
  EXPECT_NE(a[1], a[3 * 16 * 7 + 1]);  // channel 1 varies along y
}

TEST(ImageFixtures, Png8AllChannelCountsDecodeExactly) {
  for (int c = 1; c <= 4; ++c) {
    const Bytes px = fixtures::pattern(17, 9, c, c);
    const Image im = decode(fixtures::png8(17, 9, c, px));
    ASSERT_TRUE(im.ok) << stbi_failure_reason();
    EXPECT_EQ(im.w, 17);
    EXPECT_EQ(im.h, 9);
    EXPECT_EQ(im.channels, c);
    EXPECT_EQ(im.pixels, px) << "channels=" << c;
  }
}

TEST(ImageFixtures, BmpStoresRgbOrRgba) {
  for (int c = 1; c <= 4; ++c) {  // odd width exercises row padding
    const Bytes px = fixtures::pattern(13, 6, c, 3);
    const Image im = decode(fixtures::bmp(13, 6, c, px));
    ASSERT_TRUE(im.ok) << stbi_failure_reason();
    const int stored = c == 4 ? 4 : 3;
    EXPECT_EQ(im.w, 13);
    EXPECT_EQ(im.h, 6);
    EXPECT_EQ(im.channels, stored) << "channels=" << c;
    EXPECT_EQ(im.pixels, to_rgb(px, c, stored)) << "channels=" << c;
  }
}

TEST(ImageFixtures, TgaAllChannelCountsDecodeExactly) {
  for (int c = 1; c <= 4; ++c) {
    const Bytes px = fixtures::pattern(11, 7, c, 5);
    const Image im = decode(fixtures::tga(11, 7, c, px));
    ASSERT_TRUE(im.ok) << stbi_failure_reason();
    EXPECT_EQ(im.w, 11);
    EXPECT_EQ(im.h, 7);
    EXPECT_EQ(im.channels, c);
    EXPECT_EQ(im.pixels, px) << "channels=" << c;
  }
}

TEST(ImageFixtures, JpegDecodesWithinTolerance) {
  for (int c = 1; c <= 4; ++c) {
    const Bytes px = fixtures::pattern(32, 24, c, 2);
    const Image im = decode(fixtures::jpeg(32, 24, c, px, 95));
    ASSERT_TRUE(im.ok) << stbi_failure_reason();
    EXPECT_EQ(im.w, 32);
    EXPECT_EQ(im.h, 24);
    ASSERT_EQ(im.channels, 3) << "stb_image_write always writes 3-component (YCbCr) JPEG";
    const Bytes want = to_rgb(px, c, 3);
    int max_diff = 0;
    for (std::size_t i = 0; i < want.size(); ++i)
      max_diff = std::max(max_diff, std::abs(int(im.pixels[i]) - int(want[i])));
    std::printf("  JPEG q95 channels=%d: max abs diff %d\n", c, max_diff);
    EXPECT_LE(max_diff, 12);
  }
}

TEST(ImageFixtures, PalettePngDecodesToPaletteColours) {
  const Bytes pal = random_palette(5, 1);
  const Bytes idx = varied_indices(10, 7, 5, 2);
  const Image im = decode(fixtures::png_palette(10, 7, idx, pal));
  ASSERT_TRUE(im.ok) << stbi_failure_reason();
  EXPECT_EQ(im.w, 10);
  EXPECT_EQ(im.h, 7);
  EXPECT_EQ(im.channels, 3);
  EXPECT_EQ(im.pixels, expand_palette(idx, pal, {}, 3));
}

TEST(ImageFixtures, PalettePngWithTrnsDecodesToRgba) {
  const Bytes pal = random_palette(256, 3);
  const Bytes idx = varied_indices(40, 30, 256, 4);
  const Bytes alpha = {0, 64, 128, 200};  // shorter than the palette: the rest stay opaque
  const Bytes file = fixtures::png_palette(40, 30, idx, pal, alpha);
  const Image im = decode(file);
  ASSERT_TRUE(im.ok) << stbi_failure_reason();
  EXPECT_EQ(im.channels, 4);
  EXPECT_EQ(im.pixels, expand_palette(idx, pal, alpha, 4));
  int w = 0, h = 0, c = 0;
  ASSERT_TRUE(stbi_info_from_memory(file.data(), int(file.size()), &w, &h, &c));
  EXPECT_EQ(c, 4);
}

TEST(ImageFixtures, Png16DecodesExactlyAndTo8BitHighByte) {
  // 150 x 120 RGBA16 is ~144 KB of scanlines: several stored deflate blocks.
  for (int c = 1; c <= 4; ++c) {
    const int w = c == 4 ? 150 : 9, h = c == 4 ? 120 : 5;
    std::vector<std::uint16_t> px;
    for (int i = 0; i < w * h * c; ++i) px.push_back(static_cast<std::uint16_t>(i * 4099u + c * 77u));
    const Bytes file = fixtures::png16(w, h, c, px);
    EXPECT_TRUE(stbi_is_16_bit_from_memory(file.data(), int(file.size())));

    const Image im16 = decode16(file);
    ASSERT_TRUE(im16.ok) << stbi_failure_reason();
    EXPECT_EQ(im16.w, w);
    EXPECT_EQ(im16.h, h);
    EXPECT_EQ(im16.channels, c);
    EXPECT_EQ(im16.pixels16, px) << "channels=" << c;

    // 8-bit load: stbi__convert_16_to_8 keeps the high byte (v >> 8), no rounding.
    const Image im8 = decode(file);
    ASSERT_TRUE(im8.ok) << stbi_failure_reason();
    EXPECT_EQ(im8.channels, c);
    Bytes high;
    for (std::uint16_t v : px) high.push_back(static_cast<std::uint8_t>(v >> 8));
    EXPECT_EQ(im8.pixels, high) << "channels=" << c;
  }
}

TEST(ImageFixtures, GifLoadReturnsFirstOfTwoFrames) {
  const Bytes pal = {255, 0, 0, 0, 255, 0, 0, 0, 255};  // 3 colours -> 4-entry table
  const Bytes f0 = varied_indices(20, 10, 3, 1), f1 = varied_indices(20, 10, 3, 99);
  ASSERT_NE(f0, f1);
  const Bytes file = fixtures::gif(20, 10, {f0, f1}, pal);
  const Image im = decode(file);
  ASSERT_TRUE(im.ok) << stbi_failure_reason();
  EXPECT_EQ(im.w, 20);
  EXPECT_EQ(im.h, 10);
  EXPECT_EQ(im.channels, 4) << "stb always reports 4 channels for GIF";
  EXPECT_EQ(im.pixels, gif_rgba(f0, pal));

  // All frames through the animated-GIF entry point.
  int w = 0, h = 0, z = 0, c = 0;
  int* delays = nullptr;
  stbi_uc* p = stbi_load_gif_from_memory(file.data(), int(file.size()), &delays, &w, &h, &z, &c, 4);
  ASSERT_NE(p, nullptr) << stbi_failure_reason();
  EXPECT_EQ(z, 2);
  const std::size_t frame = 20 * 10 * 4;
  EXPECT_EQ(Bytes(p, p + frame), gif_rgba(f0, pal));
  EXPECT_EQ(Bytes(p + frame, p + 2 * frame), gif_rgba(f1, pal));
  EXPECT_EQ(delays[0], 100);  // 10 hundredths of a second, reported in ms
  stbi_image_free(p);
  stbi_image_free(delays);
}

TEST(ImageFixtures, GifCodeSizeGrowthAndTableResets) {
  struct Case { int w, h, colours; };
  // 1 colour (min code size 2), 2 colours, 200 colours with growth to 12 bits, and large
  // images whose 4096-entry table fills repeatedly (clear codes mid-stream).
  for (const Case& k : {Case{1, 1, 1}, Case{7, 3, 2}, Case{64, 64, 200}, Case{256, 256, 256},
                        Case{300, 200, 16}}) {
    const Bytes pal = random_palette(k.colours, k.colours);
    const Bytes idx = varied_indices(k.w, k.h, k.colours, k.w);
    const Image im = decode(fixtures::gif(k.w, k.h, {idx}, pal));
    ASSERT_TRUE(im.ok) << stbi_failure_reason() << " " << k.w << "x" << k.h;
    EXPECT_EQ(im.w, k.w);
    EXPECT_EQ(im.h, k.h);
    EXPECT_EQ(im.pixels, gif_rgba(idx, pal)) << k.w << "x" << k.h << " colours=" << k.colours;
  }
  // Long runs of one colour: LZW strings grow long and hit the KwKwK case.
  const Bytes pal = random_palette(4, 9);
  Bytes runs(100 * 50, 0);
  for (std::size_t i = 0; i < runs.size(); ++i) runs[i] = (i / 997) % 4;
  const Image im = decode(fixtures::gif(100, 50, {runs}, pal));
  ASSERT_TRUE(im.ok) << stbi_failure_reason();
  EXPECT_EQ(im.pixels, gif_rgba(runs, pal));
}

TEST(ImageFixtures, ProgressiveJpegDecodesWithinTolerance) {
  const Bytes file = fixtures::progressive_jpeg();
  ASSERT_EQ(file.size(), 522u);
  EXPECT_NE(jpeg_segment(file, 0xE0), std::string::npos) << "JFIF APP0";
  const std::size_t sof = jpeg_segment(file, 0xC2);  // SOF2 = progressive, Huffman
  ASSERT_NE(sof, std::string::npos);
  EXPECT_EQ(jpeg_segment(file, 0xC0), std::string::npos) << "no baseline SOF0";
  EXPECT_EQ(file[sof + 9], 3) << "3 components (YCbCr)";

  const Image im = decode(file);
  ASSERT_TRUE(im.ok) << stbi_failure_reason();
  EXPECT_EQ(im.w, 16);
  EXPECT_EQ(im.h, 16);
  EXPECT_EQ(im.channels, 3);
  const int want[3] = {200, 60, 30};
  int max_diff = 0;
  for (std::size_t i = 0; i < im.pixels.size(); ++i)
    max_diff = std::max(max_diff, std::abs(int(im.pixels[i]) - want[i % 3]));
  std::printf("  progressive JPEG q95: pixel 0 %s, max abs diff %d to (200,60,30)\n",
              first_pixel(im).c_str(), max_diff);
  EXPECT_LE(max_diff, 2);
  // Observed with Debian's stb_image 2.27 (and Pillow): every pixel is (199, 60, 29).
  EXPECT_TRUE(all_pixels_are(im, {199, 60, 29})) << first_pixel(im);
}

TEST(ImageFixtures, CmykJpegHeader) {
  const Bytes file = fixtures::cmyk_jpeg();
  ASSERT_EQ(file.size(), 362u);
  EXPECT_EQ(jpeg_segment(file, 0xE0), std::string::npos) << "no JFIF APP0";
  const std::size_t app14 = jpeg_segment(file, 0xEE);
  ASSERT_NE(app14, std::string::npos);
  // Length 14, then "Adobe", version 100 (0x00 0x64), flags0 (2), flags1 (2), transform 0
  // (= CMYK, not YCCK) at payload offset 11.
  EXPECT_EQ((file[app14 + 2] << 8) | file[app14 + 3], 14);
  EXPECT_EQ(std::string(file.begin() + app14 + 4, file.begin() + app14 + 10), std::string("Adobe\0", 6));
  EXPECT_EQ(file[app14 + 15], 0);
  const std::size_t sof = jpeg_segment(file, 0xC0);  // baseline
  ASSERT_NE(sof, std::string::npos);
  EXPECT_EQ(file[sof + 9], 4) << "4 components";
  EXPECT_EQ(std::string(file.begin() + sof + 10, file.begin() + sof + 22),
            std::string("C\x11\0M\x11\0Y\x11\0K\x11\0", 12))
      << "component ids 'C','M','Y','K', 1x1 sampling, quant table 0";
}

TEST(ImageFixtures, CmykJpegStbConvertsAdobeCmykToRgb) {
  // Debian's stb_image 2.27 honours APP14 transform 0: R = C'*K'/255 etc. on the stored
  // (inverted) samples, reports 3 channels (never 4) and matches Pillow's
  // Image.open(f).convert('RGB') exactly: (198, 63, 30) for (c,m,y,k) = (20,180,220,40).
  const Bytes file = fixtures::cmyk_jpeg();
  int w = 0, h = 0, c = 0;
  ASSERT_TRUE(stbi_info_from_memory(file.data(), int(file.size()), &w, &h, &c)) << stbi_failure_reason();
  EXPECT_EQ(w, 16);
  EXPECT_EQ(h, 16);
  EXPECT_EQ(c, 3);

  const Image im = decode(file);
  ASSERT_TRUE(im.ok) << stbi_failure_reason();
  EXPECT_EQ(im.w, 16);
  EXPECT_EQ(im.h, 16);
  EXPECT_EQ(im.channels, 3);
  EXPECT_TRUE(all_pixels_are(im, {198, 63, 30})) << first_pixel(im);

  // Requesting 4 channels gives opaque RGBA, not the CMYK planes.
  stbi_uc* p = stbi_load_from_memory(file.data(), int(file.size()), &w, &h, &c, 4);
  ASSERT_NE(p, nullptr) << stbi_failure_reason();
  EXPECT_EQ(c, 3);
  Image rgba;
  rgba.w = w, rgba.h = h, rgba.channels = 4;
  rgba.pixels.assign(p, p + 16 * 16 * 4);
  stbi_image_free(p);
  EXPECT_TRUE(all_pixels_are(rgba, {198, 63, 30, 255})) << first_pixel(rgba);
}

TEST(ImageFixtures, CmykJpegStbDependsOnAdobeTransform) {
  const Bytes file = fixtures::cmyk_jpeg();
  const std::size_t app14 = jpeg_segment(file, 0xEE);
  ASSERT_NE(app14, std::string::npos);

  // Without APP14 stb treats the 4 components as YCbCr + ignored 4th channel: wrong colours,
  // no error (Pillow/libjpeg still assume CMYK here and give (198, 63, 30)).
  Bytes stripped = file;
  stripped.erase(stripped.begin() + app14, stripped.begin() + app14 + 2 + 14);
  Image im = decode(stripped);
  ASSERT_TRUE(im.ok) << stbi_failure_reason();
  EXPECT_EQ(im.channels, 3);
  EXPECT_TRUE(all_pixels_are(im, {105, 255, 141})) << first_pixel(im);

  // Transform 1 (YCbCr) on 4 components: same YCbCr-and-drop-K path.
  Bytes t1 = file;
  t1[app14 + 15] = 1;
  im = decode(t1);
  ASSERT_TRUE(im.ok) << stbi_failure_reason();
  EXPECT_TRUE(all_pixels_are(im, {105, 255, 141})) << first_pixel(im);

  // Transform 2 (YCCK): stb converts YCC->RGB, inverts and multiplies by K; Pillow decodes
  // the same patched file to (126, 0, 96) too.
  Bytes t2 = file;
  t2[app14 + 15] = 2;
  im = decode(t2);
  ASSERT_TRUE(im.ok) << stbi_failure_reason();
  EXPECT_EQ(im.channels, 3);
  EXPECT_TRUE(all_pixels_are(im, {126, 0, 96})) << first_pixel(im);
}

TEST(ImageFixtures, TruncatedPngFailsToDecode) {
  const Bytes full = fixtures::png8(16, 16, 3, fixtures::pattern(16, 16, 3, 1));
  ASSERT_TRUE(decode(full).ok);
  const Bytes cut = fixtures::truncated(full, full.size() / 2);
  EXPECT_EQ(cut.size(), full.size() / 2);
  EXPECT_TRUE(std::equal(cut.begin(), cut.end(), full.begin()));
  EXPECT_FALSE(decode(cut).ok);
  EXPECT_FALSE(decode(fixtures::truncated(full, 20)).ok);
  EXPECT_THROW(fixtures::truncated(full, full.size() + 1), std::runtime_error);
}

TEST(ImageFixtures, PngHeaderClaimingHugeSize) {
  const Bytes file = fixtures::png_header_claiming(100000, 100000);
  // Signature, IHDR length 13, width/height big-endian, depth 8, colour type 2, IEND at the end.
  ASSERT_EQ(file.size(), 8u + 25 + 12);
  EXPECT_EQ(file[12], 'I');
  EXPECT_EQ((file[16] << 24) | (file[17] << 16) | (file[18] << 8) | file[19], 100000);
  EXPECT_EQ((file[20] << 24) | (file[21] << 16) | (file[22] << 8) | file[23], 100000);
  EXPECT_EQ(file[24], 8);
  EXPECT_EQ(file[25], 2);
  EXPECT_EQ(std::string(file.end() - 8, file.end() - 4), "IEND");

  // stb refuses it while parsing IHDR (w * h * channels > 2^30 -> "too large"), even in the
  // header-only scan, so stbi_info fails instead of reporting 100000x100000 (its failure
  // reason is then the generic one left by trying the other formats).
  int w = 0, h = 0, c = 0;
  EXPECT_FALSE(stbi_info_from_memory(file.data(), int(file.size()), &w, &h, &c));
  EXPECT_FALSE(decode(file).ok);
  EXPECT_STREQ(stbi_failure_reason(), "too large");

  // A claim under stb's limit is reported as-is (the CRC and layout are valid), and loading
  // fails cleanly for lack of image data.
  const Bytes big = fixtures::png_header_claiming(16000, 16000);
  ASSERT_TRUE(stbi_info_from_memory(big.data(), int(big.size()), &w, &h, &c));
  EXPECT_EQ(w, 16000);
  EXPECT_EQ(h, 16000);
  EXPECT_EQ(c, 3);
  EXPECT_FALSE(decode(big).ok);
}

TEST(ImageFixtures, WriteFileRoundTrips) {
  const std::string path = ::testing::TempDir() + "image_fixtures_roundtrip.png";
  const Bytes px = fixtures::pattern(5, 4, 4, 11);
  fixtures::write_file(path, fixtures::png8(5, 4, 4, px));
  int w = 0, h = 0, c = 0;
  stbi_uc* p = stbi_load(path.c_str(), &w, &h, &c, 0);
  ASSERT_NE(p, nullptr) << stbi_failure_reason();
  EXPECT_EQ(Bytes(p, p + 5 * 4 * 4), px);
  stbi_image_free(p);
  std::remove(path.c_str());
  EXPECT_THROW(fixtures::write_file("/nonexistent-dir/x.png", px), std::runtime_error);
}

TEST(ImageFixtures, BadArgumentsThrow) {
  const Bytes px(12, 0);
  EXPECT_THROW(fixtures::png8(2, 2, 5, px), std::runtime_error);    // channels
  EXPECT_THROW(fixtures::png8(2, 2, 4, px), std::runtime_error);    // buffer size
  EXPECT_THROW(fixtures::bmp(0, 4, 3, px), std::runtime_error);     // size
  EXPECT_THROW(fixtures::jpeg(2, 2, 3, px, 0), std::runtime_error);  // quality
  EXPECT_THROW(fixtures::png16(2, 2, 3, std::vector<std::uint16_t>(11)), std::runtime_error);
  EXPECT_THROW(fixtures::png_palette(2, 2, {0, 1, 2, 3}, {1, 2, 3}), std::runtime_error);  // index
  EXPECT_THROW(fixtures::png_palette(1, 1, {0}, {1, 2}), std::runtime_error);  // not triples
  EXPECT_THROW(fixtures::png_palette(1, 1, {0}, {1, 2, 3}, {1, 2}), std::runtime_error);  // tRNS
  EXPECT_THROW(fixtures::gif(2, 1, {}, {1, 2, 3}), std::runtime_error);  // no frames
  EXPECT_THROW(fixtures::gif(2, 1, {{0, 0}, {0}}, {1, 2, 3}), std::runtime_error);  // frame size
  EXPECT_THROW(fixtures::gif(70000, 1, {Bytes(70000)}, {1, 2, 3}), std::runtime_error);
  EXPECT_THROW(fixtures::png_header_claiming(0, 5), std::runtime_error);
}

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "gan/datasets.h"
#include "gan/decode.h"
#include "gan/idx.h"
#include "gan/image.h"
#include "gan/loader.h"
#include "image_fixtures.h"
#include "test_util.h"

using fixtures::Bytes;
using testutil::expect_user_error;
using testutil::TempDir;

namespace {

gan::Image solid(int w, int h, std::vector<std::uint8_t> px) {
  gan::Image img;
  img.width = w;
  img.height = h;
  img.channels = static_cast<int>(px.size());
  for (int i = 0; i < w * h; ++i) img.pixels.insert(img.pixels.end(), px.begin(), px.end());
  return img;
}

Bytes solid_bytes(int w, int h, std::vector<std::uint8_t> px) { return solid(w, h, std::move(px)).pixels; }

// IDX images file: n images of rows x cols, image i filled with value i.
Bytes idx_bytes(int n, int rows, int cols) {
  Bytes px;
  for (int i = 0; i < n; ++i) px.insert(px.end(), static_cast<size_t>(rows) * cols, static_cast<std::uint8_t>(i));
  return fixtures::idx_images(n, rows, cols, px);
}

void write_gz(const std::string& path, const Bytes& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  gzclose(f);
}

// Decoding on the fly (FolderSource); the data cache over the same folders is tested in test_cache.cpp.
gan::DataConfig folder_config(const std::string& dir) {
  gan::DataConfig d;
  d.source = "folder";
  d.path = dir;
  d.cache = "off";
  return d;
}

// Every pixel of image `i` (channels x size x size bytes) must be within `tol` of `rgb`.
void expect_colour(gan::ImageSource& src, std::int64_t i, std::vector<int> rgb, int tol, const std::string& what) {
  const int c = src.channels(), s = src.image_size();
  std::vector<std::uint8_t> buf(static_cast<size_t>(c * s * s));
  ASSERT_TRUE(src.load(i, buf.data())) << what;
  int worst = 0;
  for (int ch = 0; ch < c; ++ch)
    for (int k = 0; k < s * s; ++k) worst = std::max(worst, std::abs(buf[ch * s * s + k] - rgb[ch]));
  std::printf("%-28s max abs diff %d\n", what.c_str(), worst);
  EXPECT_LE(worst, tol) << what;
}

}  // namespace

TEST(PrepareImage, ColourToGrayUsesLuma) {
  auto out = gan::prepare_image(solid(4, 4, {200, 100, 50}), 1, 4, {255, 255, 255});
  EXPECT_EQ(out.channels, 1);
  EXPECT_EQ(out.pixels[0], 124);  // 0.299*200 + 0.587*100 + 0.114*50 = 124.2
}

TEST(PrepareImage, GrayToColourReplicates) {
  auto out = gan::prepare_image(solid(4, 4, {77}), 3, 4, {0, 0, 0});
  EXPECT_EQ(out.pixels, solid_bytes(4, 4, {77, 77, 77}));
}

TEST(PrepareImage, AlphaIsCompositedOnBackground) {
  EXPECT_EQ(gan::prepare_image(solid(2, 2, {255, 0, 0, 0}), 3, 2, {0, 255, 0}).pixels, solid_bytes(2, 2, {0, 255, 0}));
  EXPECT_EQ(gan::prepare_image(solid(2, 2, {255, 0, 0, 255}), 3, 2, {0, 255, 0}).pixels,
            solid_bytes(2, 2, {255, 0, 0}));
  // 50% red over blue.
  auto half = gan::prepare_image(solid(2, 2, {255, 0, 0, 128}), 3, 2, {0, 0, 255}).pixels;
  EXPECT_EQ(half[0], 128);
  EXPECT_EQ(half[1], 0);
  EXPECT_EQ(half[2], 127);
  // Transparent black gray+alpha on white is white.
  EXPECT_EQ(gan::prepare_image(solid(2, 2, {0, 0}), 1, 2, {255, 255, 255}).pixels, solid_bytes(2, 2, {255}));
}

TEST(PrepareImage, CentreCropsToSquare) {
  // 12x8: two red columns, eight green, two blue -> the centre 8x8 is all green.
  gan::Image img;
  img.width = 12;
  img.height = 8;
  img.channels = 3;
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 12; ++x) {
      std::vector<std::uint8_t> px = x < 2 ? std::vector<std::uint8_t>{255, 0, 0}
                                   : x >= 10 ? std::vector<std::uint8_t>{0, 0, 255}
                                             : std::vector<std::uint8_t>{0, 255, 0};
      img.pixels.insert(img.pixels.end(), px.begin(), px.end());
    }
  EXPECT_EQ(gan::prepare_image(img, 3, 8, {0, 0, 0}).pixels, solid_bytes(8, 8, {0, 255, 0}));
}

TEST(PrepareImage, ResizeKeepsFlatColourAndHalvesSize) {
  auto out = gan::prepare_image(solid(64, 48, {10, 120, 240}), 3, 16, {0, 0, 0});
  ASSERT_EQ(out.width, 16);
  ASSERT_EQ(out.height, 16);
  int worst = 0;
  for (size_t i = 0; i < out.pixels.size(); ++i) worst = std::max(worst, std::abs(out.pixels[i] - std::vector<int>{10, 120, 240}[i % 3]));
  EXPECT_LE(worst, 1);
  // Upscaling a 2x2 checkerboard keeps the left-top quadrant dark and the right-top bright.
  gan::Image cb;
  cb.width = cb.height = 2;
  cb.channels = 1;
  cb.pixels = {0, 255, 255, 0};
  auto up = gan::prepare_image(cb, 1, 8, {0, 0, 0});
  EXPECT_LT(up.pixels[0], 40);
  EXPECT_GT(up.pixels[7], 215);
}

TEST(Idx, ReadsRawAndGzip) {
  TempDir dir;
  Bytes b = idx_bytes(3, 4, 5);
  fixtures::write_file(dir / "raw-idx3-ubyte", b);
  write_gz(dir / "gz-idx3-ubyte.gz", b);
  for (const char* name : {"raw-idx3-ubyte", "gz-idx3-ubyte.gz"}) {
    gan::IdxArray a = gan::read_idx(dir / name);
    EXPECT_EQ(a.dims, (std::vector<std::int64_t>{3, 4, 5})) << name;
    ASSERT_EQ(a.data.size(), 60u);
    EXPECT_EQ(a.data[0], 0);
    EXPECT_EQ(a.data[20], 1);
    EXPECT_EQ(a.data[59], 2);
  }
}

TEST(Idx, RejectsTruncatedAndForeignFiles) {
  TempDir dir;
  Bytes b = idx_bytes(3, 4, 5);
  fixtures::write_file(dir / "short", fixtures::truncated(b, b.size() - 7));
  expect_user_error([&] { gan::read_idx(dir / "short"); }, gan::kExitData, {"short", "header promises 60"});
  Bytes gz;
  write_gz(dir / "full.gz", b);
  std::ifstream in(dir / "full.gz", std::ios::binary);
  gz.assign(std::istreambuf_iterator<char>(in), {});
  fixtures::write_file(dir / "cut.gz", fixtures::truncated(gz, gz.size() / 2));
  expect_user_error([&] { gan::read_idx(dir / "cut.gz"); }, gan::kExitData, {"cut.gz"});
  fixtures::write_file(dir / "text", Bytes{'h', 'e', 'l', 'l', 'o', '\n'});
  expect_user_error([&] { gan::read_idx(dir / "text"); }, gan::kExitData, {"not an IDX file"});
  expect_user_error([&] { gan::read_idx(dir / "missing"); }, gan::kExitData, {"missing", "cannot open"});
}

TEST(Idx, SourceResizesAndConverts) {
  TempDir dir;
  fixtures::write_file(dir / "imgs", idx_bytes(5, 28, 28));
  gan::DataConfig d;
  d.source = "idx";
  d.path = dir / "imgs";
  auto src = gan::open_dataset(d, 32, 3);
  ASSERT_EQ(src->size(), 5);
  expect_colour(*src, 4, {4, 4, 4}, 0, "idx image 4 as RGB 32x32");
  d.max_images = 2;
  EXPECT_EQ(gan::open_dataset(d, 16, 1)->size(), 2);
}

TEST(Idx, FashionMnistFromDebianPackage) {
  ASSERT_TRUE(std::filesystem::exists(gan::kFashionMnistDir))
      << "install dataset-fashion-mnist (scripts/setup.sh does)";
  gan::DataConfig d;  // defaults: fashion-mnist, train split
  auto src = gan::open_dataset(d, 32, 1);
  EXPECT_EQ(src->size(), 60000);
  d.split = "test";
  EXPECT_EQ(gan::open_dataset(d, 16, 1)->size(), 10000);
}

TEST(Folder, ReadsEveryFormatAndMode) {
  TempDir dir;
  std::filesystem::create_directories(dir.path / "sub" / "z_deeper");
  const int s = 16;
  // Sorted order of the file names decides the index.
  fixtures::write_file(dir / "a_gray.png", fixtures::png8(s, s, 1, solid_bytes(s, s, {90})));
  fixtures::write_file(dir / "b_gray_alpha.png", fixtures::png8(s, s, 2, solid_bytes(s, s, {0, 0})));
  fixtures::write_file(dir / "c_rgb.png", fixtures::png8(s, s, 3, solid_bytes(s, s, {10, 20, 30})));
  fixtures::write_file(dir / "d_rgba.PNG", fixtures::png8(s, s, 4, solid_bytes(s, s, {200, 0, 0, 255})));
  fixtures::write_file(dir / "e_palette.png",
                       fixtures::png_palette(s, s, Bytes(s * s, 1), {0, 0, 0, 40, 80, 160}, {0, 255}));
  fixtures::write_file(dir / "f_16bit.png",
                       fixtures::png16(s, s, 3, std::vector<std::uint16_t>(s * s * 3, 0xABCD)));
  fixtures::write_file(dir / "g_photo.jpg", fixtures::jpeg(s, s, 3, solid_bytes(s, s, {60, 120, 180})));
  fixtures::write_file(dir / "sub/h_bitmap.bmp", fixtures::bmp(s, s, 3, solid_bytes(s, s, {1, 2, 3})));
  fixtures::write_file(dir / "sub/i_targa.tga", fixtures::tga(s, s, 3, solid_bytes(s, s, {4, 5, 6})));
  fixtures::write_file(dir / "sub/z_deeper/j_anim.gif",
                       fixtures::gif(s, s, {Bytes(s * s, 0), Bytes(s * s, 1)}, {250, 10, 10, 10, 10, 250}));
  fixtures::write_file(dir / "sub/k_wide.png", fixtures::png8(2 * s, s, 3, solid_bytes(2 * s, s, {7, 8, 9})));
  fixtures::write_file(dir / "notes.txt", Bytes{'x'});  // not an image extension: ignored
  auto src = gan::open_dataset(folder_config(dir.str()), s, 3);
  ASSERT_EQ(src->size(), 11);
  expect_colour(*src, 0, {90, 90, 90}, 0, "gray png");
  expect_colour(*src, 1, {255, 255, 255}, 0, "transparent gray+alpha png");
  expect_colour(*src, 2, {10, 20, 30}, 0, "rgb png");
  expect_colour(*src, 3, {200, 0, 0}, 0, "rgba png (opaque)");
  expect_colour(*src, 4, {40, 80, 160}, 0, "palette png with tRNS");
  expect_colour(*src, 5, {0xAB, 0xAB, 0xAB}, 0, "16-bit png");
  expect_colour(*src, 6, {60, 120, 180}, 4, "jpeg");
  expect_colour(*src, 7, {1, 2, 3}, 0, "bmp (subfolder)");
  expect_colour(*src, 8, {4, 5, 6}, 0, "tga");
  expect_colour(*src, 9, {7, 8, 9}, 1, "wide png, cropped");
  expect_colour(*src, 10, {250, 10, 10}, 0, "gif first frame (subfolder)");
  EXPECT_EQ(src->bad_count(), 0);
  // The same folder as grayscale.
  auto gray = gan::open_dataset(folder_config(dir.str()), 8, 1);
  expect_colour(*gray, 2, {19}, 1, "rgb png as gray 8x8");  // 0.299*10 + 0.587*20 + 0.114*30 = 18.2
}

TEST(Folder, CorruptFilesAreSkippedAndCounted) {
  TempDir dir;
  Bytes good = fixtures::png8(8, 8, 3, solid_bytes(8, 8, {1, 2, 3}));
  fixtures::write_file(dir / "a_good.png", good);
  fixtures::write_file(dir / "b_truncated.png", fixtures::truncated(good, good.size() / 2));
  fixtures::write_file(dir / "c_text.png", Bytes{'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
  fixtures::write_file(dir / "d_empty.jpg", Bytes{});
  fixtures::write_file(dir / "e_huge.png", fixtures::png_header_claiming(16000, 16000));
  fixtures::write_file(dir / "f_good.png", good);
  auto src = gan::open_dataset(folder_config(dir.str()), 8, 3);
  ASSERT_EQ(src->size(), 6);
  std::vector<std::uint8_t> buf(3 * 8 * 8);
  EXPECT_TRUE(src->load(0, buf.data()));
  EXPECT_FALSE(src->load(1, buf.data()));
  EXPECT_FALSE(src->load(2, buf.data()));
  EXPECT_FALSE(src->load(3, buf.data()));
  EXPECT_FALSE(src->load(4, buf.data()));
  EXPECT_FALSE(src->load(4, buf.data()));  // counted once
  EXPECT_TRUE(src->load(5, buf.data()));
  EXPECT_EQ(src->bad_count(), 4);
}

TEST(Folder, HugeHeaderIsRefusedBeforeDecoding) {
  gan::Image img;
  std::string error;
  EXPECT_FALSE(gan::decode_image(fixtures::png_header_claiming(16000, 16000), img, error));
  EXPECT_NE(error.find("16000x16000"), std::string::npos) << error;
  EXPECT_FALSE(gan::decode_image(fixtures::png_header_claiming(100000, 100000), img, error));
}

TEST(Folder, MissingOrEmptyFolderIsAnError) {
  TempDir dir;
  expect_user_error([&] { gan::open_dataset(folder_config(dir / "nope"), 16, 3); }, gan::kExitData,
                    {"nope", "is not a folder"});
  fixtures::write_file(dir / "readme.txt", Bytes{'x'});
  expect_user_error([&] { gan::open_dataset(folder_config(dir.str()), 16, 3); }, gan::kExitData,
                    {"holds no .jpg"});
}

TEST(Loader, EpochOrderIsASeededPermutation) {
  auto a = gan::BatchLoader::epoch_order(1000, 7, 0);
  auto b = gan::BatchLoader::epoch_order(1000, 7, 0);
  auto c = gan::BatchLoader::epoch_order(1000, 7, 1);
  auto d = gan::BatchLoader::epoch_order(1000, 8, 0);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  EXPECT_EQ(std::set<std::int64_t>(a.begin(), a.end()).size(), 1000u);
  EXPECT_EQ(*std::min_element(a.begin(), a.end()), 0);
  EXPECT_EQ(*std::max_element(a.begin(), a.end()), 999);
}

namespace {
// Decodes which IDX images (image i has value i) a batch holds.
std::vector<int> ids(const gan::Batch& b) {
  std::vector<int> out;
  for (int64_t i = 0; i < b.images.size(0); ++i)
    out.push_back(static_cast<int>(std::lround((b.images[i][0][0][0].item<float>() + 1) * 127.5)));
  return out;
}
}  // namespace

TEST(Loader, BatchesCoverEpochsAndResumeExactly) {
  TempDir dir;
  fixtures::write_file(dir / "imgs", idx_bytes(50, 8, 8));
  gan::DataConfig d;
  d.source = "idx";
  d.path = dir / "imgs";
  auto src = gan::open_dataset(d, 8, 1);
  gan::BatchLoader loader(*src, 16, 3, {}, 1);
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  std::vector<std::vector<int>> seen;
  std::set<int> epoch0;
  for (int k = 0; k < 5; ++k) {
    gan::Batch b = loader.next();
    ASSERT_EQ(b.images.sizes(), (std::vector<int64_t>{16, 1, 8, 8}));
    EXPECT_GE(b.images.min().item<float>(), -1.0f);
    EXPECT_LE(b.images.max().item<float>(), 1.0f);
    seen.push_back(ids(b));
    if (k < 3) epoch0.insert(seen.back().begin(), seen.back().end());
    EXPECT_EQ(b.after.epoch, k < 3 ? 0 : 1);
  }
  EXPECT_EQ(epoch0.size(), 48u);  // 3 full batches, no repeats; 2 images dropped
  // A loader started where batch 2 ended yields batches 3 and 4 again.
  gan::BatchLoader resumed(*src, 16, 3, gan::LoaderPosition{0, 32}, 1);
  EXPECT_EQ(ids(resumed.next()), seen[2]);
  EXPECT_EQ(ids(resumed.next()), seen[3]);
}

TEST(Loader, SkipsBadFilesAndFailsWhenNothingDecodes) {
  TempDir dir;
  for (int i = 0; i < 6; ++i)
    fixtures::write_file(dir / ("good" + std::to_string(i) + ".png"),
                         fixtures::png8(8, 8, 1, solid_bytes(8, 8, {static_cast<std::uint8_t>(i)})));
  for (int i = 0; i < 4; ++i) fixtures::write_file(dir / ("bad" + std::to_string(i) + ".png"), Bytes{1, 2, 3});
  auto src = gan::open_dataset(folder_config(dir.str()), 8, 1);
  gan::BatchLoader loader(*src, 3, 1, {}, 2);
  for (int k = 0; k < 4; ++k) {
    gan::Batch b = loader.next();  // only the 6 good images can appear
    for (int id : ids(b)) EXPECT_LT(id, 6);
  }
  EXPECT_EQ(src->bad_count(), 4);

  TempDir bad;
  for (int i = 0; i < 5; ++i) fixtures::write_file(bad / ("x" + std::to_string(i) + ".jpg"), Bytes{0});
  auto all_bad = gan::open_dataset(folder_config(bad.str()), 8, 1);
  gan::BatchLoader failing(*all_bad, 2, 1, {}, 1);
  expect_user_error([&] { failing.next(); }, gan::kExitData, {"no batch of 2 decodable images"});
  expect_user_error([&] { gan::BatchLoader(*all_bad, 8, 1, {}, 1); }, gan::kExitData, {"fewer than train.batch_size"});
}

TEST(BadImages, EveryKindIsSkippedWithAReasonOrDecodedRight) {
  TempDir dir;
  const int s = 16;
  Bytes jpg = fixtures::jpeg(s, s, 3, solid_bytes(s, s, {60, 120, 180}));
  Bytes cmyk = fixtures::cmyk_jpeg();
  // The same CMYK file without its Adobe APP14 segment: stb would silently return wrong colours.
  Bytes no_app14 = cmyk;
  for (size_t i = 2; i + 4 < no_app14.size(); i += 2 + ((no_app14[i + 2] << 8) | no_app14[i + 3]))
    if (no_app14[i + 1] == 0xEE) {
      no_app14.erase(no_app14.begin() + i, no_app14.begin() + i + 2 + ((no_app14[i + 2] << 8) | no_app14[i + 3]));
      break;
    }
  ASSERT_LT(no_app14.size(), cmyk.size());
  fixtures::write_file(dir / "a_progressive.jpg", fixtures::progressive_jpeg());
  fixtures::write_file(dir / "b_cmyk.jpg", cmyk);
  fixtures::write_file(dir / "c_cmyk_no_marker.jpg", no_app14);
  fixtures::write_file(dir / "d_truncated.jpg", fixtures::truncated(jpg, jpg.size() / 2));
  fixtures::write_file(dir / "e_one_pixel.gif", fixtures::gif(1, 1, {Bytes{0}}, {0, 0, 0}));
  fixtures::write_file(dir / "f_huge.png", fixtures::png_header_claiming(100000, 100000));
  fixtures::write_file(dir / "g_zero.png", Bytes{});
  auto src = gan::open_dataset(folder_config(dir.str()), s, 3);
  expect_colour(*src, 0, {199, 60, 29}, 2, "progressive jpeg");
  expect_colour(*src, 1, {198, 63, 30}, 2, "adobe cmyk jpeg (as PIL)");
  std::vector<std::uint8_t> buf(3 * s * s);
  for (int i = 2; i <= 6; ++i) EXPECT_FALSE(src->load(i, buf.data())) << i;
  EXPECT_EQ(src->bad_count(), 5);
  // The reasons, as the warnings print them.
  gan::Image img;
  std::string error;
  EXPECT_FALSE(gan::decode_image(no_app14, img, error));
  EXPECT_NE(error.find("CMYK"), std::string::npos) << error;
  EXPECT_FALSE(gan::decode_image(fixtures::png_header_claiming(100000, 100000), img, error));
  EXPECT_NE(error.find("header claims 100000x100000"), std::string::npos) << error;
  std::vector<std::uint8_t> huge_jpeg = jpg;  // patch the SOF0 size fields to 60000x60000
  for (size_t i = 2; i + 9 < huge_jpeg.size(); i += 2 + ((huge_jpeg[i + 2] << 8) | huge_jpeg[i + 3]))
    if (huge_jpeg[i + 1] == 0xC0) {
      huge_jpeg[i + 5] = huge_jpeg[i + 7] = 0xEA;
      huge_jpeg[i + 6] = huge_jpeg[i + 8] = 0x60;
      break;
    }
  EXPECT_FALSE(gan::decode_image(huge_jpeg, img, error));
  EXPECT_NE(error.find("header claims 60000x60000"), std::string::npos) << error;
  EXPECT_TRUE(gan::decode_image(fixtures::gif(1, 1, {Bytes{0}}, {0, 0, 0}), img, error));  // decodes, but:
  auto tiny = gan::open_dataset(folder_config(dir.str()), s, 3);
  EXPECT_FALSE(tiny->load(4, buf.data()));  // 1x1 is below data.min_image_size (8)
}

TEST(BadImages, MostlyBadFolderStopsAboveTheConfiguredFraction) {
  TempDir dir;
  for (int i = 0; i < 30; ++i) {
    const bool good = i % 4 == 0;  // 8 good, 22 bad
    fixtures::write_file(dir / ("img" + std::to_string(100 + i) + ".png"),
                         good ? fixtures::png8(8, 8, 1, solid_bytes(8, 8, {9})) : Bytes{'b', 'a', 'd'});
  }
  gan::DataConfig d = folder_config(dir.str());
  auto src = gan::open_dataset(d, 8, 1);
  gan::BatchLoader loader(*src, 4, 1, {}, 1);
  expect_user_error([&] { for (int k = 0; k < 10; ++k) loader.next(); }, gan::kExitData,
                    {"could not be decoded, more than data.max_bad_fraction = 0.50", dir.str()});
  d.max_bad_fraction = 0.9;
  auto lenient = gan::open_dataset(d, 8, 1);
  gan::BatchLoader ok(*lenient, 4, 1, {}, 1);
  for (int k = 0; k < 10; ++k) EXPECT_EQ(ok.next().images.size(0), 4);
}

TEST(BadImages, TruncatedJpegIsRefusedWhateverTheDecoderVersion) {
  // Newer stb_image versions (Debian trixie's) decode a JPEG cut short without an error, filling the rest with
  // grey; the loader refuses it itself. Data after the end-of-image marker is fine, and an EXIF thumbnail's
  // end-of-image marker before the main image does not count as the file's.
  using Bytes = std::vector<std::uint8_t>;
  const int s = 24;
  Bytes jpg = fixtures::jpeg(s, s, 3, fixtures::pattern(s, s, 3, 3));
  ASSERT_EQ(jpg[jpg.size() - 2], 0xFF);
  ASSERT_EQ(jpg[jpg.size() - 1], 0xD9);
  gan::Image img;
  std::string error;
  ASSERT_TRUE(gan::decode_image(jpg, img, error)) << error;
  const Bytes pixels = img.pixels;

  for (size_t keep : {jpg.size() - 2, jpg.size() * 3 / 4, jpg.size() / 2}) {
    EXPECT_FALSE(gan::decode_image(fixtures::truncated(jpg, keep), img, error)) << keep;
    EXPECT_NE(error.find("truncated JPEG"), std::string::npos) << error;
  }
  Bytes trailer = jpg;  // e.g. a motion photo: a video appended after the image
  for (int i = 0; i < 1000; ++i) trailer.push_back(static_cast<std::uint8_t>(i * 7));
  ASSERT_TRUE(gan::decode_image(trailer, img, error)) << error;
  EXPECT_EQ(img.pixels, pixels);

  // An APP1 segment holding FF D9 (as an embedded thumbnail does), then the image cut short.
  Bytes app1 = {0xFF, 0xE1, 0x00, 0x08, 'E', 'x', 'i', 'f', 0xFF, 0xD9};
  Bytes with_thumb;  // SOI, the APP1, then the rest of the file
  for (size_t i = 0; i < jpg.size(); ++i) {
    with_thumb.push_back(jpg[i]);
    if (i == 1) for (std::uint8_t c : app1) with_thumb.push_back(c);
  }
  ASSERT_TRUE(gan::decode_image(with_thumb, img, error)) << error;
  EXPECT_EQ(img.pixels, pixels);
  EXPECT_FALSE(gan::decode_image(fixtures::truncated(with_thumb, with_thumb.size() - 40), img, error));
  EXPECT_NE(error.find("truncated JPEG"), std::string::npos) << error;
}

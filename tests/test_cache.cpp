// Tests of the preprocessed data cache (cache.h) and of gan-data (data_tool.h).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gan/cache.h"
#include "gan/checkpoint.h"
#include "gan/data_tool.h"
#include "gan/datasets.h"
#include "gan/decode.h"
#include "gan/image.h"
#include "gan/loader.h"
#include "gan/models.h"
#include "gan/trainer.h"
#include "image_fixtures.h"
#include "test_util.h"

namespace fs = std::filesystem;
using fixtures::Bytes;
using testutil::expect_user_error;
using testutil::TempDir;
using testutil::run;

namespace {

Bytes solid(int w, int h, std::vector<std::uint8_t> px) {
  Bytes b;
  for (int i = 0; i < w * h; ++i) b.insert(b.end(), px.begin(), px.end());
  return b;
}

// A folder of varied images (several formats and modes, sizes, one wide) named img_000.. plus `bad` text files.
void write_images(const TempDir& dir, int n, int bad = 0, const std::string& sub = "") {
  const std::string base = sub.empty() ? dir.str() : dir / sub;
  fs::create_directories(base);
  for (int i = 0; i < n; ++i) {
    char name[32];
    const unsigned seed = static_cast<unsigned>(i * 7 + 3);
    const int w = 20 + (i % 3) * 10, h = 20 + (i % 2) * 8;
    switch (i % 4) {
      case 0:
        std::snprintf(name, sizeof name, "/img_%03d.jpg", i);
        fixtures::write_file(base + name, fixtures::jpeg(w, h, 3, fixtures::pattern(w, h, 3, seed)));
        break;
      case 1:
        std::snprintf(name, sizeof name, "/img_%03d.png", i);
        fixtures::write_file(base + name, fixtures::png8(w, h, 4, fixtures::pattern(w, h, 4, seed)));
        break;
      case 2:
        std::snprintf(name, sizeof name, "/img_%03d.png", i);
        fixtures::write_file(base + name, fixtures::png8(w, h, 1, fixtures::pattern(w, h, 1, seed)));
        break;
      default:
        std::snprintf(name, sizeof name, "/img_%03d.bmp", i);
        fixtures::write_file(base + name, fixtures::bmp(w, h, 3, fixtures::pattern(w, h, 3, seed)));
    }
  }
  for (int i = 0; i < bad; ++i)
    fixtures::write_file(base + "/zbad_" + std::to_string(i) + ".png", Bytes{'n', 'o', 'p', 'e'});
}

gan::DataConfig folder(const std::string& dir, const std::string& cache) {
  gan::DataConfig d;
  d.source = "folder";
  d.path = dir;
  d.cache = cache;
  return d;
}

std::vector<std::uint8_t> image(gan::ImageSource& src, std::int64_t i, bool* ok = nullptr) {
  std::vector<std::uint8_t> buf(static_cast<size_t>(src.channels()) * src.image_size() * src.image_size(), 0);
  const bool loaded = src.load(i, buf.data());
  if (ok) *ok = loaded;
  return buf;
}

// The cache of `d` opened (or built) at size x size with `channels`.
gan::CacheOutcome open_cache(const gan::DataConfig& d, int size, int channels, bool force = false) {
  auto files = gan::folder_files(d);
  gan::DataConfig off = d;
  off.cache = "off";
  return gan::open_folder_cache(d, size, channels, files, gan::open_dataset(off, size, channels), force);
}

// Every image of `cached` equals the on-the-fly decoding of the same folder (same load() result, same bytes).
void expect_same_as_decoding(const gan::DataConfig& d, gan::ImageSource& cached, int size, int channels) {
  gan::DataConfig off = d;
  off.cache = "off";
  auto decoded = gan::open_dataset(off, size, channels);
  ASSERT_EQ(decoded->size(), cached.size());
  int differing = 0;
  for (std::int64_t i = 0; i < cached.size(); ++i) {
    bool ok_a = false, ok_b = false;
    auto a = image(cached, i, &ok_a), b = image(*decoded, i, &ok_b);
    EXPECT_EQ(ok_a, ok_b) << "image " << i;
    if (ok_a && a != b) ++differing;
  }
  EXPECT_EQ(differing, 0) << "images whose cached bytes differ from decoding";
}

// Collects what is logged at warning level or above while alive.
struct LogCapture {
  std::ostringstream text;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text);
  LogCapture() { spdlog::default_logger()->sinks().push_back(sink); }
  ~LogCapture() { spdlog::default_logger()->sinks().pop_back(); }
  std::string str() { return text.str(); }
};

void flip_byte(const std::string& path, std::uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

bool any_file_containing(const std::string& dir, const std::string& part) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().find(part) != std::string::npos) return true;
  return false;
}

// The number after `key` on its own line of gan-data bench output (-1 when absent).
double value_of(const std::string& out, const std::string& key) {
  const auto at = out.find("\n" + key + " ");
  return at == std::string::npos ? -1 : std::strtod(out.c_str() + at + key.size() + 2, nullptr);
}

}  // namespace

TEST(Cache, RoundTripIsPixelIdenticalToDecoding) {
  TempDir dir;
  write_images(dir, 12, 1, "data");
  fixtures::write_file(dir / "data/wide.jpg", fixtures::jpeg(60, 20, 3, fixtures::pattern(60, 20, 3, 9)));
  fixtures::write_file(dir / "data/palette.png",
                       fixtures::png_palette(16, 16, Bytes(256, 1), {0, 0, 0, 40, 80, 160}, {0, 128}));
  fixtures::write_file(dir / "data/deep.png", fixtures::png16(24, 24, 3, std::vector<std::uint16_t>(24 * 24 * 3, 0x7f00)));
  fixtures::write_file(dir / "data/progressive.jpg", fixtures::progressive_jpeg());
  fixtures::write_file(dir / "data/cmyk.jpg", fixtures::cmyk_jpeg());
  fixtures::write_file(dir / "data/anim.gif", fixtures::gif(16, 16, {Bytes(256, 1), Bytes(256, 0)}, {9, 9, 9, 200, 10, 10}));
  fixtures::write_file(dir / "data/targa.tga", fixtures::tga(18, 18, 4, fixtures::pattern(18, 18, 4, 5)));
  auto d = folder(dir / "data", dir / "cache");
  auto out = open_cache(d, 16, 3);
  ASSERT_TRUE(out.cached) << out.reason;
  EXPECT_TRUE(out.built);
  EXPECT_TRUE(out.source->in_memory());  // no decode threads needed
  EXPECT_EQ(out.source->size(), 20);
  expect_same_as_decoding(d, *out.source, 16, 3);
  // Opened again: reused, not rebuilt, same bytes; the bad file stays recorded.
  auto again = open_cache(d, 16, 3);
  ASSERT_TRUE(again.cached);
  EXPECT_FALSE(again.built) << again.reason;
  ASSERT_EQ(again.bad.size(), 1u);
  EXPECT_EQ(again.bad[0].path, "zbad_0.png");
  expect_same_as_decoding(d, *again.source, 16, 3);
  // Gray at another size too.
  auto gray = open_cache(d, 8, 1);
  ASSERT_TRUE(gray.cached);
  expect_same_as_decoding(d, *gray.source, 8, 1);
}

TEST(Cache, LoaderBatchesAreBitIdenticalWithAndWithoutCache) {
  TempDir dir;
  write_images(dir, 20, 2);
  auto d = folder(dir.str(), "auto");
  auto cached = gan::open_dataset(d, 16, 3);
  EXPECT_NE(cached->description().find(".gan-cache"), std::string::npos) << cached->description();
  d.cache = "off";
  auto decoded = gan::open_dataset(d, 16, 3);
  gan::BatchLoader a(*cached, 6, 11, {}, 2), b(*decoded, 6, 11, {}, 2);
  for (int k = 0; k < 7; ++k) {  // crosses two epoch boundaries (3 batches per epoch)
    gan::Batch x = a.next(), y = b.next();
    ASSERT_TRUE(torch::equal(x.images, y.images)) << "batch " << k;
    EXPECT_EQ(x.after.epoch, y.after.epoch);
    EXPECT_EQ(x.after.cursor, y.after.cursor);
  }
  EXPECT_EQ(cached->bad_count(), decoded->bad_count());
}

TEST(Cache, FloatConversionMatchesTorchBitForBit) {
  std::vector<std::uint8_t> all(256 * 3);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint8_t>(i);
  std::vector<float> ours(all.size());
  gan::bytes_to_unit_range(all.data(), ours.data(), all.size());
  auto ref = torch::from_blob(all.data(), {static_cast<long>(all.size())}, torch::kUInt8)
                 .to(torch::kFloat).div_(127.5).sub_(1.0).contiguous();
  EXPECT_EQ(std::memcmp(ours.data(), ref.data_ptr<float>(), ours.size() * sizeof(float)), 0);
  EXPECT_EQ(ours[0], -1.0f);
  EXPECT_EQ(ours[255], 1.0f);
}

namespace {
// prepare_image as it was before its fast paths (convert every pixel with std::lround, then crop, then resize): the
// reference the cached bytes must keep matching.
gan::Image reference_prepare(const gan::Image& in, int channels, int size, const gan::Rgb& bg) {
  const int n = in.channels;
  const bool has_alpha = n == 2 || n == 4, colour = n >= 3;
  const size_t count = static_cast<size_t>(in.width) * in.height;
  std::vector<std::uint8_t> conv(count * channels);
  for (size_t i = 0; i < count; ++i) {
    const std::uint8_t* p = &in.pixels[i * n];
    float rgb[3];
    for (int c = 0; c < 3; ++c) rgb[c] = colour ? p[c] : p[0];
    if (has_alpha) {
      float a = p[n - 1] / 255.0f;
      for (int c = 0; c < 3; ++c) rgb[c] = rgb[c] * a + bg[c] * (1.0f - a);
    }
    std::uint8_t* q = &conv[i * channels];
    if (channels == 1) {
      const float y = 0.299f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2];
      q[0] = static_cast<std::uint8_t>(std::lround(std::clamp(y, 0.0f, 255.0f)));
    } else {
      for (int c = 0; c < 3; ++c) q[c] = static_cast<std::uint8_t>(std::lround(std::clamp(rgb[c], 0.0f, 255.0f)));
    }
  }
  const int side = std::min(in.width, in.height);
  const int x0 = (in.width - side) / 2, y0 = (in.height - side) / 2;
  gan::Image cropped;
  cropped.width = cropped.height = side;
  cropped.channels = channels;
  for (int y = 0; y < side; ++y)
    for (int x = 0; x < side * channels; ++x)
      cropped.pixels.push_back(conv[(static_cast<size_t>(y0 + y) * in.width + x0) * channels + x]);
  return gan::prepare_image(cropped, channels, size, bg);  // same channels, no alpha: only crop (none) + resize
}
}  // namespace

TEST(Cache, PrepareImageMatchesTheReferenceConversionExactly) {
  std::uint32_t state = 7;
  auto draw = [&](int lo, int hi) {
    state = state * 1664525u + 1013904223u;
    return lo + static_cast<int>((state >> 8) % static_cast<std::uint32_t>(hi - lo + 1));
  };
  int cases = 0, differing = 0;
  for (int n = 1; n <= 4; ++n)
    for (int channels : {1, 3})
      for (int k = 0; k < 6; ++k) {
        gan::Image img;
        img.width = draw(5, 70);
        img.height = draw(5, 70);
        img.channels = n;
        for (int i = 0; i < img.width * img.height * n; ++i)
          img.pixels.push_back(static_cast<std::uint8_t>(k % 2 ? draw(0, 255) : (i * 37 / 11) % 256));
        const gan::Rgb bg{static_cast<std::uint8_t>(draw(0, 255)), static_cast<std::uint8_t>(draw(0, 255)),
                          static_cast<std::uint8_t>(draw(0, 255))};
        const int size = k < 3 ? 16 : std::min(img.width, img.height);  // resized, and crop only
        ++cases;
        if (gan::prepare_image(img, channels, size, bg).pixels != reference_prepare(img, channels, size, bg).pixels)
          ++differing, ADD_FAILURE() << n << " -> " << channels << " channels, " << img.width << "x" << img.height;
      }
  std::printf("%d of %d conversions differ from the reference\n", differing, cases);
}

TEST(Cache, DefaultLocationIsInTheFolderElseTheUserCache) {
  TempDir dir;
  write_images(dir, 4, 0, "data");
  auto d = folder(dir / "data", "auto");
  auto out = open_cache(d, 16, 3);
  ASSERT_TRUE(out.cached);
  EXPECT_EQ(out.stem, dir / "data/.gan-cache/s16-c3-bgffffff-min8");
  EXPECT_TRUE(fs::exists(out.stem + ".data"));
  EXPECT_EQ(gan::list_image_files(dir / "data").size(), 4u);  // the cache is not mistaken for images
  // A folder where .gan-cache cannot be created: the cache goes to $XDG_CACHE_HOME/gan-trainer.
  write_images(dir, 4, 0, "ro");
  fixtures::write_file(dir / "ro/.gan-cache", Bytes{'x'});
  const char* old = std::getenv("XDG_CACHE_HOME");
  const std::string saved = old ? old : "";
  setenv("XDG_CACHE_HOME", (dir / "xdg").c_str(), 1);
  auto ro = open_cache(folder(dir / "ro", "auto"), 16, 3);
  if (old) setenv("XDG_CACHE_HOME", saved.c_str(), 1); else unsetenv("XDG_CACHE_HOME");
  ASSERT_TRUE(ro.cached) << ro.reason;
  EXPECT_EQ(ro.stem.rfind(dir / "xdg/gan-trainer/ro-", 0), 0u) << ro.stem;
  EXPECT_TRUE(fs::exists(ro.stem + ".index"));
}

TEST(Cache, RebuiltWhenAFileIsAddedRemovedOrTouched) {
  TempDir dir;
  write_images(dir, 6, 0, "data");
  auto d = folder(dir / "data", dir / "cache");
  ASSERT_TRUE(open_cache(d, 16, 3).built);
  ASSERT_FALSE(open_cache(d, 16, 3).built);

  fixtures::write_file(dir / "data/new.png", fixtures::png8(16, 16, 3, solid(16, 16, {1, 2, 3})));
  auto added = open_cache(d, 16, 3);
  EXPECT_TRUE(added.built);
  EXPECT_NE(added.reason.find("1 added"), std::string::npos) << added.reason;
  EXPECT_EQ(added.source->size(), 7);
  expect_same_as_decoding(d, *added.source, 16, 3);

  fs::remove(dir / "data/img_001.png");
  auto removed = open_cache(d, 16, 3);
  EXPECT_TRUE(removed.built);
  EXPECT_NE(removed.reason.find("1 removed"), std::string::npos) << removed.reason;
  expect_same_as_decoding(d, *removed.source, 16, 3);

  // Touched: same bytes, an mtime 1 ns later.
  struct stat st {};
  ASSERT_EQ(::stat((dir / "data/img_000.jpg").c_str(), &st), 0);
  timespec times[2] = {st.st_atim, st.st_mtim};
  times[1].tv_nsec = (times[1].tv_nsec + 1) % 1000000000;
  ASSERT_EQ(::utimensat(AT_FDCWD, (dir / "data/img_000.jpg").c_str(), times, 0), 0);
  auto touched = open_cache(d, 16, 3);
  EXPECT_TRUE(touched.built);
  EXPECT_NE(touched.reason.find("1 changed"), std::string::npos) << touched.reason;
  expect_same_as_decoding(d, *touched.source, 16, 3);
  EXPECT_FALSE(open_cache(d, 16, 3).built);
}

TEST(Cache, RebuiltWhenPixelSettingsChange) {
  TempDir dir;
  write_images(dir, 5, 0, "data");
  auto d = folder(dir / "data", dir / "cache");
  ASSERT_TRUE(open_cache(d, 16, 3).built);
  EXPECT_TRUE(open_cache(d, 32, 3).built);  // image_size
  EXPECT_TRUE(open_cache(d, 16, 1).built);  // channels
  auto bg = d;
  bg.background = "#00ff00";
  auto green = open_cache(bg, 16, 3);
  EXPECT_TRUE(green.built);  // background (the RGBA images change)
  expect_same_as_decoding(bg, *green.source, 16, 3);
  auto min = d;
  min.min_image_size = 25;  // now the images 20 pixels wide or high are too small (4 of 5)
  min.max_bad_fraction = 1.0;
  auto strict = open_cache(min, 16, 3);
  EXPECT_TRUE(strict.built);
  EXPECT_GT(strict.bad.size(), 0u);
  expect_same_as_decoding(min, *strict.source, 16, 3);
  EXPECT_FALSE(open_cache(d, 16, 3).built);  // the first one is still there and valid
  // An index whose settings disagree with its name is not trusted.
  const std::string name16 = gan::cache_stem(dir / "cache", dir / "data", gan::cache_settings(d, 16, 3));
  const std::string name32 = gan::cache_stem(dir / "cache", dir / "data", gan::cache_settings(d, 32, 3));
  fs::copy_file(name16 + ".index", name32 + ".index", fs::copy_options::overwrite_existing);
  fs::copy_file(name16 + ".data", name32 + ".data", fs::copy_options::overwrite_existing);
  auto swapped = open_cache(d, 32, 3);
  EXPECT_TRUE(swapped.built);
  EXPECT_NE(swapped.reason.find("other settings"), std::string::npos) << swapped.reason;
  expect_same_as_decoding(d, *swapped.source, 32, 3);
}

TEST(Cache, BadFilesAreRecordedWithTheirReasonAndSkipped) {
  TempDir dir;
  write_images(dir, 5, 0, "data");
  Bytes jpg = fixtures::jpeg(20, 20, 3, fixtures::pattern(20, 20, 3, 1));
  fixtures::write_file(dir / "data/cut.jpg", fixtures::truncated(jpg, jpg.size() / 3));
  fixtures::write_file(dir / "data/tiny.png", fixtures::png8(2, 2, 3, solid(2, 2, {5, 5, 5})));
  auto d = folder(dir / "data", dir / "cache");
  auto out = open_cache(d, 16, 3);
  ASSERT_TRUE(out.cached);
  EXPECT_EQ(out.stats.bad, 2);
  EXPECT_EQ(out.stats.images, 5);
  ASSERT_EQ(out.bad.size(), 2u);
  EXPECT_EQ(out.bad[0].path, "cut.jpg");
  EXPECT_EQ(out.bad[1].path, "tiny.png");
  EXPECT_NE(out.bad[1].error.find("too small (2x2"), std::string::npos) << out.bad[1].error;
  // Reopened: known from the index, without decoding; loads of bad files fail and are counted once.
  auto again = open_cache(d, 16, 3);
  ASSERT_FALSE(again.built);
  ASSERT_EQ(again.bad.size(), 2u);
  EXPECT_EQ(again.bad[0].error, out.bad[0].error);
  bool ok = true;
  auto files = gan::folder_files(d);
  const auto cut = std::find(files.begin(), files.end(), dir / "data/cut.jpg") - files.begin();
  image(*again.source, cut, &ok);
  EXPECT_FALSE(ok);
  image(*again.source, cut, &ok);
  EXPECT_EQ(again.source->bad_count(), 1);
}

TEST(Cache, TooManyBadFilesStopBeforeTraining) {
  TempDir dir;
  write_images(dir, 8, 22);
  expect_user_error([&] { gan::open_dataset(folder(dir.str(), "auto"), 8, 1); }, gan::kExitData,
                    {"could not be decoded, more than data.max_bad_fraction = 0.50", dir.str()});
  EXPECT_FALSE(any_file_containing(dir / ".gan-cache", ".index"));  // nothing half-built is left
  EXPECT_FALSE(any_file_containing(dir / ".gan-cache", ".tmp."));
  auto lenient = folder(dir.str(), "auto");
  lenient.max_bad_fraction = 0.9;
  EXPECT_EQ(gan::open_dataset(lenient, 8, 1)->size(), 30);
}

TEST(Cache, CorruptOrTruncatedCacheIsRebuiltNeverTrusted) {
  TempDir dir;
  write_images(dir, 6, 0, "data");
  auto d = folder(dir / "data", dir / "cache");
  const std::string stem = open_cache(d, 16, 3).stem;
  const auto data_size = fs::file_size(stem + ".data");
  struct Case {
    const char* what;
    std::function<void()> damage;
    const char* reason;
  };
  std::vector<Case> cases = {
      {"truncated data", [&] { fs::resize_file(stem + ".data", data_size - 100); }, "truncated"},
      {"data removed", [&] { fs::remove(stem + ".data"); }, "cannot open"},
      {"index byte flipped", [&] { flip_byte(stem + ".index", 60); }, "corrupt"},
      {"truncated index", [&] { fs::resize_file(stem + ".index", fs::file_size(stem + ".index") / 2); }, "corrupt"},
      {"empty index", [&] { fs::resize_file(stem + ".index", 0); }, "truncated"},
      {"data header flipped", [&] { flip_byte(stem + ".data", 30); }, "does not belong"},
  };
  for (const auto& c : cases) {
    ASSERT_FALSE(open_cache(d, 16, 3).built) << c.what;
    c.damage();
    auto out = open_cache(d, 16, 3);
    EXPECT_TRUE(out.built) << c.what;
    EXPECT_NE(out.reason.find(c.reason), std::string::npos) << c.what << ": " << out.reason;
    expect_same_as_decoding(d, *out.source, 16, 3);
  }
  // A .data from another build (an index and data pair that were not written together).
  fs::copy_file(stem + ".data", dir / "old.data");
  ASSERT_TRUE(open_cache(d, 16, 3, /*force=*/true).built);
  fs::copy_file(dir / "old.data", stem + ".data", fs::copy_options::overwrite_existing);
  auto mixed = open_cache(d, 16, 3);
  EXPECT_TRUE(mixed.built);
  EXPECT_NE(mixed.reason.find("does not belong"), std::string::npos) << mixed.reason;
  // Pixel bytes damaged in place (same size, valid headers): caught by the image's checksum when read; the image is
  // decoded from its file instead, and the index is dropped so that the next start rebuilds.
  flip_byte(stem + ".data", 4096 + 3 * 16 * 16 * 3 + 100);  // inside image 3
  auto rotten = open_cache(d, 16, 3);
  ASSERT_FALSE(rotten.built);
  {
    LogCapture log;
    expect_same_as_decoding(d, *rotten.source, 16, 3);
    EXPECT_NE(log.str().find("is corrupt"), std::string::npos) << log.str();
  }
  EXPECT_FALSE(fs::exists(stem + ".index"));
  EXPECT_TRUE(open_cache(d, 16, 3).built);
}

TEST(Cache, MaxImagesServesAPrefixOfALargerCache) {
  TempDir dir;
  write_images(dir, 10, 0, "data");
  auto d = folder(dir / "data", dir / "cache");
  ASSERT_TRUE(open_cache(d, 16, 3).built);
  d.max_images = 4;
  auto prefix = open_cache(d, 16, 3);
  EXPECT_FALSE(prefix.built) << prefix.reason;
  EXPECT_EQ(prefix.source->size(), 4);
  expect_same_as_decoding(d, *prefix.source, 16, 3);
}

TEST(Cache, UnwritableLocationWarnsAndTrainingStillWorks) {
  TempDir dir;
  write_images(dir, 16, 0, "data");
  fixtures::write_file(dir / "afile", Bytes{'x'});
  gan::Config c;
  c.data = folder(dir / "data", dir / "afile/cache");
  c.model.image_size = 16;
  c.model.channels = 3;
  c.model.nz = 8;
  c.model.ngf = 4;
  c.model.ndf = 4;
  c.train.batch_size = 4;
  c.train.steps = 2;
  c.train.device = "cpu";
  c.train.threads = 1;
  c.output.dir = dir / "runs";
  c.output.name = "u";
  c.output.samples = 4;
  c.output.grid_rows = 2;
  LogCapture log;
  auto src = gan::open_dataset(c.data, 16, 3);
  EXPECT_FALSE(src->in_memory());  // decoding on the fly
  bool ok = false;
  image(*src, 0, &ok);
  EXPECT_TRUE(ok);
  const std::string warned = log.str();
  EXPECT_NE(warned.find("cannot write a data cache"), std::string::npos) << warned;
  EXPECT_NE(warned.find("afile/cache"), std::string::npos) << warned;
  gan::TrainSummary s = gan::train(c);
  EXPECT_EQ(s.steps, 2);
}

TEST(Cache, FullDiskWarnsLeavesNoPartialCacheAndDecodes) {
  TempDir dir;
  write_images(dir, 12, 0, "data");
  auto d = folder(dir / "data", dir / "cache");
  // A file-size limit below the cache's size fails its writes like a full disk (EFBIG instead of ENOSPC).
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit tight = old;
  tight.rlim_cur = 8192;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &tight), 0);
  LogCapture log;
  std::unique_ptr<gan::ImageSource> src;
  try {
    src = gan::open_dataset(d, 32, 3);  // needs 4096 + 12 * 3 KiB
  } catch (...) {
    setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
    throw;
  }
  setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_NE(log.str().find("File too large"), std::string::npos) << log.str();
  EXPECT_FALSE(src->in_memory());
  EXPECT_FALSE(any_file_containing(dir / "cache", ".data"));
  EXPECT_FALSE(any_file_containing(dir / "cache", ".index"));
  d.cache = "off";
  expect_same_as_decoding(d, *src, 32, 3);
}

TEST(Cache, TrainingGivesTheSameWeightsWithAndWithoutCache) {
  TempDir dir;
  write_images(dir, 24, 1, "data");
  auto config = [&](const std::string& cache, const std::string& name) {
    gan::Config c;
    c.data = folder(dir / "data", cache);
    c.model.image_size = 16;
    c.model.channels = 3;
    c.model.nz = 8;
    c.model.ngf = 4;
    c.model.ndf = 4;
    c.train.batch_size = 5;
    c.train.steps = 6;  // more than one epoch (4 batches)
    c.train.device = "cpu";
    c.train.threads = 1;
    c.output.dir = dir / "runs";
    c.output.name = name;
    c.output.samples = 4;
    c.output.grid_rows = 2;
    c.output.sample_every = 100;
    return c;
  };
  gan::Config a = config("off", "off"), b = config("auto", "cached");
  const std::string ca = gan::train(a).checkpoint, cb = gan::train(b).checkpoint;
  EXPECT_TRUE(fs::exists(dir / "data/.gan-cache"));
  gan::Generator ga(a.model), gb(b.model);
  gan::load_checkpoint(ca, torch::kCPU, ga);
  gan::load_checkpoint(cb, torch::kCPU, gb);
  double worst = 0;
  auto pa = ga->named_parameters(), pb = gb->named_parameters();
  for (const auto& p : pa) worst = std::max(worst, (p.value() - pb[p.key()]).abs().max().item<double>());
  std::printf("max |G(off) - G(cached)| = %g\n", worst);
  EXPECT_EQ(worst, 0.0);
}

TEST(DataTool, CheckReportsModesSizesAndBadFiles) {
  TempDir dir;
  const int s = 16;
  fixtures::write_file(dir / "a.jpg", fixtures::jpeg(s, s, 3, fixtures::pattern(s, s, 3, 1)));
  fixtures::write_file(dir / "b.jpg", fixtures::jpeg(300, 200, 3, fixtures::pattern(300, 200, 3, 2)));
  fixtures::write_file(dir / "d_prog.jpg", fixtures::progressive_jpeg());
  fixtures::write_file(dir / "e_cmyk.jpg", fixtures::cmyk_jpeg());
  fixtures::write_file(dir / "f_gray.png", fixtures::png8(s, s, 1, fixtures::pattern(s, s, 1, 4)));
  fixtures::write_file(dir / "g_ga.png", fixtures::png8(s, s, 2, fixtures::pattern(s, s, 2, 5)));
  fixtures::write_file(dir / "h_rgba.png", fixtures::png8(s, 2 * s, 4, fixtures::pattern(s, 2 * s, 4, 6)));
  fixtures::write_file(dir / "i_pal.png", fixtures::png_palette(s, s, Bytes(s * s, 0), {10, 20, 30}));
  fixtures::write_file(dir / "j_16.png", fixtures::png16(s, s, 3, std::vector<std::uint16_t>(s * s * 3, 999)));
  fixtures::write_file(dir / "k.gif", fixtures::gif(s, s, {Bytes(s * s, 0)}, {1, 2, 3}));
  fixtures::write_file(dir / "l.bmp", fixtures::bmp(s, s, 3, fixtures::pattern(s, s, 3, 7)));
  fixtures::write_file(dir / "m.tga", fixtures::tga(s, s, 3, fixtures::pattern(s, s, 3, 8)));
  Bytes jpg = fixtures::jpeg(s, s, 3, fixtures::pattern(s, s, 3, 9));
  fixtures::write_file(dir / "x_cut.jpg", fixtures::truncated(jpg, jpg.size() / 2));
  fixtures::write_file(dir / "y_text.png", Bytes{'h', 'i'});
  fixtures::write_file(dir / "z_tiny.png", fixtures::png8(2, 2, 3, solid(2, 2, {1, 1, 1})));
  gan::DataConfig d;
  d.workers = 2;
  gan::CheckReport r = gan::check_folder(dir.str(), d, 64);
  EXPECT_EQ(r.files, 15);
  EXPECT_EQ(r.bad, 3);
  EXPECT_EQ(r.too_small, 1);
  ASSERT_EQ(r.bad_files.size(), 3u);
  EXPECT_EQ(r.bad_files[0].first, "x_cut.jpg");
  EXPECT_EQ(r.bad_files[1].first, "y_text.png");
  EXPECT_EQ(r.bad_files[2].first, "z_tiny.png");
  EXPECT_EQ(r.formats["JPEG"], 5);
  EXPECT_EQ(r.formats["PNG"], 6);
  EXPECT_EQ(r.formats["other"], 1);  // the text file named .png
  EXPECT_EQ(r.formats["GIF"], 1);
  EXPECT_EQ(r.formats["BMP"], 1);
  EXPECT_EQ(r.formats["TGA"], 1);
  EXPECT_EQ(r.modes["JPEG RGB"], 4);  // a, b, progressive, and the truncated one (its header is intact)
  EXPECT_EQ(r.modes["JPEG CMYK"], 1);
  EXPECT_EQ(r.modes["PNG gray"], 1);
  EXPECT_EQ(r.modes["PNG gray+alpha"], 1);
  EXPECT_EQ(r.modes["PNG RGBA"], 1);
  EXPECT_EQ(r.modes["PNG palette"], 1);
  EXPECT_EQ(r.modes["PNG RGB 16-bit"], 1);
  EXPECT_EQ(r.modes["PNG RGB"], 1);  // the tiny one
  EXPECT_EQ(r.modes["other unrecognised"], 1);
  EXPECT_EQ(r.progressive_jpeg, 1);
  EXPECT_EQ(r.cmyk_jpeg, 1);
  // Shorter sides: 11 of 16 px and the 2x2 one, the 300x200 one (200); aspect: h_rgba is 0.5, b is 1.5.
  EXPECT_EQ(r.shorter_side, (std::vector<std::int64_t>{12, 0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(r.aspect, (std::vector<std::int64_t>{0, 1, 11, 1, 0}));
  EXPECT_EQ(r.upscaled, 11);  // every usable image but the 300x200 one is below 64
  EXPECT_TRUE(gan::check_passes(r, d));
  const std::string text = gan::format_check_report(r, d, 64, 2);
  EXPECT_NE(text.find("bad files (2 of 3)"), std::string::npos) << text;
  EXPECT_NE(text.find("x_cut.jpg: "), std::string::npos) << text;
  EXPECT_EQ(text.find("z_tiny.png"), std::string::npos) << text;  // capped at 2
  d.max_bad_fraction = 0.1;
  EXPECT_FALSE(gan::check_passes(r, d));
}

TEST(DataTool, CheckCliExitsThreeAboveTheBadFraction) {
  TempDir dir;
  write_images(dir, 6, 2, "ok");
  write_images(dir, 3, 4, "bad");
  std::string out;
  EXPECT_EQ(run(std::string(GAN_DATA_EXE) + " check " + (dir / "ok"), &out), 0) << out;
  EXPECT_NE(out.find("usable      6"), std::string::npos) << out;
  EXPECT_NE(out.find("zbad_0.png: not a decodable image"), std::string::npos) << out;
  EXPECT_NE(out.find("result      ok"), std::string::npos) << out;
  EXPECT_EQ(run(std::string(GAN_DATA_EXE) + " check " + (dir / "bad"), &out), 3) << out;
  EXPECT_NE(out.find("gan-data: error: 4 of the 7 files"), std::string::npos) << out;
  EXPECT_EQ(run(std::string(GAN_DATA_EXE) + " check " + (dir / "nothing"), &out), 3) << out;
  EXPECT_NE(out.find("is not a folder"), std::string::npos) << out;
}

TEST(DataTool, PrepareCliBuildsThenReportsUpToDate) {
  TempDir dir;
  write_images(dir, 6, 1, "data");
  const std::string cmd = std::string(GAN_DATA_EXE) + " prepare --folder " + (dir / "data") +
                          " --image-size 16 --channels 3 --workers 2";
  std::string out;
  ASSERT_EQ(run(cmd, &out), 0) << out;
  EXPECT_NE(out.find("built now"), std::string::npos) << out;
  EXPECT_NE(out.find("images   6 of 7 files at 16x16, 3 channels; 1 bad"), std::string::npos) << out;
  EXPECT_NE(out.find("zbad_0.png: not a decodable image"), std::string::npos) << out;
  EXPECT_NE(out.find("img/s"), std::string::npos) << out;
  const std::string stem = dir / "data/.gan-cache/s16-c3-bgffffff-min8";
  EXPECT_TRUE(fs::exists(stem + ".data"));
  EXPECT_TRUE(fs::exists(stem + ".index"));
  ASSERT_EQ(run(cmd, &out), 0) << out;
  EXPECT_NE(out.find("up to date"), std::string::npos) << out;
  // The trainer's open finds the same cache.
  auto src = gan::open_dataset(folder(dir / "data", "auto"), 16, 3);
  EXPECT_NE(src->description().find(stem + ".data"), std::string::npos) << src->description();
  // Errors: an IDX config, data.cache off, an unwritable location.
  EXPECT_EQ(run(std::string(GAN_DATA_EXE) + " prepare", &out), 2) << out;
  EXPECT_NE(out.find("only folder sources have a data cache"), std::string::npos) << out;
  EXPECT_EQ(run(cmd + " --cache off", &out), 2) << out;
  fixtures::write_file(dir / "afile", Bytes{'x'});
  EXPECT_EQ(run(cmd + " --cache " + (dir / "afile/c"), &out), 5) << out;
  EXPECT_NE(out.find("gan-data: error: cannot write a data cache"), std::string::npos) << out;
  EXPECT_EQ(run(std::string(GAN_DATA_EXE) + " frobnicate", &out), 2) << out;
}

TEST(DataTool, BenchPrintsFiguresAndRemovesItsSyntheticCache) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(run(std::string(GAN_DATA_EXE) + " bench --synthetic 300 --image-size 16 --channels 3 --batch 32 " +
                    "--stream-images 600 --cache-dir " + (dir / "c"),
                &out),
            0)
      << out;
  for (const char* key : {"data.synthetic_write_img_per_s", "data.cache_epoch_img_per_s", "data.cache_raw_img_per_s",
                          "data.peak_rss_mib"})
    EXPECT_NE(out.find(std::string("\n") + key + " "), std::string::npos) << key << " in\n" << out;
  EXPECT_EQ(value_of(out, "data.cache_stream_images"), 608) << out;  // 19 batches of 32 (>= 600, >= one epoch)
  EXPECT_GT(value_of(out, "data.cache_epoch_img_per_s"), 0) << out;
  EXPECT_FALSE(any_file_containing(dir / "c", "synthetic"));
  // On a folder: decoding, building and streaming.
  write_images(dir, 40, 0, "data");
  ASSERT_EQ(run(std::string(GAN_DATA_EXE) + " bench --folder " + (dir / "data") +
                    " --image-size 16 --channels 3 --batch 8 --stream-images 80",
                &out),
            0)
      << out;
  for (const char* key : {"data.decode_img_per_s", "data.cache_build_img_per_s", "data.cache_epoch_img_per_s"})
    EXPECT_NE(out.find(std::string("\n") + key + " "), std::string::npos) << key << " in\n" << out;
}

#include "gan/data_tool.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "gan/cache.h"
#include "gan/cli.h"
#include "gan/datasets.h"
#include "gan/errors.h"
#include "gan/files.h"
#include "gan/decode.h"
#include "gan/image.h"
#include "gan/loader.h"

namespace gan {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int thread_count(int workers) {
  return std::max(1, workers > 0 ? workers : static_cast<int>(std::thread::hardware_concurrency()));
}

// ---------------------------------------------------------------------------------------------------------------
// check

// Format and colour mode from the file's header, without decoding.
struct FileInfo {
  std::string format = "other", mode = "unrecognised";
  bool progressive = false, cmyk = false;
};

FileInfo inspect(const std::vector<std::uint8_t>& b) {
  FileInfo f;
  auto be16 = [&](size_t i) { return (b[i] << 8) | b[i + 1]; };
  auto le16 = [&](size_t i) { return b[i] | (b[i + 1] << 8); };
  static const std::uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.size() >= 26 && std::equal(png, png + 8, b.begin())) {
    f.format = "PNG";
    const int depth = b[24], type = b[25];
    f.mode = type == 0 ? "gray" : type == 2 ? "RGB" : type == 3 ? "palette" : type == 4 ? "gray+alpha"
             : type == 6 ? "RGBA" : "unknown colour type";
    if (depth == 16) f.mode += " 16-bit";
    else if (depth < 8 && type != 3) f.mode += " " + std::to_string(depth) + "-bit";
    return f;
  }
  if (b.size() >= 4 && b[0] == 0xFF && b[1] == 0xD8) {
    f.format = "JPEG";
    int adobe = -1, components = 0;
    for (size_t i = 2; i + 4 <= b.size();) {  // walk the markers up to the first SOFn
      if (b[i] != 0xFF) break;
      const std::uint8_t m = b[i + 1];
      if (m == 0xFF) { ++i; continue; }
      if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
      if (m == 0xD9 || m == 0xDA) break;
      const size_t len = static_cast<size_t>(be16(i + 2));
      if (len < 2 || i + 2 + len > b.size()) break;
      const std::uint8_t* p = b.data() + i + 4;
      if (m == 0xEE && len >= 14 && std::memcmp(p, "Adobe", 5) == 0) adobe = p[11];
      if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && len >= 8) {
        f.progressive = m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE;
        components = p[5];
        break;
      }
      i += 2 + len;
    }
    f.cmyk = components == 4;
    f.mode = components == 1 ? "gray" : components == 3 ? "RGB" : components == 4 ? (adobe == 2 ? "YCCK" : "CMYK")
                                                                                  : "no frame header";
    return f;
  }
  if (b.size() >= 10 && std::memcmp(b.data(), "GIF8", 4) == 0) {
    f.format = "GIF";
    f.mode = "palette";
    return f;
  }
  if (b.size() >= 30 && b[0] == 'B' && b[1] == 'M') {
    f.format = "BMP";
    const int bpp = le16(28);
    f.mode = bpp <= 8 ? "palette" : bpp == 32 ? "RGBA" : "RGB";
    return f;
  }
  int w = 0, h = 0, n = 0;
  if (!b.empty() && b.size() < static_cast<size_t>(std::numeric_limits<int>::max()) &&
      stbi_info_from_memory(b.data(), static_cast<int>(b.size()), &w, &h, &n)) {
    f.format = "TGA";  // the only other format stb reads from our extensions
    f.mode = n == 1 ? "gray" : n == 2 ? "gray+alpha" : n == 3 ? "RGB" : "RGBA";
  }
  return f;
}

bool read_bytes(const std::string& path, std::vector<std::uint8_t>& out) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  const std::streamoff size = in.tellg();
  if (size < 0) return false;
  out.resize(static_cast<size_t>(size));
  in.seekg(0);
  return size == 0 || static_cast<bool>(in.read(reinterpret_cast<char*>(out.data()), size));
}

struct FileResult {
  FileInfo info;
  int width = 0, height = 0;
  bool ok = false, too_small = false;
  std::string error;
};

std::string percent(double part, double whole) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", whole > 0 ? 100.0 * part / whole : 0.0);
  return buf;
}

// ---------------------------------------------------------------------------------------------------------------
// bench

// Starts a fresh VmHWM (Linux >= 4.0: writing 5 to clear_refs resets the peak RSS); false when unsupported.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  return static_cast<bool>(f << "5") && static_cast<bool>(f.flush());
}

double status_mib(const char* key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::atof(line.c_str() + std::strlen(key)) / 1024.0;  // "VmHWM:  1234 kB"
  return 0;
}

void figure(const char* key, double value, const char* note = "") {
  std::printf("%-34s %.1f%s%s\n", key, value, note[0] ? "   # " : "", note);
  std::fflush(stdout);
}

// Streams `images` images (at least one epoch) through a BatchLoader as the trainer gets them; returns img/s.
double stream(ImageSource& source, int batch, std::int64_t min_images, int workers, std::int64_t* streamed) {
  BatchLoader loader(source, batch, 1, {}, workers);
  const std::int64_t batches = std::max(loader.batches_per_epoch(), (min_images + batch - 1) / batch);
  const auto t0 = Clock::now();
  volatile float sink = 0;
  for (std::int64_t k = 0; k < batches; ++k) {
    Batch b = loader.next();
    sink = sink + b.images.data_ptr<float>()[0];  // touch the batch, as a consumer would
  }
  const double secs = since(t0);
  *streamed = batches * batch;
  return static_cast<double>(*streamed) / secs;
}

// Reads every good image of the cache in file order; returns img/s and sets MiB/s.
double raw_read(ImageCache& cache, std::int64_t count, double* mib_per_s) {
  std::vector<std::uint8_t> buf(cache.image_bytes());
  cache.advise_sequential(true);
  std::int64_t read = 0, mismatches = 0;
  const auto t0 = Clock::now();
  for (std::int64_t i = 0; i < count; ++i) {
    if (!cache.entries()[static_cast<size_t>(i)].error.empty()) continue;
    if (!cache.read(i, buf.data())) ++mismatches;
    ++read;
  }
  const double secs = since(t0);
  cache.advise_sequential(false);
  if (mismatches) throw UserError(kExitData, std::to_string(mismatches) + " images of " + cache.data_path() +
                                                 " fail their checksum; rebuild it (gan-data prepare --force)");
  *mib_per_s = static_cast<double>(read) * cache.image_bytes() / (1 << 20) / secs;
  return static_cast<double>(read) / secs;
}

void bench_cache(ImageSource& source, const std::string& stem, int batch, std::int64_t stream_images, int workers) {
  std::string why;
  auto cache = ImageCache::open(stem, why);
  if (!cache) throw UserError(kExitData, "cannot open the cache " + stem + ".data: " + why);
  figure("data.cache_mib", static_cast<double>(cache->file_bytes()) / (1 << 20));
  figure("data.peak_rss_before_stream_mib", peak_rss_mib());
  const bool fresh = reset_peak_rss();
  std::int64_t streamed = 0;
  const double rate = stream(source, batch, stream_images, workers, &streamed);
  figure("data.cache_epoch_img_per_s", rate, "BatchLoader float batches from the cache");
  figure("data.cache_stream_images", static_cast<double>(streamed));
  figure(fresh ? "data.stream_peak_rss_mib" : "data.peak_rss_mib", status_mib("VmHWM:"),
         fresh ? "peak RSS while streaming (VmHWM reset before)" : "VmHWM of the process");
  double mib_s = 0;
  const double raw = raw_read(*cache, source.size(), &mib_s);
  figure("data.cache_raw_img_per_s", raw, "sequential read + checksum, one thread");
  figure("data.cache_raw_mib_per_s", mib_s);
}

// Config from --config, --set and the flags.
struct CommonOptions {
  std::string config, folder, cache;
  std::vector<std::string> sets;
  int image_size = -1, channels = -1, workers = -1;
};

Config resolve(const CommonOptions& o, int default_size = -1, int default_channels = -1) {
  Config cfg = o.config.empty() ? Config{} : load_config(o.config, /*validate=*/false);  // after the flags
  if (o.config.empty() && default_size > 0) {
    cfg.model.image_size = default_size;
    cfg.model.channels = default_channels;
  }
  for (const auto& s : o.sets) apply_override(cfg, s);
  if (!o.folder.empty()) {
    apply_override(cfg, "data.source=folder");
    apply_override(cfg, "data.path=" + o.folder);
  }
  if (o.image_size >= 0) apply_override(cfg, "model.image_size=" + std::to_string(o.image_size));
  if (o.channels >= 0) apply_override(cfg, "model.channels=" + std::to_string(o.channels));
  if (!o.cache.empty()) apply_override(cfg, "data.cache=" + o.cache);
  if (o.workers >= 0) apply_override(cfg, "data.workers=" + std::to_string(o.workers));
  validate_config(cfg);
  return cfg;
}

void require_folder(const Config& cfg, const char* what) {
  if (cfg.data.source != "folder")
    throw UserError(kExitUsage, std::string(what) + ": data.source is " + cfg.data.source +
                                    "; only folder sources have a data cache (IDX files are read into memory): give "
                                    "--folder DIR or a config with data.source: folder");
}

int run_prepare(const Config& cfg, bool force) {
  require_folder(cfg, "gan-data prepare");
  if (cfg.data.cache == "off")
    throw UserError(kExitUsage, "data.cache is off in " + cfg.origin + "; use --cache auto or --cache FOLDER");
  const int size = cfg.model.image_size, channels = cfg.model.channels;
  const auto files = folder_files(cfg.data);
  const auto t0 = Clock::now();
  CacheOutcome out = open_folder_cache(cfg.data, size, channels, files, nullptr, force);
  if (!out.cached) throw UserError(kExitIo, out.reason);
  const double secs = since(t0);
  std::error_code ec;
  const auto bytes = fs::file_size(out.stem + ".data", ec);
  const std::int64_t n = static_cast<std::int64_t>(files.size()), bad = static_cast<std::int64_t>(out.bad.size());
  std::printf("cache    %s (%s)\n", (out.stem + ".data").c_str(),
              out.built ? ("built now: " + out.reason).c_str() : "up to date");
  std::printf("images   %lld of %lld files at %dx%d, %d channel%s; %lld bad%s\n", static_cast<long long>(n - bad),
              static_cast<long long>(n), size, size, channels, channels == 1 ? "" : "s", static_cast<long long>(bad),
              bad ? " (listed below)" : "");
  std::printf("size     %.1f MiB\n", static_cast<double>(bytes) / (1 << 20));
  if (out.built)
    std::printf("time     %.1f s, %.0f img/s on %d threads\n", secs, n / std::max(secs, 1e-9),
                thread_count(cfg.data.workers));
  else
    std::printf("time     %.2f s to validate (gan-data prepare --force rebuilds)\n", secs);
  const size_t listed = std::min<size_t>(out.bad.size(), 20);
  if (listed) std::printf("bad files (%zu of %zu):\n", listed, out.bad.size());
  for (size_t i = 0; i < listed; ++i) std::printf("  %s: %s\n", out.bad[i].path.c_str(), out.bad[i].error.c_str());
  return kExitOk;
}

// A photo-like image (smooth colour fields, an oval "face" with texture, sensor noise): JPEG-compresses to about the
// bytes per pixel of a CelebA photo (~7 KB at 178x218, quality 90, 4:2:0), so that decoding costs what it would.
std::vector<std::uint8_t> photo_like(int w, int h, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0, 1);
  std::normal_distribution<float> noise(0, 4);
  float fx[3][5], fy[3][5], phase[3][5], amp[3][5];
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < 5; ++k) {
      fx[c][k] = 0.08f * u(rng), fy[c][k] = 0.08f * u(rng), phase[c][k] = 6.28f * u(rng), amp[c][k] = 20 + 20 * u(rng);
    }
  const float cx = w * (0.4f + 0.2f * u(rng)), cy = h * (0.4f + 0.2f * u(rng));
  const float rx = w * (0.25f + 0.1f * u(rng)), ry = h * (0.3f + 0.1f * u(rng));
  const float face[3] = {150 + 80 * u(rng), 100 + 60 * u(rng), 80 + 60 * u(rng)};
  std::vector<std::uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const float d = (x - cx) * (x - cx) / (rx * rx) + (y - cy) * (y - cy) / (ry * ry);
      for (int c = 0; c < 3; ++c) {
        float v = 128;
        for (int k = 0; k < 5; ++k) v += amp[c][k] * std::sin(fx[c][k] * x + fy[c][k] * y + phase[c][k]);
        if (d < 1) v = face[c] * (1 - 0.3f * d) + 10 * std::sin(0.5f * x) * std::sin(0.4f * y);
        px[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<std::uint8_t>(std::clamp(v + noise(rng), 0.f, 255.f));
      }
    }
  return px;
}

// Writes n photo_like JPEGs of w x h into dir (photo_000000.jpg, ...); returns their mean size in bytes.
double write_photos(const std::string& dir, std::int64_t n, int w, int h) {
  make_dirs(dir);
  std::uint64_t total = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto px = photo_like(w, h, static_cast<std::uint32_t>(i));
    std::string bytes;
    auto sink = [](void* ctx, void* data, int size) {
      static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
    };
    if (!stbi_write_jpg_to_func(sink, &bytes, w, h, 3, px.data(), 90))
      throw UserError(kExitIo, "cannot encode a JPEG for " + dir);
    char name[32];
    std::snprintf(name, sizeof name, "/photo_%06lld.jpg", static_cast<long long>(i));
    write_file_atomic(dir + name, bytes);
    total += bytes.size();
  }
  return static_cast<double>(total) / static_cast<double>(std::max<std::int64_t>(n, 1));
}

// Decodes the folder's files through a BatchLoader (data.cache: off), as a run without the cache gets its batches,
// as now and then as before libjpeg-turbo (stb_image + stb_image_resize, the reference): the figures and their ratio.
void bench_decoding(const Config& cfg, const DataConfig& folder_data, int batch) {
  DataConfig d = folder_data;
  d.cache = "off";
  auto folder = open_dataset(d, cfg.model.image_size, cfg.model.channels);
  std::int64_t decoded = 0;
  const double turbo = stream(*folder, batch, 0, cfg.data.workers, &decoded);
  figure("data.decode_img_per_s", turbo, "BatchLoader decoding the files (data.cache: off; JPEGs by libjpeg-turbo)");
  figure("data.decode_images", static_cast<double>(decoded));
  double stb = 0;
  {
    struct Reference {  // back to the normal decoders however the measurement ends
      Reference() { use_reference_decoding(true); }
      ~Reference() { use_reference_decoding(false); }
    } reference;
    stb = stream(*folder, batch, 0, cfg.data.workers, &decoded);
  }
  figure("data.decode_stb_img_per_s", stb, "the same decoded as before 0.13 (stb_image, stb_image_resize)");
  figure("data.decode_speedup", turbo / stb);
}

struct BenchOptions {
  int batch = 128;
  std::int64_t decode_images = 3000;
  std::int64_t stream_images = 100000;
  std::int64_t synthetic = 0;
  std::int64_t photos = 0;
  std::string photo_size = "178x218";
  std::string cache_dir;
  bool keep = false, rebuild = false;
};

int run_bench(const Config& cfg, const BenchOptions& o) {
  const int size = cfg.model.image_size, channels = cfg.model.channels;
  const int workers = thread_count(cfg.data.workers);
  std::printf("# gan-data bench: %dx%d, %d channel%s, batch %d, %d decode threads, %u cores\n", size, size, channels,
              channels == 1 ? "" : "s", o.batch, workers, std::thread::hardware_concurrency());
  if (o.photos > 0) {
    int w = 0, h = 0;
    char tail = 0;
    if (std::sscanf(o.photo_size.c_str(), "%dx%d%c", &w, &h, &tail) != 2 || w < 8 || h < 8 || w > 8192 || h > 8192)
      throw UserError(kExitUsage, "gan-data bench: --photo-size " + o.photo_size + " is not WIDTHxHEIGHT (8 to 8192)");
    const std::string dir = (o.cache_dir.empty() ? fs::temp_directory_path() / "gan-data-bench" : fs::path(o.cache_dir)) /
                            ("photos-" + std::to_string(o.photos) + "-" + o.photo_size);
    struct Cleanup {
      std::string dir;
      bool keep;
      ~Cleanup() {
        std::error_code ec;
        if (!keep) fs::remove_all(dir, ec);
      }
    } cleanup{dir, o.keep};
    const auto t0 = Clock::now();
    const bool reuse =
        o.keep && fs::is_directory(dir) && static_cast<std::int64_t>(list_image_files(dir).size()) == o.photos;
    if (!reuse) {
      std::error_code ec;
      fs::remove_all(dir, ec);
      const double mean = write_photos(dir, o.photos, w, h);
      figure("data.photo_file_kib", mean / 1024, "mean JPEG size (quality 90, 4:2:0)");
      figure("data.photo_write_s", since(t0));
    }
    figure("data.photos", static_cast<double>(o.photos));
    DataConfig d = cfg.data;
    d.source = "folder";
    d.path = dir;
    d.max_images = 0;
    bench_decoding(cfg, d, o.batch);
  } else if (o.synthetic > 0) {
    const std::string dir =
        o.cache_dir.empty() ? (fs::temp_directory_path() / "gan-data-bench").string() : o.cache_dir;
    make_dirs(dir);
    const std::string stem = dir + "/synthetic-" + std::to_string(o.synthetic) + "-s" + std::to_string(size) + "-c" +
                             std::to_string(channels);
    struct Cleanup {
      std::string stem;
      bool keep;
      ~Cleanup() {
        if (keep) return;
        std::error_code ec;
        fs::remove(stem + ".data", ec);
        fs::remove(stem + ".index", ec);
      }
    } cleanup{stem, o.keep};
    const CacheSettings settings = cache_settings(cfg.data, size, channels);
    std::vector<CacheEntry> entries(static_cast<size_t>(o.synthetic));
    for (size_t i = 0; i < entries.size(); ++i) entries[i].path = "synthetic/" + std::to_string(i);
    const size_t per = static_cast<size_t>(channels) * size * size;
    std::string reuse_why;
    const bool reuse = o.keep && ImageCache::open(stem, reuse_why) != nullptr;
    BuildStats st;
    if (!reuse) st = build_cache(
        stem, "(synthetic)", settings, entries,
        [per](std::int64_t i, std::uint8_t* dst, std::string&) {
          std::uint64_t x = static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15ULL + 1;
          for (size_t k = 0; k < per; k += 8) {  // splitmix64 random bytes
            std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
            z ^= z >> 31;
            std::memcpy(dst + k, &z, std::min<size_t>(8, per - k));
          }
          return true;
        },
        cfg.data.workers, 1.0, false);
    figure("data.synthetic_images", static_cast<double>(o.synthetic));
    if (!reuse)
      figure("data.synthetic_write_img_per_s", static_cast<double>(st.images) / st.seconds,
             "random bytes written to the cache, fsync included");
    figure("data.rss_before_stream_mib", current_rss_mib());
    std::string why;
    std::shared_ptr<ImageCache> cache = ImageCache::open(stem, why);
    if (!cache) throw UserError(kExitData, "cannot open the cache just written: " + why);
    auto source = make_cached_source(cache, o.synthetic, nullptr, "synthetic images");
    cache.reset();
    bench_cache(*source, stem, o.batch, o.stream_images, cfg.data.workers);
  } else {
    require_folder(cfg, "gan-data bench");
    // (a) Decoding through the BatchLoader, as a run with data.cache: off gets its batches.
    DataConfig d = cfg.data;
    if (o.decode_images > 0) d.max_images = d.max_images > 0 ? std::min(d.max_images, o.decode_images) : o.decode_images;
    bench_decoding(cfg, d, o.batch);
    // (b) The cache: built (or reused), then streamed and read raw.
    DataConfig c = cfg.data;
    if (c.cache == "off") c.cache = "auto";
    const auto files = folder_files(c);
    const auto t0 = Clock::now();
    CacheOutcome out = open_folder_cache(c, size, channels, files, nullptr, o.rebuild);
    if (!out.cached) throw UserError(kExitIo, out.reason);
    if (out.built)
      figure("data.cache_build_img_per_s", static_cast<double>(files.size()) / since(t0),
             "decode + write + fsync, all decode threads");
    bench_cache(*out.source, out.stem, o.batch, o.stream_images, cfg.data.workers);
  }
  figure("data.peak_rss_mib", peak_rss_mib(), "VmHWM at the end (since the reset before streaming, if supported)");
  figure("data.rss_mib", current_rss_mib());
  return kExitOk;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------

CheckReport check_folder(const std::string& dir, const DataConfig& data, int image_size) {
  DataConfig d = data;
  d.source = "folder";
  d.path = dir;
  d.max_images = 0;
  const std::vector<std::string> files = folder_files(d);
  const auto t0 = Clock::now();
  std::vector<FileResult> results(files.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    std::vector<std::uint8_t> bytes;
    for (size_t i = next++; i < files.size(); i = next++) {
      FileResult& r = results[i];
      if (!read_bytes(files[i], bytes)) {
        r.error = "cannot open";
        continue;
      }
      r.info = inspect(bytes);
      Image img;
      if (!decode_image(bytes, img, r.error)) continue;
      r.width = img.width;
      r.height = img.height;
      if (img.width < data.min_image_size || img.height < data.min_image_size) {
        r.too_small = true;
        r.error = "too small (" + std::to_string(img.width) + "x" + std::to_string(img.height) +
                  ", data.min_image_size is " + std::to_string(data.min_image_size) + ")";
        continue;
      }
      r.ok = true;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < thread_count(data.workers); ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();

  CheckReport rep;
  rep.folder = dir;
  rep.files = static_cast<std::int64_t>(files.size());
  rep.shorter_side.assign(kSideBuckets.size() + 1, 0);
  rep.aspect.assign(kAspectBuckets.size() + 1, 0);
  const std::string prefix = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  for (size_t i = 0; i < files.size(); ++i) {
    const FileResult& r = results[i];
    ++rep.formats[r.info.format];
    ++rep.modes[r.info.format + " " + r.info.mode];
    if (r.info.format == "JPEG" && r.info.progressive) ++rep.progressive_jpeg;
    if (r.info.format == "JPEG" && r.info.cmyk) ++rep.cmyk_jpeg;
    if (r.width > 0) {
      const int side = std::min(r.width, r.height);
      rep.shorter_side[std::upper_bound(kSideBuckets.begin(), kSideBuckets.end(), side) - kSideBuckets.begin()]++;
      const double ratio = static_cast<double>(r.width) / r.height;
      rep.aspect[std::upper_bound(kAspectBuckets.begin(), kAspectBuckets.end(), ratio) - kAspectBuckets.begin()]++;
    }
    if (!r.ok) {
      ++rep.bad;
      if (r.too_small) ++rep.too_small;
      const std::string name = files[i].rfind(prefix, 0) == 0 ? files[i].substr(prefix.size()) : files[i];
      rep.bad_files.emplace_back(name, r.error);
    } else if (image_size > 0 && std::min(r.width, r.height) < image_size) {
      ++rep.upscaled;
    }
  }
  rep.seconds = since(t0);
  return rep;
}

bool check_passes(const CheckReport& r, const DataConfig& data) {
  return r.files > 0 && static_cast<double>(r.bad) <= data.max_bad_fraction * static_cast<double>(r.files);
}

std::string format_check_report(const CheckReport& r, const DataConfig& data, int image_size, size_t max_listed) {
  std::ostringstream os;
  char buf[256];
  auto count = [](std::int64_t v) { return std::to_string(v); };
  os << "folder      " << r.folder << "\n";
  os << "files       " << r.files << " (";
  bool first = true;
  for (const auto& [fmt, n] : r.formats) {
    os << (first ? "" : ", ") << fmt << " " << n;
    first = false;
  }
  std::snprintf(buf, sizeof buf, ") checked in %.1f s (%.0f files/s)\n", r.seconds, r.files / std::max(r.seconds, 1e-9));
  os << buf;
  os << "usable      " << (r.files - r.bad) << "\n";
  os << "bad         " << r.bad << " (" << percent(static_cast<double>(r.bad), static_cast<double>(r.files))
     << " of the files; data.max_bad_fraction is " << std::to_string(data.max_bad_fraction).substr(0, 4) << ")\n";
  os << "too small   " << r.too_small << " (below data.min_image_size = " << data.min_image_size
     << " px; counted as bad)\n";
  if (image_size > 0)
    os << "upscaled    " << r.upscaled << " (usable, but the shorter side is below model.image_size = " << image_size
       << ")\n";
  os << "modes:\n";
  for (const auto& [mode, n] : r.modes) {
    std::snprintf(buf, sizeof buf, "  %-24s %8lld  %s\n", mode.c_str(), static_cast<long long>(n),
                  percent(static_cast<double>(n), static_cast<double>(r.files)).c_str());
    os << buf;
  }
  os << "  (JPEG: " << r.progressive_jpeg << " progressive, " << r.cmyk_jpeg << " CMYK/YCCK)\n";
  os << "shorter side (px, usable or too small):";
  for (size_t b = 0; b < r.shorter_side.size(); ++b) {
    std::string label = b == 0 ? "<" + count(kSideBuckets[0])
                        : b == kSideBuckets.size() ? ">=" + count(kSideBuckets.back())
                                                   : count(kSideBuckets[b - 1]) + "-" + count(kSideBuckets[b] - 1);
    os << (b ? " |" : "") << " " << label << ": " << r.shorter_side[b];
  }
  os << "\naspect (width/height):";
  for (size_t b = 0; b < r.aspect.size(); ++b) {
    auto num = [](double v) {
      std::ostringstream s;
      s << v;
      return s.str();
    };
    std::string label = b == 0 ? "<" + num(kAspectBuckets[0])
                        : b == kAspectBuckets.size() ? ">=" + num(kAspectBuckets.back())
                                                     : num(kAspectBuckets[b - 1]) + "-" + num(kAspectBuckets[b]);
    os << (b ? " |" : "") << " " << label << ": " << r.aspect[b];
  }
  os << "\n";
  if (!r.bad_files.empty()) {
    const size_t listed = std::min(max_listed, r.bad_files.size());
    os << "bad files (" << listed << " of " << r.bad_files.size() << "):\n";
    for (size_t i = 0; i < listed; ++i) os << "  " << r.bad_files[i].first << ": " << r.bad_files[i].second << "\n";
  }
  os << "result      " << (check_passes(r, data) ? "ok" : "too many bad files") << "\n";
  return os.str();
}

double peak_rss_mib() { return status_mib("VmHWM:"); }
double current_rss_mib() { return status_mib("VmRSS:"); }

int data_main(int argc, char** argv) {
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit fails the write (exit 5) instead of killing us
  return guarded("gan-data", [&]() -> int {
    CLI::App app{"gan-data: build the preprocessed data cache, check an image folder, measure the input pipeline"};
    app.require_subcommand(1);
    CommonOptions co;
    auto add_common = [&](CLI::App* sub) {
      sub->add_option("-c,--config", co.config, "config file (.cfg); its data and model sections are used")
          ->check(CLI::ExistingFile);
      sub->add_option("--set", co.sets, "override a key: section.key=value (repeatable)")->take_all();
      sub->add_option("--image-size", co.image_size, "model.image_size");
      sub->add_option("--channels", co.channels, "model.channels (1 or 3)");
      sub->add_option("--cache", co.cache, "data.cache: auto | off | FOLDER");
      sub->add_option("--workers", co.workers, "data.workers: decoding threads (0 = all cores)");
    };
    bool force = false;
    CLI::App* prepare = app.add_subcommand("prepare", "build or refresh the data cache of a folder dataset");
    prepare->add_option("--folder", co.folder, "image folder (sets data.source: folder, data.path)");
    add_common(prepare);
    prepare->add_flag("--force", force, "rebuild even when the cache is valid");
    CLI::App* check = app.add_subcommand("check", "decode every image of a folder and report bad files, modes, sizes");
    check->add_option("dir", co.folder, "image folder (default: data.path of --config)");
    add_common(check);
    BenchOptions bo;
    CLI::App* bench = app.add_subcommand("bench", "measure decoding, cache streaming and raw cache reads (img/s, RSS)");
    bench->add_option("--folder", co.folder, "image folder to decode and cache");
    add_common(bench);
    bench->add_option("--batch", bo.batch, "batch size")->check(CLI::Range(1, 65536));
    bench->add_option("--decode-images", bo.decode_images, "images to decode for the decoding figure (0 = all)");
    bench->add_option("--stream-images", bo.stream_images, "stream at least this many images from the cache");
    bench->add_option("--synthetic", bo.synthetic, "write a cache of N random images (no folder) and stream it");
    bench->add_option("--photos", bo.photos, "write N photo-like JPEGs (no folder), measure decoding them, delete them");
    bench->add_option("--photo-size", bo.photo_size, "WIDTHxHEIGHT of --photos (default 178x218, CelebA's)");
    bench->add_option("--cache-dir", bo.cache_dir, "where --synthetic/--photos write (default: $TMPDIR/gan-data-bench)");
    bench->add_flag("--keep", bo.keep, "keep the --synthetic cache or the --photos (and reuse kept ones)");
    bench->add_flag("--rebuild", bo.rebuild, "rebuild the folder's cache (measures building)");
    if (int code = parse_command_line(app, argc, argv, "gan-data"); code >= 0) return code;
    if (prepare->parsed()) return run_prepare(resolve(co), force);
    if (check->parsed()) {
      const bool sized = !co.config.empty() || co.image_size > 0;
      const std::string dir = co.folder;
      co.folder.clear();
      Config cfg = resolve(co);
      const std::string folder = !dir.empty() ? dir : cfg.data.source == "folder" ? cfg.data.path : std::string();
      if (folder.empty())
        throw UserError(kExitUsage, "gan-data check: name the folder (gan-data check DIR) or give a config with "
                                    "data.source: folder");
      CheckReport r = check_folder(folder, cfg.data, sized ? cfg.model.image_size : 0);
      std::fputs(format_check_report(r, cfg.data, sized ? cfg.model.image_size : 0).c_str(), stdout);
      std::fflush(stdout);
      if (!check_passes(r, cfg.data))
        throw UserError(kExitData, std::to_string(r.bad) + " of the " + std::to_string(r.files) + " files under " +
                                       folder + " cannot be used, more than data.max_bad_fraction = " +
                                       std::to_string(cfg.data.max_bad_fraction).substr(0, 4));
      return kExitOk;
    }
    return run_bench(resolve(co, 64, 3), bo);
  });
}

}  // namespace gan

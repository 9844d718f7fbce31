// The preprocessed data cache of a folder source: every image decoded once to bytes [channels, size, size] and
// stored in one file, read back with pread (see ImageCache).
//
//   <stem>.data    4096-byte header, then one slot of channels*size*size bytes per source file, in listing order
//                  (zeros for bad files)
//   <stem>.index   format version, the settings that change pixels (image_size, channels, background,
//                  min_image_size), a build id shared with the .data header, and per source file: its path relative
//                  to the folder, size, mtime (ns), the checksum of its bytes or why it was skipped; then a checksum of
//                  the whole index.
//
// A cache is used only when all of that matches the folder listing and the config; anything else (a changed, added
// or removed file, other settings, a truncated or corrupt file, a .data from another build) rebuilds it. Both files
// are written to a temporary file, fsynced and renamed (.data first, then .index), so an interrupted build leaves
// no cache that is trusted later. Every image's checksum is verified when it is read; a mismatch falls back to
// decoding that file and drops the index so that the next start rebuilds. Images are read with pread into the
// batch buffer, so the cache never counts in the process's resident memory (the kernel's page cache holds what
// fits); a mapping was measured slower and grows RSS with every page it touches.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gan/config.h"
#include "gan/image_source.h"

namespace gan {

// Bump when the bytes a file decodes to change (decode.h: decode_to_chw, prepare_image, the decoders) or when the
// layout changes. 2: JPEGs through libjpeg-turbo, downscaled in the DCT domain.
constexpr std::uint32_t kCacheFormatVersion = 2;

// Everything that changes the cached bytes.
struct CacheSettings {
  int image_size = 0;
  int channels = 0;
  std::string background = "#ffffff";
  int min_image_size = 0;
  bool operator==(const CacheSettings& o) const {
    return image_size == o.image_size && channels == o.channels && background == o.background &&
           min_image_size == o.min_image_size;
  }
  bool operator!=(const CacheSettings& o) const { return !(*this == o); }
};

CacheSettings cache_settings(const DataConfig& data, int image_size, int channels);

// One source file as the index records it.
struct CacheEntry {
  std::string path;            // relative to the folder
  std::uint64_t size = 0;      // bytes
  std::int64_t mtime_ns = 0;   // modification time, ns since the epoch
  std::uint64_t checksum = 0;  // of its cached bytes (good files)
  std::string error;           // why it was skipped ("" = good)
};

// size and mtime of `files` (paths under `folder`, as list_image_files returns them). Throws UserError(kExitData)
// naming a file that vanished.
std::vector<CacheEntry> stat_sources(const std::string& folder, const std::vector<std::string>& files);

// Folders to look for / put the cache of `folder` in, by data.cache: "auto" -> <folder>/.gan-cache, then
// $XDG_CACHE_HOME/gan-trainer (or ~/.cache/gan-trainer); "off" -> none; anything else -> that folder.
std::vector<std::string> cache_dirs(const std::string& folder, const std::string& setting);
// <dir>/<name> without extension; the name encodes the settings, plus the folder's name and a hash of its absolute
// path when `dir` is not the folder's own .gan-cache.
std::string cache_stem(const std::string& dir, const std::string& folder, const CacheSettings& s);

// 64-bit checksum of a byte range (the per-image check; several GB/s).
std::uint64_t cache_checksum(const std::uint8_t* p, std::size_t n);

// An opened, structurally valid cache (its .data file held open for positional reads).
class ImageCache {
 public:
  // Opens <stem>.index and <stem>.data. Returns nullptr and fills `why` when either is missing, unreadable,
  // truncated, corrupt, of another format version, or the two come from different builds.
  static std::unique_ptr<ImageCache> open(const std::string& stem, std::string& why);
  ~ImageCache();
  ImageCache(const ImageCache&) = delete;
  ImageCache& operator=(const ImageCache&) = delete;

  const CacheSettings& settings() const { return settings_; }
  const std::vector<CacheEntry>& entries() const { return entries_; }
  std::size_t image_bytes() const { return per_; }
  std::uint64_t file_bytes() const { return file_bytes_; }
  const std::string& stem() const { return stem_; }
  std::string data_path() const { return stem_ + ".data"; }
  std::string index_path() const { return stem_ + ".index"; }
  std::int64_t bad_files() const;

  // Reads image i (a good entry) into dst and verifies its checksum; false on a read error or a mismatch.
  // Thread-safe.
  bool read(std::int64_t i, std::uint8_t* dst);
  // Tells the kernel how the next reads go (sequential: read ahead aggressively; else random, the default).
  void advise_sequential(bool sequential);

 private:
  ImageCache() = default;
  std::string stem_;
  CacheSettings settings_;
  std::vector<CacheEntry> entries_;
  std::uint64_t build_id_ = 0;
  std::size_t per_ = 0;
  std::uint64_t file_bytes_ = 0;
  int fd_ = -1;
};

// Produces image i into dst ([C, S, S] bytes); returns false with `error` when the file cannot be used.
using ProduceImage = std::function<bool(std::int64_t i, std::uint8_t* dst, std::string& error)>;

struct BuildStats {
  std::int64_t images = 0;  // good images written
  std::int64_t bad = 0;     // files skipped
  double seconds = 0;
};

// Writes <stem>.data and <stem>.index for `entries` (path/size/mtime filled; checksum/error are set here), calling
// `produce` on `workers` threads (0 = all cores). Logs one warning per bad file (when `warn_bad`) and a progress
// line every 10 s. Throws UserError(kExitIo) when the location cannot be written (no partial cache is left), and
// UserError(kExitData) as soon as more than max_bad_fraction of all files are certain to be bad.
BuildStats build_cache(const std::string& stem, const std::string& folder, const CacheSettings& settings,
                       std::vector<CacheEntry>& entries, const ProduceImage& produce, int workers,
                       double max_bad_fraction, bool warn_bad = true);

// What open_folder_cache did.
struct CacheOutcome {
  std::unique_ptr<ImageSource> source;  // the cached source, or the fallback when not cached
  bool cached = false;                  // source serves from the cache
  bool built = false;                   // a cache was (re)built now (else a valid one was reused)
  std::string stem;                     // the cache used or built ("" when none)
  std::string reason;                   // why it was built, or why there is no cache (the warning)
  BuildStats stats;                     // of the build
  std::vector<CacheEntry> bad;          // files the cache records as bad
};

// The folder source's cache: reuses a valid one among cache_dirs(), else builds one in the first location that
// can be written. `files` are the files used (list_image_files, cut to data.max_images); a cache built for more
// files of the same listing serves a prefix. When data.cache is off, or no location can be written, the outcome
// holds `fallback` (decoding on the fly) and `reason` says why (the caller warns). `force` rebuilds even a valid
// cache. Logs progress and reuse at info level. Throws
// UserError(kExitData) when more than data.max_bad_fraction of the files are bad.
CacheOutcome open_folder_cache(const DataConfig& data, int image_size, int channels,
                               const std::vector<std::string>& files, std::unique_ptr<ImageSource> fallback,
                               bool force = false);

// A source reading the first `count` images of `cache`; `fallback` (may be null) decodes an image whose cached
// bytes fail their checksum. `label` names the data in messages.
std::unique_ptr<ImageSource> make_cached_source(std::shared_ptr<ImageCache> cache, std::int64_t count,
                                                std::unique_ptr<ImageSource> fallback, const std::string& label);

}  // namespace gan

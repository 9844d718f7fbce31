// gan-data: build the preprocessed cache, inspect an image folder, measure the input pipeline.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gan/config.h"

namespace gan {

// What `gan-data check` finds in a folder (every file is decoded, nothing is trained).
struct CheckReport {
  std::string folder;
  std::int64_t files = 0;
  std::int64_t bad = 0;        // cannot be used: undecodable, refused, or below data.min_image_size
  std::int64_t too_small = 0;  // of those, decodable but below data.min_image_size
  std::int64_t upscaled = 0;   // usable but with a shorter side below the target image size (when given)
  std::vector<std::pair<std::string, std::string>> bad_files;  // path, reason (all of them, in listing order)
  std::map<std::string, std::int64_t> formats;  // "JPEG" -> files
  std::map<std::string, std::int64_t> modes;    // "JPEG RGB", "PNG palette", "PNG RGB 16-bit", ... -> files
  std::int64_t progressive_jpeg = 0;
  std::int64_t cmyk_jpeg = 0;  // 4-component JPEGs (CMYK or YCCK)
  std::vector<std::int64_t> shorter_side;  // histogram over kSideBuckets (decodable files)
  std::vector<std::int64_t> aspect;        // histogram of width/height over kAspectBuckets (decodable files)
  double seconds = 0;
};

// Upper bounds (exclusive) of the size-histogram buckets; the last bucket is open-ended.
inline const std::vector<int> kSideBuckets = {32, 64, 128, 256, 512, 1024};
inline const std::vector<double> kAspectBuckets = {0.5, 0.8, 1.25, 2.0};

// Decodes every image file under `dir` (list_image_files) on `data.workers` threads. `image_size` > 0 counts the
// images smaller than it. Throws UserError(kExitData) when the folder is missing or holds no image files.
CheckReport check_folder(const std::string& dir, const DataConfig& data, int image_size = 0);
// The report as text; at most `max_listed` bad files are named.
std::string format_check_report(const CheckReport& r, const DataConfig& data, int image_size = 0,
                                size_t max_listed = 20);
// True when the bad fraction is within data.max_bad_fraction.
bool check_passes(const CheckReport& r, const DataConfig& data);

// Peak and current resident memory of this process in MiB (VmHWM, VmRSS from /proc/self/status; 0 if unknown).
double peak_rss_mib();
double current_rss_mib();

// `gan-data prepare | check | bench`; returns the exit code, never throws.
int data_main(int argc, char** argv);

}  // namespace gan

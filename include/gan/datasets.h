// Image sources: IDX arrays (Fashion-MNIST, MNIST) held in memory, and folders of image files decoded on demand.
// Data code depends on the config only, never on the models.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gan/config.h"

namespace gan {

class ImageSource {
 public:
  ImageSource(int image_size, int channels) : image_size_(image_size), channels_(channels) {}
  virtual ~ImageSource() = default;
  int image_size() const { return image_size_; }
  int channels() const { return channels_; }
  // True when load() is a memory copy (no point decoding on several threads).
  virtual bool in_memory() const { return false; }
  virtual std::int64_t size() const = 0;
  // Writes image i as bytes [channels, image_size, image_size] into dst. Returns false, after logging one warning
  // for that file, when it cannot be decoded. Safe to call from several threads at once.
  virtual bool load(std::int64_t i, std::uint8_t* dst) = 0;
  // Files that failed to decode so far.
  virtual std::int64_t bad_count() const { return 0; }
  // Throws UserError(kExitData) when so many files have failed that the dataset is probably wrong
  // (data.max_bad_fraction). Called by the loader after every batch.
  virtual void check_health() const {}
  // One line for the log: what was opened, how many images.
  virtual std::string description() const = 0;

  // Class labels: IDX label files next to the images, or a folder's first sub-directory names. Without labels
  // num_classes() is 0 and label() -1.
  int num_classes() const { return static_cast<int>(class_names_.size()); }
  int label(std::int64_t i) const { return labels_.empty() ? -1 : labels_[static_cast<size_t>(i)]; }
  const std::vector<std::string>& class_names() const { return class_names_; }
  // labels[i] in [0, names.size()) for every image i (labels.size() == size()).
  void set_labels(std::vector<std::int32_t> labels, std::vector<std::string> names);

 private:
  int image_size_, channels_;
  std::vector<std::int32_t> labels_;
  std::vector<std::string> class_names_;
};

// Default location of Debian's dataset-fashion-mnist.
constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Opens the source named by `data` at the model's size and channels. A folder source is served from its data cache
// (cache.h; built first when missing or stale) unless data.cache is off or no cache can be written (then one
// warning, and the files are decoded on the fly). Throws UserError(kExitData) when the path is missing or holds no
// images, or when the data cache finds more than data.max_bad_fraction of the files unusable (decoding on the fly,
// the loader stops on that instead, once it has tried enough files).
std::unique_ptr<ImageSource> open_dataset(const DataConfig& data, int image_size, int channels);

// Class of each file from its first sub-directory under `dir` ("dir/cat/x/1.png" -> "cat"), names sorted. Returns
// false (labels empty) when any file lies directly in `dir`.
bool folder_labels(const std::string& dir, const std::vector<std::string>& files, std::vector<std::int32_t>& labels,
                   std::vector<std::string>& names);

// Image files under `dir`, recursively, sorted (extensions jpg jpeg png bmp tga gif, any case).
std::vector<std::string> list_image_files(const std::string& dir);
// The files a folder source uses: list_image_files(data.path) cut to data.max_images. Throws UserError(kExitData)
// when the folder is missing or holds no images.
std::vector<std::string> folder_files(const DataConfig& data);

// Decodes one image file into bytes [channels, size, size] exactly as a folder source does (decode, refuse images
// below data.min_image_size, composite on data.background, crop, resize, convert). Returns false and fills `error`
// when the file is unusable. Thread-safe, logs nothing. (The data cache stores its output: change it and bump
// kCacheFormatVersion in cache.h.)
bool decode_to_chw(const std::string& path, int size, int channels, const DataConfig& data, std::uint8_t* dst,
                   std::string& error);

}  // namespace gan

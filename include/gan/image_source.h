// The interface every image source implements (IDX arrays, folders decoded on the fly, the data cache), on its own
// so that the cache and the loader depend on it and not on the sources that open datasets.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace gan

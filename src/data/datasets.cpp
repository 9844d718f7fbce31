#include "gan/datasets.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "gan/cache.h"
#include "gan/errors.h"
#include "gan/idx.h"
#include "gan/decode.h"

namespace gan {
namespace fs = std::filesystem;

void ImageSource::set_labels(std::vector<std::int32_t> labels, std::vector<std::string> names) {
  if (static_cast<std::int64_t>(labels.size()) != size())
    throw std::logic_error("set_labels: " + std::to_string(labels.size()) + " labels for " + std::to_string(size()) +
                           " images");
  labels_ = std::move(labels);
  class_names_ = std::move(names);
}

bool folder_labels(const std::string& dir, const std::vector<std::string>& files, std::vector<std::int32_t>& labels,
                   std::vector<std::string>& names) {
  labels.clear();
  names.clear();
  std::vector<std::string> cls;
  cls.reserve(files.size());
  const fs::path root = fs::path(dir).lexically_normal();
  for (const auto& f : files) {
    fs::path rel = fs::path(f).lexically_normal().lexically_relative(root);
    auto it = rel.begin();
    if (it == rel.end() || std::next(it) == rel.end() || it->string() == "..") return false;  // directly in `dir`
    cls.push_back(it->string());
  }
  names = cls;
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  labels.reserve(cls.size());
  for (const auto& c : cls)
    labels.push_back(static_cast<std::int32_t>(std::lower_bound(names.begin(), names.end(), c) - names.begin()));
  return true;
}

namespace {

// All images of one or more IDX files, converted once to [N, channels, size, size] bytes.
class IdxSource final : public ImageSource {
 public:
  IdxSource(const std::vector<std::string>& files, std::int64_t max_images, int size, int channels, const Rgb& bg)
      : ImageSource(size, channels), files_(files) {
    std::vector<std::uint8_t> all;
    std::int64_t n = 0;
    const size_t per = static_cast<size_t>(channels) * size * size;
    for (const auto& f : files) {
      IdxArray a = read_idx(f);
      if (a.dims.size() != 3 && !(a.dims.size() == 4 && (a.dims[3] == 1 || a.dims[3] == 3)))
        throw UserError(kExitData, "IDX file " + f + ": expected images [N, rows, cols] or [N, rows, cols, 1|3]");
      const int h = static_cast<int>(a.dims[1]), w = static_cast<int>(a.dims[2]);
      const int c = a.dims.size() == 4 ? static_cast<int>(a.dims[3]) : 1;
      std::int64_t count = a.dims[0];
      if (max_images > 0) count = std::min(count, max_images - n);
      all.resize(all.size() + static_cast<size_t>(count) * per);
      Image img;
      img.width = w;
      img.height = h;
      img.channels = c;
      const size_t in_per = static_cast<size_t>(h) * w * c;
      for (std::int64_t i = 0; i < count; ++i) {
        img.pixels.assign(a.data.begin() + i * in_per, a.data.begin() + (i + 1) * in_per);
        Image p = prepare_image(img, channels, size, bg);
        to_chw(p, &all[(n + i) * per]);
      }
      n += count;
      if (max_images > 0 && n >= max_images) break;
    }
    n_ = n;
    images_ = torch::from_blob(all.data(), {n, channels, size, size}, torch::kUInt8).clone();
    per_ = per;
  }
  std::int64_t size() const override { return n_; }
  bool in_memory() const override { return true; }
  bool load(std::int64_t i, std::uint8_t* dst) override {
    std::memcpy(dst, images_.data_ptr<std::uint8_t>() + i * per_, per_);
    return true;
  }
  std::string description() const override {
    std::string names;
    for (const auto& f : files_) names += (names.empty() ? "" : ", ") + f;
    return std::to_string(n_) + " images from " + names;
  }

 private:
  std::vector<std::string> files_;
  std::int64_t n_ = 0;
  size_t per_ = 0;
  torch::Tensor images_;
};

class FolderSource : public ImageSource {
 public:
  FolderSource(std::string dir, std::vector<std::string> files, int size, int channels, const DataConfig& data)
      : ImageSource(size, channels), dir_(std::move(dir)), files_(std::move(files)),
        spec_(decode_spec(data, size, channels)), max_bad_fraction_(data.max_bad_fraction),
        bad_(files_.size()), tried_(files_.size()) {}
  std::int64_t size() const override { return static_cast<std::int64_t>(files_.size()); }
  bool load(std::int64_t i, std::uint8_t* dst) override {
    std::string error;
    if (bad_[i].load(std::memory_order_relaxed)) return false;
    if (!tried_[i].exchange(true)) ++tried_count_;
    if (!decode_to_chw(files_[i], spec_, dst, error)) {
      if (!bad_[i].exchange(true)) {
        ++bad_count_;
        spdlog::warn("skipping {}: {}", files_[i], error);
      }
      return false;
    }
    return true;
  }
  std::int64_t bad_count() const override { return bad_count_.load(); }
  void check_health() const override {
    const std::int64_t bad = bad_count_.load(), tried = tried_count_.load();
    const std::int64_t enough = std::min<std::int64_t>(20, static_cast<std::int64_t>(files_.size()));
    if (tried >= enough && bad > max_bad_fraction_ * static_cast<double>(tried))
      throw UserError(kExitData, std::to_string(bad) + " of the " + std::to_string(tried) + " files tried under " +
                                     dir_ + " could not be decoded, more than data.max_bad_fraction = " +
                                     std::to_string(max_bad_fraction_).substr(0, 4) +
                                     "; check the folder (warnings above name each file) or raise the limit");
  }
  std::string description() const override {
    return std::to_string(files_.size()) + " image files under " + dir_;
  }

 private:
  std::string dir_;
  std::vector<std::string> files_;
  DecodeSpec spec_;
  double max_bad_fraction_;
  std::vector<std::atomic<bool>> bad_, tried_;
  std::atomic<std::int64_t> bad_count_{0}, tried_count_{0};
};

std::vector<std::string> idx_files(const DataConfig& data) {
  if (data.source != "fashion-mnist" && data.path.empty())
    throw UserError(kExitData, "data.source is " + data.source + " but data.path is empty; set it to the " +
                                   (data.source == "mnist" ? "folder holding the MNIST IDX files" : "IDX images file"));
  const std::string dir = data.path.empty() ? std::string(kFashionMnistDir) : data.path;
  if (data.source == "idx" && !fs::is_directory(dir)) return {dir};
  if (!fs::is_directory(dir))
    throw UserError(kExitData, "data.path " + dir + " is not a folder" +
                                   (data.path.empty() ? "; install it with: apt-get install dataset-fashion-mnist"
                                                      : "; point data.path at the folder holding the IDX files"));
  auto pick = [&](const std::string& prefix) {
    for (const char* suffix : {"-images-idx3-ubyte.gz", "-images-idx3-ubyte", "-images.idx3-ubyte"}) {
      std::string p = dir + "/" + prefix + suffix;
      if (fs::exists(p)) return p;
    }
    throw UserError(kExitData, "no " + prefix + "-images-idx3-ubyte[.gz] in " + dir +
                                   " (expected the standard MNIST file names)");
  };
  std::vector<std::string> out;
  if (data.split == "train" || data.split == "all") out.push_back(pick("train"));
  if (data.split == "test" || data.split == "all") out.push_back(pick("t10k"));
  return out;
}

// The label file of an IDX images file: data.labels when set, else the name with "images-idx3" -> "labels-idx1".
// Missing label files leave the source unlabelled (a conditional model then refuses it).
void attach_idx_labels(IdxSource& src, const std::vector<std::string>& image_files, const DataConfig& data) {
  std::vector<std::int32_t> labels;
  int max_label = -1;
  for (const auto& f : image_files) {
    std::string lf = data.labels;
    if (lf.empty() || image_files.size() > 1) {
      lf = f;
      auto at = lf.rfind("images-idx3");
      if (at == std::string::npos) at = lf.rfind("images.idx3");
      if (at == std::string::npos) return;
      lf.replace(at, 11, lf.compare(at, 11, "images-idx3") == 0 ? "labels-idx1" : "labels.idx1");
      if (!fs::exists(lf)) return;
    }
    IdxArray a = read_idx(lf);
    if (a.dims.size() != 1) throw UserError(kExitData, "IDX label file " + lf + ": expected one dimension [N]");
    for (std::uint8_t v : a.data) {
      if (static_cast<std::int64_t>(labels.size()) >= src.size()) break;
      labels.push_back(v);
      max_label = std::max<int>(max_label, v);
    }
  }
  if (static_cast<std::int64_t>(labels.size()) != src.size())
    throw UserError(kExitData, "IDX label files hold " + std::to_string(labels.size()) + " labels for " +
                                   std::to_string(src.size()) + " images (" + image_files.front() + ")");
  std::vector<std::string> names;
  static const char* kFashion[] = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                   "sandal",  "shirt",   "sneaker",  "bag",   "ankle-boot"};
  const bool fashion = data.source == "fashion-mnist" && max_label < 10;
  for (int c = 0; c <= max_label; ++c) names.push_back(fashion ? kFashion[c] : std::to_string(c));
  src.set_labels(std::move(labels), std::move(names));
}

}  // namespace

std::vector<std::string> list_image_files(const std::string& dir) {
  static const std::vector<std::string> exts = {".jpg", ".jpeg", ".png", ".bmp", ".tga", ".gif"};
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink |
                                                    fs::directory_options::skip_permission_denied,
                                           ec),
       end;
       !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::string ext = it->path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (std::find(exts.begin(), exts.end(), ext) != exts.end()) files.push_back(it->path().string());
  }
  if (ec) throw UserError(kExitData, "cannot list " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::string> folder_files(const DataConfig& data) {
  if (!fs::is_directory(data.path))
    throw UserError(kExitData, "data.path " + data.path + " is not a folder; see data/README.md for where to put images");
  auto files = list_image_files(data.path);
  if (files.empty())
    throw UserError(kExitData, "data.path " + data.path +
                                   " holds no .jpg/.jpeg/.png/.bmp/.tga/.gif files (searched recursively)");
  if (data.max_images > 0 && static_cast<std::int64_t>(files.size()) > data.max_images) files.resize(data.max_images);
  return files;
}

std::unique_ptr<ImageSource> open_dataset(const DataConfig& data, int image_size, int channels) {
  const Rgb bg = parse_colour(data.background);
  if (data.source == "folder") {
    auto files = folder_files(data);
    if (data.cache == "off") {
      auto src = std::make_unique<FolderSource>(data.path, files, image_size, channels, data);
      std::vector<std::int32_t> labels;
      std::vector<std::string> names;
      if (folder_labels(data.path, files, labels, names)) src->set_labels(std::move(labels), std::move(names));
      return src;
    }
    // The preprocessed cache (cache.h); it decodes through the same decode_to_chw, so the bytes are identical.
    auto folder = std::make_unique<FolderSource>(data.path, files, image_size, channels, data);
    CacheOutcome cache = open_folder_cache(data, image_size, channels, files, std::move(folder));
    if (!cache.cached) spdlog::warn("{}", cache.reason);
    std::vector<std::int32_t> labels;
    std::vector<std::string> names;
    if (folder_labels(data.path, files, labels, names)) cache.source->set_labels(std::move(labels), std::move(names));
    return std::move(cache.source);
  }
  const auto files = idx_files(data);
  auto src = std::make_unique<IdxSource>(files, data.max_images, image_size, channels, bg);
  if (src->size() == 0) throw UserError(kExitData, "the dataset " + src->description() + " is empty");
  attach_idx_labels(*src, files, data);
  return src;
}

}  // namespace gan

// Image sources: IDX arrays (Fashion-MNIST, MNIST) held in memory, and folders of image files decoded on demand
// (decode.h) or served from the data cache (cache.h). Data code depends on the config only, never on the models.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gan/config.h"
#include "gan/image_source.h"

namespace gan {

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

}  // namespace gan

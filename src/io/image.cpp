#include "gan/image.h"

#include <stb/stb_image_write.h>
#include <torch/torch.h>

#include "gan/errors.h"
#include "gan/files.h"

namespace gan {

Image make_grid(const at::Tensor& images, int nrow, int padding, std::uint8_t pad_value) {
  TORCH_CHECK(images.dim() == 4, "make_grid expects [N, C, H, W], got ", images.sizes());
  auto x = images.detach().to(torch::kCPU, torch::kFloat);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  TORCH_CHECK(c == 1 || c == 3, "make_grid expects 1 or 3 channels");
  const int64_t cols = std::min<int64_t>(nrow, n), rows = (n + cols - 1) / cols;
  const int64_t gh = rows * (h + padding) + padding, gw = cols * (w + padding) + padding;
  // [N, C, H, W] in [-1, 1] -> [N, H, W, C] bytes.
  auto bytes = x.add(1).div_(2).mul_(255).add_(0.5).clamp_(0, 255).to(torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
  Image grid;
  grid.width = static_cast<int>(gw);
  grid.height = static_cast<int>(gh);
  grid.channels = static_cast<int>(c);
  grid.pixels.assign(static_cast<size_t>(gh * gw * c), pad_value);
  const std::uint8_t* src = bytes.data_ptr<std::uint8_t>();
  for (int64_t k = 0; k < n; ++k) {
    const int64_t top = (k / cols) * (h + padding) + padding, left = (k % cols) * (w + padding) + padding;
    for (int64_t y = 0; y < h; ++y)
      std::copy_n(src + ((k * h + y) * w) * c, w * c, grid.pixels.data() + ((top + y) * gw + left) * c);
  }
  return grid;
}

std::string encode_png(const Image& image) {
  std::string bytes;
  auto sink = [](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  if (!stbi_write_png_to_func(sink, &bytes, image.width, image.height, image.channels, image.pixels.data(),
                              image.width * image.channels))
    return "";
  return bytes;
}

void write_png(const std::string& path, const Image& image) {
  const std::string bytes = encode_png(image);
  if (bytes.empty()) throw UserError(kExitIo, "cannot encode PNG " + path);
  write_file_atomic(path, bytes);
}

}  // namespace gan

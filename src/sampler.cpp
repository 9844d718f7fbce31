#include "gan/sampler.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdio>

#include "gan/checkpoint.h"
#include "gan/errors.h"
#include "gan/files.h"
#include "gan/image.h"
#include "gan/models.h"
#include "gan/platform.h"

namespace gan {

int sample(const SampleOptions& opts) {
  if (opts.out.empty() && opts.individual.empty())
    throw UserError(kExitUsage, "nothing to write: give --out grid.png and/or --individual DIR");
  const c10::Device device = resolve_device(opts.device);
  configure_threads(0);
  SamplingModel model = load_generator(opts.checkpoint, device);
  const Config& cfg = model.cfg;
  Generator& g = model.g;

  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(opts.seed));
  at::Tensor z = sample_latent(cfg.model, opts.n, gen);  // [n, nz] on CPU: the same images on any device
  at::Tensor y = cfg.model.conditional ? sample_labels(cfg.model, opts.n, gen) : at::Tensor();  // [n]
  at::Tensor images;
  std::vector<at::Tensor> chunks;
  for (std::int64_t i = 0; i < opts.n; i += 256) {
    const std::int64_t k = std::min<std::int64_t>(256, opts.n - i);
    chunks.push_back(g->forward(z.narrow(0, i, k).to(device), y.defined() ? y.narrow(0, i, k).to(device) : y).cpu());
  }  // [<=256, C, S, S] each
  images = torch::cat(chunks);
  int written = 0;
  if (!opts.out.empty()) {
    write_png(opts.out, make_grid(images, opts.nrow));
    spdlog::info("wrote {} ({} images, {}x{})", opts.out, opts.n, cfg.model.image_size, cfg.model.image_size);
    ++written;
  }
  if (!opts.individual.empty()) {
    make_dirs(opts.individual);
    for (int i = 0; i < opts.n; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "/%06d.png", i);
      write_png(opts.individual + name, make_grid(images.narrow(0, i, 1), 1, /*padding=*/0));
      ++written;
    }
    spdlog::info("wrote {} images to {}", opts.n, opts.individual);
  }
  return written;
}

}  // namespace gan

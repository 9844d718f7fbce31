#include "gan/models.h"

#include <torch/torch.h>

#include "gan/errors.h"

namespace gan {
namespace nn = torch::nn;

int channel_mult(const ModelConfig& cfg, int resolution) {
  int mult = 1;
  for (int r = cfg.image_size / 2; r > resolution; r /= 2) mult *= 2;
  return std::min(mult, cfg.max_mult);
}

namespace {
nn::ConvTranspose2d up(int in, int out, int stride, int pad) {
  return nn::ConvTranspose2d(nn::ConvTranspose2dOptions(in, out, 4).stride(stride).padding(pad).bias(false));
}
nn::Conv2d down(int in, int out, int stride, int pad) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 4).stride(stride).padding(pad).bias(false));
}
}  // namespace

GeneratorImpl::GeneratorImpl(const ModelConfig& cfg) : cfg_(cfg) {
  const int g = cfg.ngf;
  int ch = g * channel_mult(cfg, 4);
  main_->push_back(up(cfg.nz, ch, 1, 0));  // [N, ngf*m, 4, 4]
  main_->push_back(nn::BatchNorm2d(ch));
  main_->push_back(nn::ReLU(true));
  for (int res = 8; res < cfg.image_size; res *= 2) {
    int next = g * channel_mult(cfg, res);
    main_->push_back(up(ch, next, 2, 1));  // [N, ngf*m/2 (capped), res, res]
    main_->push_back(nn::BatchNorm2d(next));
    main_->push_back(nn::ReLU(true));
    ch = next;
  }
  main_->push_back(up(ch, cfg.channels, 2, 1));  // [N, channels, image_size, image_size]
  main_->push_back(nn::Tanh());
  register_module("main", main_);
}

torch::Tensor GeneratorImpl::forward(const torch::Tensor& z) {
  TORCH_CHECK(z.dim() == 2 || z.dim() == 4, "generator input must be [N, nz] or [N, nz, 1, 1]");
  TORCH_CHECK(z.size(1) == cfg_.nz, "generator expects nz = ", cfg_.nz, ", got ", z.size(1));
  auto out = main_->forward(z.dim() == 2 ? z.view({z.size(0), cfg_.nz, 1, 1}) : z);
  return out;  // [N, channels, image_size, image_size]
}

DiscriminatorImpl::DiscriminatorImpl(const ModelConfig& cfg) : cfg_(cfg) {
  const int d = cfg.ndf;
  int ch = d;
  main_->push_back(down(cfg.channels, ch, 2, 1));  // [N, ndf, S/2, S/2]
  main_->push_back(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2).inplace(true)));
  for (int res = cfg.image_size / 4; res >= 4; res /= 2) {
    int next = d * channel_mult(cfg, res);
    main_->push_back(down(ch, next, 2, 1));  // [N, ndf*m, res, res]
    main_->push_back(nn::BatchNorm2d(next));
    main_->push_back(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2).inplace(true)));
    ch = next;
  }
  main_->push_back(down(ch, 1, 1, 0));  // [N, 1, 1, 1]: one logit per image
  register_module("main", main_);
}

torch::Tensor DiscriminatorImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == cfg_.channels && x.size(2) == cfg_.image_size &&
                  x.size(3) == cfg_.image_size,
              "discriminator expects [N, ", cfg_.channels, ", ", cfg_.image_size, ", ", cfg_.image_size, "], got ",
              x.sizes());
  auto logits = main_->forward(x);  // [N, 1, 1, 1]
  TORCH_CHECK(logits.dim() == 4 && logits.size(1) == 1 && logits.size(2) == 1 && logits.size(3) == 1,
              "discriminator produced ", logits.sizes(), " instead of [N, 1, 1, 1]");
  return logits.view({x.size(0)});  // [N]
}

void dcgan_init(nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) c->weight.normal_(0.0, 0.02);
    else if (auto* t = m->as<nn::ConvTranspose2d>()) t->weight.normal_(0.0, 0.02);
    else if (auto* b = m->as<nn::BatchNorm2d>()) {
      b->weight.normal_(1.0, 0.02);
      b->bias.zero_();
    }
  }
}

std::int64_t parameter_count(nn::Module& module) {
  std::int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace gan

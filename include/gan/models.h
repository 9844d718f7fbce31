// The DCGAN generator and discriminator (Radford et al. 2015), for any power-of-two size from 16 to 256.
// Both hold an nn::Sequential registered as "main", so state_dict keys match the PyTorch DCGAN example
// (main.0.weight, main.1.running_mean, ...).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include "gan/config.h"

namespace gan {

class GeneratorImpl : public torch::nn::Module {
 public:
  explicit GeneratorImpl(const ModelConfig& cfg);
  // z: [N, nz] or [N, nz, 1, 1] -> images [N, channels, image_size, image_size] in (-1, 1).
  torch::Tensor forward(const torch::Tensor& z);
  const ModelConfig& config() const { return cfg_; }

 private:
  ModelConfig cfg_;
  torch::nn::Sequential main_;
};
TORCH_MODULE(Generator);

class DiscriminatorImpl : public torch::nn::Module {
 public:
  explicit DiscriminatorImpl(const ModelConfig& cfg);
  // images [N, channels, image_size, image_size] -> one logit per image, [N].
  torch::Tensor forward(const torch::Tensor& x);
  const ModelConfig& config() const { return cfg_; }

 private:
  ModelConfig cfg_;
  torch::nn::Sequential main_;
};
TORCH_MODULE(Discriminator);

// DCGAN init: conv weights N(0, 0.02); batch-norm weight N(1, 0.02), bias 0. Uses torch's global generator.
void dcgan_init(torch::nn::Module& module);

// Channel multiplier of the feature map at `resolution` (4 .. image_size/2): 2^(log2(image_size/2 / resolution)),
// capped at max_mult. For 64x64: 8 at 4x4, 4 at 8x8, 2 at 16x16, 1 at 32x32.
int channel_mult(const ModelConfig& cfg, int resolution);

std::int64_t parameter_count(torch::nn::Module& module);

}  // namespace gan

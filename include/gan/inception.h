// The Inception-v3 of FID: the network of the TensorFlow graph that Heusel et al. (2017) used for FID (and that
// published FID and KID figures use), as pytorch-fid ported it (pytorch_fid/inception.py, FIDInceptionA/C/E_1/E_2:
// average pools that leave the padding out, and a max pool in the last block), built here in LibTorch so that
// gan-eval computes the standard FID with no Python and no download: the user gives it the weights file
// pt_inception-2015-12-05-6726825d.pth (pytorch-fid's release, ~92 MB), read by load_weights_file.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <string>
#include <vector>

#include "gan/weights.h"

namespace gan {

// Conv2d without bias, BatchNorm2d(eps 0.001), ReLU: torchvision's BasicConv2d (names conv.*, bn.*).
struct BasicConvImpl : torch::nn::Module {
  BasicConvImpl(int in, int out, int kh, int kw, int stride = 1, int ph = 0, int pw = 0);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(BasicConv);

struct FidInceptionImpl : torch::nn::Module {
  FidInceptionImpl();
  // images [N, C, S, S] in [-1, 1] (C = 1 or 3, any S) -> pool3 features [N, 2048]: quantised to 8 bits as an image
  // file would be, gray repeated to RGB, resized to 299x299 (bilinear, align_corners false, as pytorch-fid does), then
  // the network in eval mode, in chunks of `chunk` images.
  torch::Tensor features(const torch::Tensor& images, int64_t chunk = 50);
  torch::Tensor forward(const torch::Tensor& x299);  // [N, 3, 299, 299] in [-1, 1] -> [N, 2048]
  // Weights and activations in channels-last order (NHWC), which oneDNN's convolutions prefer.
  void set_channels_last(bool on);
  bool channels_last = false;
  std::vector<std::function<torch::Tensor(const torch::Tensor&)>> stages;  // the layers in order, to the last block
};
TORCH_MODULE(FidInception);

// Images per forward pass in gan-eval: 1 on the CPU (18.5 img/s against 8.6 in passes of 16 on a 2-vCPU AMD EPYC with
// AVX-512; 6.8 against 6.9 in passes of 8 with AVX2 only: gan-bench inception --chunk C), 64 on CUDA.
std::int64_t fid_inception_chunk(const c10::Device& device);

// Whether `weights` are Inception-v3's (they hold Mixed_7c's last convolution).
bool is_inception_weights(const StateDict& weights);

// Loads pytorch-fid's FID weights (its fc [1008, 2048] and the BatchNorm counters are ignored). torchvision's
// ImageNet weights (fc [1000, 2048], other pooling) or anything that does not fit: UserError(kExitUsage) naming
// `path` and what differs.
void load_fid_inception(FidInception& net, const StateDict& weights, const std::string& path);

}  // namespace gan

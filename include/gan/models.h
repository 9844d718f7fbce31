// The DCGAN generator and discriminator (Radford et al. 2015), for any power-of-two size from 16 to 256.
// Both hold an nn::Sequential registered as "main", so state_dict keys match the PyTorch DCGAN example
// (main.0.weight, main.1.running_mean, ...).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include "gan/config.h"
#include "gan/sync_batch_norm.h"
#include "gan/winograd.h"

#include <string>
#include <vector>

namespace gan {

// How a generator computes its transposed convolutions; the parameters and the function are the same either way.
enum class UpconvMode {
  kTransposed,  // torch's conv_transpose2d (on CPU a slow per-image GEMM path in this libtorch)
  kPhase,       // sub-pixel form: a 2x2 conv2d to 4x the channels, interleaved
  kGemm,        // one batched GEMM to [N*H*W, out*16] columns, summed into place by fold (col2im)
  kWinograd,    // the sub-pixel form by Winograd's F(m x m, 2 x 2) (upconv_winograd, winograd.h); CPU float32/64
                // only, kPhase elsewhere
  kAuto,        // per layer: a 1x1 input as a matmul; the form tune_upconv measured fastest for this input shape;
                // without a measurement, inputs up to 4x4 as kGemm and larger ones as kPhase
};

// The name of a form as train.upconv spells it (transposed, phase, gemm, winograd, auto), and back (throws
// std::invalid_argument for another name).
const char* upconv_name(UpconvMode mode);
UpconvMode upconv_mode(const std::string& name);

// A bias-free 4x4 transposed convolution with ConvTranspose2d's parameter ("weight" [in, out, 4, 4]) and init,
// for stride 1 / padding 0 (the first generator layer) or stride 2 / padding 1 (every later one).
class UpConvImpl : public torch::nn::Module {
 public:
  UpConvImpl(int in, int out, int stride, int padding);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  int stride, padding;
  UpconvMode mode = UpconvMode::kAuto;
  // kAuto's measured choice (tune_upconv) for inputs of side tuned_side; kAuto when not measured.
  UpconvMode tuned = UpconvMode::kAuto;
  std::int64_t tuned_side = 0;
  // The form this layer computes an input of side `side` with in `mode` (one of kTransposed, kPhase, kGemm,
  // kWinograd; the 1x1 first layer reports kGemm: it is a matmul).
  UpconvMode form_for(std::int64_t side) const;
};
TORCH_MODULE(UpConv);

// conv_transpose2d(x, w, stride 2, padding 1) for a [in, out, 4, 4] weight, computed as one 2x2 conv2d to 4*out
// channels (the four output phases) and an interleave; keeps x's memory format (channels_last in, channels_last out).
torch::Tensor upconv_phase(const torch::Tensor& x, const torch::Tensor& w);
// conv_transpose2d(z, w) for a [N, in, 1, 1] input and a [in, out, k, k] weight: a matmul. Returns [N, out, k, k].
torch::Tensor upconv_from_1x1(const torch::Tensor& z, const torch::Tensor& w);
// conv_transpose2d(x, w, stride 2, padding 1) as one batched GEMM and fold (col2im). Returns [N, out, 2H, 2W].
torch::Tensor upconv_gemm(const torch::Tensor& x, const torch::Tensor& w);

class GeneratorImpl;
class DiscriminatorImpl;

// Layers whose forward is below this many FLOPs keep kAuto's fixed rule: their timings are too short to rank the forms.
constexpr double kTuneMinFlops = 5e7;
// tune_upconv times each form on at most this many images.
constexpr std::int64_t kTuneBatch = 32;

// For each stride-2 layer of `g` (the order of the network), times forward + backward of every form that applies
// (phase, gemm, winograd) on a [min(batch, kTuneBatch), in, side, side] input of constants, on the CPU, best of 3,
// and makes the fastest that layer's kAuto choice; layers under kTuneMinFlops get their fixed-rule form. Returns the
// forms in layer order, comma-separated ("gemm,winograd,winograd,phase"), for set_upconv_forms and the checkpoint;
// `report` (optional) receives "8x8 winograd 4.1 ms (phase 5.3, gemm 7.9)"-style lines. Draws no random numbers.
std::string tune_upconv(GeneratorImpl& g, std::int64_t batch, bool channels_last,
                        std::vector<std::string>* report = nullptr);
// Makes `forms` (tune_upconv's string) the kAuto choices of g's stride-2 layers for the input sides of a
// model.image_size generator, so that a resumed run computes as the run that measured them. Throws
// std::invalid_argument when the count or a name does not fit.
void set_upconv_forms(GeneratorImpl& g, const std::string& forms);

// A bias-free 2-D convolution with Conv2d's parameter ("weight" [out, in, k, k]) and init, computed by `downconv`:
// a 4x4 stride-2 padding-1 layer can run as downconv_winograd (same function, see winograd.h).
class DownConvImpl : public torch::nn::Module {
 public:
  DownConvImpl(int in, int out, int kernel, int stride, int padding);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  int stride, padding;
  DownconvMode mode = DownconvMode::kDirect;
  DownconvMode tuned = DownconvMode::kAuto;  // kAuto's measured choice (tune_downconv) for inputs of side tuned_side
  std::int64_t tuned_side = 0;
};
TORCH_MODULE(DownConv);

// A bias-free 2-D convolution whose weight is divided by its largest singular value (Miyato et al. 2018), estimated
// by one power-iteration step per training-mode call on weight.view(out, -1); u is a buffer, so the estimate carries
// over between steps and into checkpoints. In eval mode u is not updated.
class SNConv2dImpl : public torch::nn::Module {
 public:
  SNConv2dImpl(int in, int out, int kernel, int stride, int padding);
  torch::Tensor forward(const torch::Tensor& x);
  // The current estimate of the largest singular value of weight.view(out, -1) (no update).
  torch::Tensor sigma() const;
  torch::Tensor weight, u;
  int stride, padding;
  DownconvMode mode = DownconvMode::kDirect;
  DownconvMode tuned = DownconvMode::kAuto;  // as DownConvImpl's
  std::int64_t tuned_side = 0;
};
TORCH_MODULE(SNConv2d);

// Appends the standard deviation across a group of up to 4 images (averaged over channels and pixels) as one more
// feature map (Karras et al. 2018): [N, C, H, W] -> [N, C + 1, H, W]. A batch not divisible by 4 is one group.
class MinibatchStdImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(MinibatchStd);

class GeneratorImpl : public torch::nn::Module {
 public:
  explicit GeneratorImpl(const ModelConfig& cfg);
  // z: [N, nz] or [N, nz, 1, 1] -> images [N, channels, image_size, image_size] in (-1, 1). A conditional generator
  // needs `labels` [N] (int64 class indices); others ignore it.
  torch::Tensor forward(const torch::Tensor& z, const torch::Tensor& labels = {});
  const ModelConfig& config() const { return cfg_; }
  // Selects how the transposed convolutions are computed (default kAuto).
  void set_upconv_mode(UpconvMode mode);
  // With model.sync_bn: the sum across processes that its BatchNorm layers use for global batch statistics.
  void set_batch_stats_reducer(const AllReduceSum& reduce);

 private:
  ModelConfig cfg_;
  torch::nn::Sequential main_;
  torch::nn::Embedding embed_{nullptr};  // conditional: [num_classes, class_embed], concatenated to z
};
TORCH_MODULE(Generator);

class DiscriminatorImpl : public torch::nn::Module {
 public:
  explicit DiscriminatorImpl(const ModelConfig& cfg);
  // images [N, channels, image_size, image_size] -> one logit per image, [N]. A conditional discriminator needs
  // `labels` [N] (int64 class indices); others ignore it.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& labels = {});
  const ModelConfig& config() const { return cfg_; }
  // Selects how the 4x4 stride-2 convolutions are computed (default kDirect). kWinograd and kAuto compute the same
  // function once differentiable: gradient penalties (create_graph) need kDirect.
  void set_downconv_mode(DownconvMode mode);
  // set_downconv_forms: every stride-2 layer measured faster as conv2d, so kAuto keeps the input's memory format.
  void set_all_tuned_direct(bool all_direct) { all_tuned_direct_ = all_direct; }
  // With model.sync_bn: the sum across processes that its BatchNorm layers use for global batch statistics.
  void set_batch_stats_reducer(const AllReduceSum& reduce);

 private:
  ModelConfig cfg_;
  torch::nn::Sequential main_;
  DownconvMode downconv_ = DownconvMode::kDirect;
  bool all_tuned_direct_ = false;
  torch::nn::Embedding embed_{nullptr};  // projection: [num_classes, features before the last conv]
};
TORCH_MODULE(Discriminator);

// D's counterpart of tune_upconv: for each 4x4 stride-2 layer of `d` where the Winograd form applies, times forward
// + backward of conv2d and of downconv_winograd on a channels_last [min(batch, kTuneBatch), in, side, side] input and
// makes the faster that layer's kAuto choice (others keep kAuto's fixed rule). Returns "direct,winograd,..." in layer
// order; `report` receives one line per layer.
std::string tune_downconv(DiscriminatorImpl& d, std::int64_t batch, std::vector<std::string>* report = nullptr);
// Makes `forms` (tune_downconv's string) the kAuto choices of d's stride-2 layers; throws std::invalid_argument when
// the count or a name does not fit.
void set_downconv_forms(DiscriminatorImpl& d, const std::string& forms);

// Puts every 4-D parameter and buffer of `module` into channels_last (or back into contiguous) memory format.
// On CPU, oneDNN's convolutions run faster on channels_last activations.
void set_channels_last(torch::nn::Module& module, bool channels_last);

// Latent vectors [n, nz] from model.latent (normal N(0, 1) or uniform U(-1, 1)), drawn on the CPU from `gen` (torch's
// global generator when undefined) so that a seed gives the same vectors on every device.
torch::Tensor sample_latent(const ModelConfig& cfg, std::int64_t n, c10::optional<at::Generator> gen = c10::nullopt);
// Uniform class labels [n] (int64) in [0, num_classes), drawn like sample_latent.
torch::Tensor sample_labels(const ModelConfig& cfg, std::int64_t n, c10::optional<at::Generator> gen = c10::nullopt);

// DCGAN init: conv weights N(0, 0.02); batch-norm weight N(1, 0.02), bias 0. Uses torch's global generator.
void dcgan_init(torch::nn::Module& module);

// Channel multiplier of the feature map at `resolution` (4 .. image_size/2): 2^(log2(image_size/2 / resolution)),
// capped at max_mult. For 64x64: 8 at 4x4, 4 at 8x8, 2 at 16x16, 1 at 32x32.
int channel_mult(const ModelConfig& cfg, int resolution);

std::int64_t parameter_count(torch::nn::Module& module);

}  // namespace gan

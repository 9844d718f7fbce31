// Differentiable augmentation of everything D sees (train.augment): DiffAugment (Zhao et al. 2020) applies its ops to
// every image; ADA (Karras et al. 2020) applies each op to each image with a probability p that adapts to how much D
// overfits. Every op is differentiable in the images to any order (gathers, masks and arithmetic only), so G learns
// through them and R1/R2 can differentiate D(augment(x)) in x. Images are [B, C, S, S] in [-1, 1].
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gan {

enum class AugOp {
  kColor,        // DiffAugment colour: brightness + (u - 0.5), saturation x (2u), contrast x (u + 0.5), u ~ U(0, 1)
  kTranslation,  // DiffAugment: integer shift in [-S/8, S/8] on each axis, zero padding
  kCutout,       // DiffAugment: a square of side S/2 at a random centre set to 0
  kXflip,        // ADA: mirror left-right with probability 1/2
  kRotate90,     // ADA: rotate by k x 90 degrees, k uniform in 0..3
  kXint,         // ADA: integer shift up to S/8 on each axis, reflection padding
  kScale,        // ADA: isotropic scaling by 2^N(0, 0.2^2) about the centre, bilinear, reflection padding
  kBrightness,   // ADA: + N(0, 0.2^2)
  kContrast,     // ADA: x 2^N(0, 0.5^2)
  kSaturation,   // ADA: channel mean + (x - channel mean) x 2^N(0, 1) (no effect on one channel)
};

// "color,translation,cutout" -> ops; "" = the mode's default (diffaug: color,translation,cutout; ada:
// xflip,rotate90,xint,scale,brightness,contrast,saturation). Throws UserError(kExitUsage) naming
// train.augment_policy and the unknown op.
std::vector<AugOp> parse_augment_policy(const std::string& text, const std::string& mode);
std::string augment_policy_text(const std::vector<AugOp>& ops);

// Augments `x`, this process's rows [row_begin, row_begin + B) of a global batch of `global` images (0 = B): each op
// is applied to each image with probability `p` (1 for DiffAugment). The random numbers come from torch's default CPU
// generator (seeded and checkpointed with the run), drawn for the whole global batch, so that every process of a
// distributed run draws what one process would. p = 0 returns x and draws nothing. A run of consecutive geometric
// ops (xflip, rotate90, xint, scale) is applied as one sampling (one gather of x) and a run of colour ops
// (brightness, contrast, saturation) as one per-image channel matrix, the untouched images with the ops'
// identities: the result is augment_op_by_op's (flips, quarter turns and shifts: the same values; with scale or the
// colour ops: the same to rounding).
at::Tensor augment(const at::Tensor& x, const std::vector<AugOp>& ops, double p, std::int64_t row_begin = 0,
                   std::int64_t global = 0);
// The definition: each op in turn on the images it touches, from the same draws. augment is tested and benchmarked
// (gan-bench augment) against it.
at::Tensor augment_op_by_op(const at::Tensor& x, const std::vector<AugOp>& ops, double p, std::int64_t row_begin = 0,
                            std::int64_t global = 0);

// The ops with explicit per-image parameters ([B] tensors on any device), as `augment` applies them.
// out(i, j) = x(i - ty, j - tx); outside the image 0 (zero padding) or the mirror image (reflect).
at::Tensor aug_translate(const at::Tensor& x, const at::Tensor& tx, const at::Tensor& ty, bool reflect);
at::Tensor aug_xflip(const at::Tensor& x, const at::Tensor& flip);  // flip [B] bool
at::Tensor aug_rotate90(const at::Tensor& x, const at::Tensor& k);  // as torch.rot90(x, k, [2, 3]) per image
// out(i, j) = x(c + (i - c) / s, c + (j - c) / s), c = (S - 1) / 2, bilinear with reflection padding.
at::Tensor aug_scale(const at::Tensor& x, const at::Tensor& s);
// Zero in rows [cy - size / 2, cy - size / 2 + size) x the same columns around cx (clipped to the image).
at::Tensor aug_cutout(const at::Tensor& x, const at::Tensor& cy, const at::Tensor& cx, std::int64_t size);
at::Tensor aug_brightness(const at::Tensor& x, const at::Tensor& b);  // x + b
// x * c about the image mean (about_mean, DiffAugment) or about 0 (ADA).
at::Tensor aug_contrast(const at::Tensor& x, const at::Tensor& c, bool about_mean);
at::Tensor aug_saturation(const at::Tensor& x, const at::Tensor& s);  // m + (x - m) * s, m = mean over channels

// ADA's controller (StyleGAN2-ADA): every `interval` steps, p moves by sign(r_t - target) x images / (speed_kimg x
// 1000), clamped to [0, 1], where r_t = E[sign(D(x_real))] over those steps (so that p can go from 0 to 1 in
// speed_kimg thousand images).
double ada_update(double p, double r_t, double target, std::int64_t images, double speed_kimg);

}  // namespace gan

// The 4x4 stride-2 convolutions of both networks by Winograd's minimal filtering, on the CPU: D's conv2d and G's
// conv_transpose2d.
//
// conv2d(x, w, stride 2, padding 1) with a 4x4 kernel is a 2x2 stride-1 convolution over the space-to-depth form of
// the padded input (4x the channels, half the side). F(m x m, 2 x 2) computes each m x m output tile of that 2x2
// convolution from an (m+1) x (m+1) input tile with (m+1)^2 products per channel pair instead of 4 m^2: 1.78x fewer
// multiplications for m = 2, 2.56x for m = 4. The products are (m+1)^2 batched GEMMs; the tile transforms are
// additions and small constant multiples. conv_transpose2d(x, w, stride 2, padding 1) with a 4x4 kernel is, per
// output phase (row and column parity), a 2x2 stride-1 convolution over the padded input (the sub-pixel form of
// upconv_phase): the same F(m x m, 2 x 2) on four kernels, (m+1)^2 products per channel pair per phase and tile.
// The forward and both gradients are exact up to float rounding (tested against conv2d and conv_transpose2d in
// tests/test_winograd.cpp). The transformed input is recomputed in the backward pass rather than kept. Neither form
// is twice differentiable: gradient penalties need conv2d.
#pragma once
#include <ATen/core/Tensor.h>

namespace gan {

// How the discriminator computes its 4x4 stride-2 convolutions; the parameters and the function are the same.
enum class DownconvMode {
  kDirect,    // torch's conv2d (oneDNN on CPU)
  kWinograd,  // downconv_winograd wherever it applies (CPU, float/double, output side even)
  kAuto,      // kWinograd for layers with >= 16 input channels, else kDirect
};

// Whether downconv_winograd can compute conv2d(x, w, stride 2, padding 1) for these shapes and this device/dtype.
bool downconv_winograd_applies(const at::Tensor& x, const at::Tensor& w);

// conv2d(x, w, {}, 2, 1) for x [N, C, H, W] (H, W even; any memory format) and w [Co, C, 4, 4], differentiable
// once in x and w. `tile` is m (2 or 4); 0 picks 4 when the output side is a multiple of 4 and at least 8, else 2.
// Returns [N, Co, H/2, W/2] in channels_last memory format.
at::Tensor downconv_winograd(const at::Tensor& x, const at::Tensor& w, int tile = 0);

// Whether upconv_winograd can compute conv_transpose2d(x, w, stride 2, padding 1) for these shapes and device/dtype.
bool upconv_winograd_applies(const at::Tensor& x, const at::Tensor& w);

// conv_transpose2d(x, w, {}, 2, 1) for x [N, Ci, H, W] (H, W even; any memory format) and w [Ci, Co, 4, 4],
// differentiable once in x and w. `tile` is m (2 or 4); 0 picks 4 when the input side is a multiple of 4 and at least
// 8, else 2. Returns [N, Co, 2H, 2W] in channels_last memory format.
at::Tensor upconv_winograd(const at::Tensor& x, const at::Tensor& w, int tile = 0);

// The conv the discriminator runs for (x, w, stride, padding) in `mode`.
at::Tensor downconv(const at::Tensor& x, const at::Tensor& w, int stride, int padding, DownconvMode mode);

}  // namespace gan

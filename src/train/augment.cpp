#include "gan/augment.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "gan/errors.h"

namespace gan {
namespace {

const std::map<std::string, AugOp>& op_names() {
  static const std::map<std::string, AugOp> names{
      {"color", AugOp::kColor},           {"translation", AugOp::kTranslation}, {"cutout", AugOp::kCutout},
      {"xflip", AugOp::kXflip},           {"rotate90", AugOp::kRotate90},       {"xint", AugOp::kXint},
      {"scale", AugOp::kScale},           {"brightness", AugOp::kBrightness},   {"contrast", AugOp::kContrast},
      {"saturation", AugOp::kSaturation}};
  return names;
}

// [B] -> [B, 1, 1, 1] in x's dtype and device.
at::Tensor per_image(const at::Tensor& v, const at::Tensor& x) {
  return v.to(x.device(), x.scalar_type()).view({-1, 1, 1, 1});
}

at::Tensor as_index(const at::Tensor& v, const at::Tensor& x) { return v.to(x.device(), torch::kLong); }

// Folds any integer index into [0, n) as a mirror does (..., 2, 1, 0, 1, 2, ..., n - 1, n - 2, ...).
at::Tensor reflect(const at::Tensor& i, std::int64_t n) {
  if (n == 1) return torch::zeros_like(i);
  const std::int64_t period = 2 * (n - 1);
  at::Tensor m = i.remainder(period);  // in [0, period): the sign of the divisor
  return torch::where(m >= n, period - m, m);
}

// out(b, c, i, j) = x(b, c, sy(b, i, j), sx(b, i, j)) for in-range indices sy, sx [B, H, W] (int64). A gather: its
// derivative is a scatter-add, whose derivative is a gather again, so every order of differentiation exists.
at::Tensor gather_pixels(const at::Tensor& x, const at::Tensor& sy, const at::Tensor& sx) {
  const std::int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor idx = (sy * w + sx).reshape({b, 1, h * w}).expand({b, c, h * w});
  return x.reshape({b, c, h * w}).gather(2, idx).view({b, c, h, w});  // [B, C, H, W]
}

// Row and column indices [1, H, 1] and [1, 1, W].
std::pair<at::Tensor, at::Tensor> grid_of(const at::Tensor& x) {
  auto o = torch::TensorOptions().dtype(torch::kLong).device(x.device());
  return {torch::arange(x.size(2), o).view({1, -1, 1}), torch::arange(x.size(3), o).view({1, 1, -1})};
}

}  // namespace

std::vector<AugOp> parse_augment_policy(const std::string& text, const std::string& mode) {
  std::string list = text;
  if (list.empty())
    list = mode == "ada" ? "xflip,rotate90,xint,scale,brightness,contrast,saturation" : "color,translation,cutout";
  std::vector<AugOp> ops;
  for (size_t b = 0, e; b <= list.size(); b = e + 1) {
    e = list.find(',', b);
    if (e == std::string::npos) e = list.size();
    std::string name = list.substr(b, e - b);
    name.erase(0, name.find_first_not_of(' '));
    if (const auto last = name.find_last_not_of(' '); last != std::string::npos) name.erase(last + 1);
    if (name.empty()) continue;
    auto it = op_names().find(name);
    if (it == op_names().end()) {
      std::string known;
      for (const auto& [n, op] : op_names()) known += (known.empty() ? "" : ", ") + n;
      throw UserError(kExitUsage, "train.augment_policy: unknown op '" + name + "'; the ops are " + known);
    }
    if (std::find(ops.begin(), ops.end(), it->second) == ops.end()) ops.push_back(it->second);
  }
  if (ops.empty()) throw UserError(kExitUsage, "train.augment_policy names no op; leave it \"\" for the default");
  return ops;
}

std::string augment_policy_text(const std::vector<AugOp>& ops) {
  std::string out;
  for (AugOp op : ops)
    for (const auto& [name, o] : op_names())
      if (o == op) out += (out.empty() ? "" : ",") + name;
  return out;
}

at::Tensor aug_translate(const at::Tensor& x, const at::Tensor& tx, const at::Tensor& ty, bool reflect_pad) {
  const std::int64_t b = x.size(0), h = x.size(2), w = x.size(3);
  auto [iy, ix] = grid_of(x);
  at::Tensor sy = (iy - as_index(ty, x).view({b, 1, 1})).expand({b, h, w});  // [B, H, W]
  at::Tensor sx = (ix - as_index(tx, x).view({b, 1, 1})).expand({b, h, w});  // [B, H, W]
  if (reflect_pad) return gather_pixels(x, reflect(sy, h), reflect(sx, w));
  at::Tensor inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w);               // [B, H, W]
  at::Tensor out = gather_pixels(x, sy.clamp(0, h - 1), sx.clamp(0, w - 1));      // [B, C, H, W]
  return out * inside.unsqueeze(1).to(x.scalar_type());
}

at::Tensor aug_xflip(const at::Tensor& x, const at::Tensor& flip) {
  return torch::where(flip.to(x.device(), torch::kBool).view({-1, 1, 1, 1}), x.flip({3}), x);
}

at::Tensor aug_rotate90(const at::Tensor& x, const at::Tensor& k) {
  TORCH_CHECK(x.size(2) == x.size(3), "aug_rotate90: square images");
  const std::int64_t b = x.size(0), n = x.size(2);
  auto [i, j] = grid_of(x);
  i = i.expand({b, n, n});
  j = j.expand({b, n, n});
  at::Tensor kk = as_index(k, x).remainder(4).view({b, 1, 1});
  // torch.rot90 by k: out(i, j) = x(i, j), x(j, n-1-i), x(n-1-i, n-1-j), x(n-1-j, i) for k = 0, 1, 2, 3.
  at::Tensor sy = torch::where(kk == 1, j, torch::where(kk == 2, n - 1 - i, torch::where(kk == 3, n - 1 - j, i)));
  at::Tensor sx = torch::where(kk == 1, n - 1 - i, torch::where(kk == 2, n - 1 - j, torch::where(kk == 3, i, j)));
  return gather_pixels(x, sy, sx);
}

at::Tensor aug_scale(const at::Tensor& x, const at::Tensor& s) {
  const std::int64_t b = x.size(0), h = x.size(2), w = x.size(3);
  auto o = torch::TensorOptions().dtype(torch::kFloat).device(x.device());
  at::Tensor inv = 1.0 / s.to(x.device(), torch::kFloat).view({b, 1});                    // [B, 1]
  const double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
  at::Tensor y = (torch::arange(h, o).view({1, h}) - cy) * inv + cy;  // [B, H] source rows
  at::Tensor xs = (torch::arange(w, o).view({1, w}) - cx) * inv + cx;  // [B, W] source columns
  at::Tensor y0 = y.floor(), x0 = xs.floor();
  at::Tensor wy = (y - y0).to(x.scalar_type()).view({b, 1, h, 1}), wx = (xs - x0).to(x.scalar_type()).view({b, 1, 1, w});
  at::Tensor iy0 = y0.to(torch::kLong).view({b, h, 1}), ix0 = x0.to(torch::kLong).view({b, 1, w});
  auto tap = [&](const at::Tensor& ry, const at::Tensor& rx) {
    return gather_pixels(x, reflect(ry, h).expand({b, h, w}), reflect(rx, w).expand({b, h, w}));  // [B, C, H, W]
  };
  return (1 - wy) * ((1 - wx) * tap(iy0, ix0) + wx * tap(iy0, ix0 + 1)) +
         wy * ((1 - wx) * tap(iy0 + 1, ix0) + wx * tap(iy0 + 1, ix0 + 1));
}

at::Tensor aug_cutout(const at::Tensor& x, const at::Tensor& cy, const at::Tensor& cx, std::int64_t size) {
  const std::int64_t b = x.size(0);
  auto [iy, ix] = grid_of(x);
  at::Tensor top = as_index(cy, x).view({b, 1, 1}) - size / 2, left = as_index(cx, x).view({b, 1, 1}) - size / 2;
  at::Tensor cut = (iy >= top) & (iy < top + size) & (ix >= left) & (ix < left + size);  // [B, H, W]
  return x * torch::logical_not(cut).unsqueeze(1).to(x.scalar_type());
}

at::Tensor aug_brightness(const at::Tensor& x, const at::Tensor& b) { return x + per_image(b, x); }

at::Tensor aug_contrast(const at::Tensor& x, const at::Tensor& c, bool about_mean) {
  if (!about_mean) return x * per_image(c, x);
  at::Tensor m = x.mean({1, 2, 3}, /*keepdim=*/true);  // [B, 1, 1, 1]
  return (x - m) * per_image(c, x) + m;
}

at::Tensor aug_saturation(const at::Tensor& x, const at::Tensor& s) {
  at::Tensor m = x.mean({1}, /*keepdim=*/true);  // [B, 1, S, S]
  return (x - m) * per_image(s, x) + m;
}

at::Tensor augment(const at::Tensor& input, const std::vector<AugOp>& ops, double p, std::int64_t row_begin,
                   std::int64_t global) {
  if (p <= 0 || ops.empty()) return input;
  const std::int64_t b = input.size(0), n = global > 0 ? global : b, size = input.size(2);
  auto uniform = [&] { return torch::rand({n}, torch::kFloat); };  // [n] on the CPU generator
  auto normal = [&] { return torch::randn({n}, torch::kFloat); };
  auto ints = [&](std::int64_t lo, std::int64_t hi) { return torch::randint(lo, hi, {n}, torch::kLong); };  // [lo, hi)
  const std::int64_t shift = static_cast<std::int64_t>(size * 0.125 + 0.5);   // DiffAugment's translation
  const std::int64_t side = static_cast<std::int64_t>(size * 0.5 + 0.5);      // DiffAugment's cutout
  const double most = 0.125 * size;                                           // ADA's integer translation
  at::Tensor x = input;
  for (AugOp op : ops) {
    // Which images the op touches (all for p >= 1, else each with probability p) and its parameters, drawn for the
    // whole global batch: every process draws the same stream. The op then runs on this process's touched rows only,
    // so that its cost follows p.
    const at::Tensor on = p >= 1 ? torch::ones({n}, torch::kBool) : uniform() < p;  // [n]
    std::vector<at::Tensor> q;  // the op's parameters, [n] each
    switch (op) {
      case AugOp::kColor: q = {uniform() - 0.5, uniform() * 2, uniform() + 0.5}; break;
      case AugOp::kTranslation: q = {ints(-shift, shift + 1), ints(-shift, shift + 1)}; break;
      case AugOp::kCutout: q = {ints(0, size + (1 - side % 2)), ints(0, size + (1 - side % 2))}; break;
      case AugOp::kXflip: q = {uniform() < 0.5}; break;
      case AugOp::kRotate90: q = {ints(0, 4)}; break;
      case AugOp::kXint:
        q = {((uniform() * 2 - 1) * most).round().to(torch::kLong), ((uniform() * 2 - 1) * most).round().to(torch::kLong)};
        break;
      case AugOp::kScale: q = {torch::exp2(normal() * 0.2)}; break;
      case AugOp::kBrightness: q = {normal() * 0.2}; break;
      case AugOp::kContrast: q = {torch::exp2(normal() * 0.5)}; break;
      case AugOp::kSaturation: q = {torch::exp2(normal())}; break;
    }
    const at::Tensor idx = on.narrow(0, row_begin, b).nonzero().view({-1});  // [k] this process's touched rows
    if (idx.numel() == 0) continue;
    const bool all = idx.numel() == b;
    for (auto& t : q) t = all ? t.narrow(0, row_begin, b) : t.narrow(0, row_begin, b).index_select(0, idx);
    const at::Tensor dev_idx = idx.to(x.device());
    at::Tensor sub = all ? x : x.index_select(0, dev_idx);  // [k, C, S, S]
    switch (op) {
      case AugOp::kColor:
        sub = aug_contrast(aug_saturation(aug_brightness(sub, q[0]), q[1]), q[2], /*about_mean=*/true);
        break;
      case AugOp::kTranslation: sub = aug_translate(sub, q[0], q[1], /*reflect=*/false); break;
      case AugOp::kCutout: sub = aug_cutout(sub, q[0], q[1], side); break;
      case AugOp::kXflip: sub = aug_xflip(sub, q[0]); break;
      case AugOp::kRotate90: sub = aug_rotate90(sub, q[0]); break;
      case AugOp::kXint: sub = aug_translate(sub, q[0], q[1], /*reflect=*/true); break;
      case AugOp::kScale: sub = aug_scale(sub, q[0]); break;
      case AugOp::kBrightness: sub = aug_brightness(sub, q[0]); break;
      case AugOp::kContrast: sub = aug_contrast(sub, q[0], /*about_mean=*/false); break;
      case AugOp::kSaturation: sub = aug_saturation(sub, q[0]); break;
    }
    x = all ? sub : x.index_copy(0, dev_idx, sub);
  }
  return x;
}

double ada_update(double p, double r_t, double target, std::int64_t images, double speed_kimg) {
  const double sign = r_t > target ? 1.0 : r_t < target ? -1.0 : 0.0;
  return std::clamp(p + sign * static_cast<double>(images) / (speed_kimg * 1000.0), 0.0, 1.0);
}

}  // namespace gan

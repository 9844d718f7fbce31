#include "gan/augment.h"

#include <c10/core/impl/LocalDispatchKeySet.h>
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

// A host tensor (parameters drawn on the CPU) onto x's device as `dtype`. On CUDA through page-locked memory and
// without waiting: a copy from ordinary memory makes the host wait for everything queued on the device, several
// times per augmented batch. (The page-locked block is not reused before its copy has run.)
at::Tensor onto(const at::Tensor& v, const at::Tensor& x, at::ScalarType dtype) {
  if (!x.is_cuda() || !v.device().is_cpu()) return v.to(x.device(), dtype);
  return v.to(dtype).pin_memory().to(x.device(), dtype, /*non_blocking=*/true);
}
at::Tensor onto(const at::Tensor& v, const at::Tensor& x) { return onto(v, x, v.scalar_type()); }

// [B] -> [B, 1, 1, 1] in x's dtype and device.
at::Tensor per_image(const at::Tensor& v, const at::Tensor& x) {
  return onto(v, x, x.scalar_type()).view({-1, 1, 1, 1});
}

at::Tensor as_index(const at::Tensor& v, const at::Tensor& x) { return onto(v, x, torch::kLong); }

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
  return torch::where(onto(flip, x, torch::kBool).view({-1, 1, 1, 1}), x.flip({3}), x);
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
  at::Tensor inv = 1.0 / onto(s, x, torch::kFloat).view({b, 1});                          // [B, 1]
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

namespace {

std::int64_t cutout_side(std::int64_t size) { return static_cast<std::int64_t>(size * 0.5 + 0.5); }  // DiffAugment's

// One op's draws for the whole global batch: which images it touches and its parameters ([n] each, CPU).
struct Drawn {
  AugOp op;
  at::Tensor on;                // [n] bool
  std::vector<at::Tensor> q;    // [n] each
};

// The draws of every op, in the policy's order (each op: which images, then its parameters), from torch's default
// CPU generator. Both ways of applying them (augment, augment_op_by_op) take the same numbers from the stream.
std::vector<Drawn> draw(const std::vector<AugOp>& ops, double p, std::int64_t n, std::int64_t size) {
  auto uniform = [&] { return torch::rand({n}, torch::kFloat); };  // [n] on the CPU generator
  auto normal = [&] { return torch::randn({n}, torch::kFloat); };
  auto ints = [&](std::int64_t lo, std::int64_t hi) { return torch::randint(lo, hi, {n}, torch::kLong); };  // [lo, hi)
  const std::int64_t shift = static_cast<std::int64_t>(size * 0.125 + 0.5);   // DiffAugment's translation
  const std::int64_t side = cutout_side(size);
  const double most = 0.125 * size;                                           // ADA's integer translation
  std::vector<Drawn> out;
  for (AugOp op : ops) {
    Drawn d{op, p >= 1 ? torch::ones({n}, torch::kBool) : uniform() < p, {}};  // [n]
    switch (op) {
      case AugOp::kColor: d.q = {uniform() - 0.5, uniform() * 2, uniform() + 0.5}; break;
      case AugOp::kTranslation: d.q = {ints(-shift, shift + 1), ints(-shift, shift + 1)}; break;
      case AugOp::kCutout: d.q = {ints(0, size + (1 - side % 2)), ints(0, size + (1 - side % 2))}; break;
      case AugOp::kXflip: d.q = {uniform() < 0.5}; break;
      case AugOp::kRotate90: d.q = {ints(0, 4)}; break;
      case AugOp::kXint:
        d.q = {((uniform() * 2 - 1) * most).round().to(torch::kLong), ((uniform() * 2 - 1) * most).round().to(torch::kLong)};
        break;
      case AugOp::kScale: d.q = {torch::exp2(normal() * 0.2)}; break;
      case AugOp::kBrightness: d.q = {normal() * 0.2}; break;
      case AugOp::kContrast: d.q = {torch::exp2(normal() * 0.5)}; break;
      case AugOp::kSaturation: d.q = {torch::exp2(normal())}; break;
    }
    out.push_back(std::move(d));
  }
  return out;
}

// Applies one op to the images it touches among rows [row_begin, row_begin + B) of x's global batch: computed for all
// B rows and kept where it touches them. (Not on the touched rows only: their number changes every step, and so would
// the sizes of the step's tensors, which the caching allocator keeps by size; done that way, ADA at p 0.5 ran at
// 0.46x the unaugmented step's img/s on the 64x64 folder model: docs/PERFORMANCE.md "Augmentation".)
at::Tensor apply_one(const at::Tensor& x, const Drawn& d, std::int64_t row_begin) {
  const std::int64_t b = x.size(0);
  const at::Tensor on = d.on.narrow(0, row_begin, b);  // [B]
  if (!on.any().item<bool>()) return x;
  std::vector<at::Tensor> q = d.q;
  for (auto& t : q) t = t.narrow(0, row_begin, b);
  at::Tensor y;
  switch (d.op) {
    case AugOp::kColor:
      y = aug_contrast(aug_saturation(aug_brightness(x, q[0]), q[1]), q[2], /*about_mean=*/true);
      break;
    case AugOp::kTranslation: y = aug_translate(x, q[0], q[1], /*reflect=*/false); break;
    case AugOp::kCutout: y = aug_cutout(x, q[0], q[1], cutout_side(x.size(2))); break;
    case AugOp::kXflip: y = aug_xflip(x, q[0]); break;
    case AugOp::kRotate90: y = aug_rotate90(x, q[0]); break;
    case AugOp::kXint: y = aug_translate(x, q[0], q[1], /*reflect=*/true); break;
    case AugOp::kScale: y = aug_scale(x, q[0]); break;
    case AugOp::kBrightness: y = aug_brightness(x, q[0]); break;
    case AugOp::kContrast: y = aug_contrast(x, q[0], /*about_mean=*/false); break;
    case AugOp::kSaturation: y = aug_saturation(x, q[0]); break;
  }
  if (on.all().item<bool>()) return y;
  return torch::where(onto(on, x).view({b, 1, 1, 1}), y, x);
}

bool is_geometric(AugOp op) {
  return op == AugOp::kXflip || op == AugOp::kRotate90 || op == AugOp::kXint || op == AugOp::kScale;
}
bool is_colour_matrix(AugOp op) {
  return op == AugOp::kBrightness || op == AugOp::kContrast || op == AugOp::kSaturation;
}

// Parameter `i` of op `d` for this process's rows, [B] on the CPU, with `identity` where the op is off.
at::Tensor local(const Drawn& d, size_t i, std::int64_t row_begin, std::int64_t b, double identity) {
  const at::Tensor on = d.on.narrow(0, row_begin, b), v = d.q[i].narrow(0, row_begin, b);
  return torch::where(on, v, torch::full({}, identity, v.options()));
}

bool touches(const Drawn& d, std::int64_t row_begin, std::int64_t b) {
  return d.on.narrow(0, row_begin, b).any().item<bool>();
}

// A run of ADA's geometric ops (xflip, rotate90, xint, scale) as one sampling of x. Each op moves rows and columns
// as wholes (rotate90 also swaps the two), so an output pixel (i, j) reads its source row from a table over one of
// i, j and its source column from a table over the other: tu[i] and tv[j], with `swap` saying which of the two is
// the row. Walking the ops from the last to the first maps the tables ([B, N] per tap) to the ops' inputs; scale (at
// most once) splits each table into its two bilinear taps with their weights. x is then read by one gather of every
// tap. Untouched images get the ops' identities (no flip, k = 0, shift 0, s = 1: weights 0). The result is
// augment_op_by_op's: the same pixels, and with scale the same to rounding (its four taps are summed with their
// products of weights).
at::Tensor apply_geometric(const at::Tensor& x, const std::vector<const Drawn*>& run, std::int64_t row_begin) {
  const std::int64_t b = x.size(0), c = x.size(1), n = x.size(2);
  TORCH_CHECK(x.size(3) == n, "augment: square images");
  auto per = [&](const at::Tensor& v) { return v.view({b, 1, 1}); };  // [B] -> [B, 1, 1] against [B, T, N] tables
  at::Tensor tu = torch::arange(n, torch::kLong).view({1, 1, n}).expand({b, 1, n});  // [B, T, N], T taps (1 or 2)
  at::Tensor tv = tu;
  at::Tensor swap = torch::zeros({b}, torch::kBool);  // [B]: the row is read from tv
  at::Tensor wu, wv;                                  // bilinear weights [B, N] (scale only)
  for (auto it = run.rbegin(); it != run.rend(); ++it) {
    const Drawn& d = **it;
    switch (d.op) {
      case AugOp::kXflip: {  // the column table: n - 1 - j
        const at::Tensor f = local(d, 0, row_begin, b, 0);
        tu = torch::where(per(f & swap), n - 1 - tu, tu);
        tv = torch::where(per(f & ~swap), n - 1 - tv, tv);
        break;
      }
      case AugOp::kRotate90: {  // as aug_rotate90: k = 2 mirrors both; k = 1, 3 mirror one and swap them
        const at::Tensor k = local(d, 0, row_begin, b, 0).remainder(4);
        const at::Tensor half = k == 2, odd = (k == 1) | (k == 3);
        const at::Tensor mirror_row = half | ((k == 1) & ~swap) | ((k == 3) & swap);  // tu mirrored
        const at::Tensor mirror_col = half | ((k == 1) & swap) | ((k == 3) & ~swap);  // tv mirrored
        tu = torch::where(per(mirror_row), n - 1 - tu, tu);
        tv = torch::where(per(mirror_col), n - 1 - tv, tv);
        swap = swap ^ odd;
        break;
      }
      case AugOp::kXint: {  // the row table shifts by ty, the column table by tx, mirrored at the border
        const at::Tensor tx = local(d, 0, row_begin, b, 0), ty = local(d, 1, row_begin, b, 0);
        tu = reflect(tu - per(torch::where(swap, tx, ty)), n);
        tv = reflect(tv - per(torch::where(swap, ty, tx)), n);
        break;
      }
      case AugOp::kScale: {  // as aug_scale (isotropic: both tables alike)
        const at::Tensor inv = 1.0 / per(local(d, 0, row_begin, b, 1).to(torch::kFloat));  // [B, 1, 1]
        const double centre = (n - 1) / 2.0;
        auto split = [&](at::Tensor& t, at::Tensor& weight) {
          const at::Tensor y = (t.to(torch::kFloat) - centre) * inv + centre;  // [B, 1, N] source positions
          const at::Tensor y0 = y.floor();
          weight = (y - y0).to(x.scalar_type()).view({b, n});
          const at::Tensor i0 = y0.to(torch::kLong);
          t = torch::cat({reflect(i0, n), reflect(i0 + 1, n)}, 1);  // [B, 2, N]
        };
        split(tu, wu);
        split(tv, wv);
        break;
      }
      default: TORCH_CHECK(false, "apply_geometric: not a geometric op");
    }
  }
  // Flat source index of tap (a, e) at (i, j): row * n + column, the row being tu[a][i] or tv[e][j].
  // The tables are small and built on the CPU; the index itself is formed on x's device.
  const at::Tensor sw = per(swap);
  const at::Tensor au = onto(torch::where(sw, tu, tu * n), x), av = onto(torch::where(sw, tv * n, tv), x);
  const std::int64_t t = tu.size(1);                                      // [B, T, N] each
  at::Tensor idx = au.view({b, t, 1, n, 1}) + av.view({b, 1, t, 1, n});  // [B, T, T, N, N]
  idx = idx.view({b, 1, t * t * n * n}).expand({b, c, t * t * n * n});
  at::Tensor v = x.reshape({b, c, n * n}).gather(2, idx);  // [B, C, T x T x N x N]
  if (t == 1) return v.view({b, c, n, n});                 // [B, C, N, N]
  // The four taps' weights (1 - wy)(1 - wx), (1 - wy) wx, wy (1 - wx), wy wx, and their sum. (Not four selects of v
  // combined: each select's backward would fill a zero tensor the size of v.)
  const at::Tensor wy = onto(torch::stack({1 - wu, wu}, 1), x).view({b, 2, 1, n, 1});  // [B, 2, 1, N, 1]
  const at::Tensor wx = onto(torch::stack({1 - wv, wv}, 1), x).view({b, 1, 2, 1, n});  // [B, 1, 2, 1, N]
  const at::Tensor weight = (wy * wx).view({b, 1, 4, n, n});                                // [B, 1, 4, N, N]
  return (v.view({b, c, 4, n, n}) * weight).sum(2);                            // [B, C, N, N]
}

// A run of ADA's colour ops (brightness, contrast, saturation) as one per-image affine map of the channels,
// out = M x + o: brightness adds b to o; contrast scales M and o by c; saturation multiplies both by
// s I + (1 - s) / C (the channel mean's matrix). Untouched images get b = 0, c = 1, s = 1 (M = I, o = 0).
at::Tensor apply_colour(const at::Tensor& x, const std::vector<const Drawn*>& run, std::int64_t row_begin) {
  const std::int64_t b = x.size(0), c = x.size(1);
  auto o64 = torch::TensorOptions().dtype(torch::kDouble);
  at::Tensor m = torch::eye(c, o64).expand({b, c, c}).clone(), o = torch::zeros({b, c, 1}, o64);  // [B, C, C], [B, C, 1]
  for (const Drawn* d : run) {
    switch (d->op) {
      case AugOp::kBrightness: o = o + local(*d, 0, row_begin, b, 0).to(torch::kDouble).view({b, 1, 1}); break;
      case AugOp::kContrast: {
        const at::Tensor k = local(*d, 0, row_begin, b, 1).to(torch::kDouble).view({b, 1, 1});
        m = m * k;
        o = o * k;
        break;
      }
      case AugOp::kSaturation: {
        const at::Tensor s = local(*d, 0, row_begin, b, 1).to(torch::kDouble).view({b, 1, 1});
        const at::Tensor sat = torch::eye(c, o64) * s + (1 - s) / static_cast<double>(c);  // [B, C, C]
        m = torch::bmm(sat, m);
        o = torch::bmm(sat, o);
        break;
      }
      default: TORCH_CHECK(false, "apply_colour: not a colour op");
    }
  }
  at::Tensor flat = x.reshape({b, c, -1});                                           // [B, C, H x W]
  const at::ScalarType dt = x.scalar_type();
  at::Tensor out = torch::baddbmm(onto(o, x, dt), onto(m, x, dt), flat);             // [B, C, H x W]
  return out.view(x.sizes());                                                       // [B, C, H, W]
}

}  // namespace

at::Tensor augment_op_by_op(const at::Tensor& input, const std::vector<AugOp>& ops, double p, std::int64_t row_begin,
                            std::int64_t global) {
  if (p <= 0 || ops.empty()) return input;
  const std::int64_t n = global > 0 ? global : input.size(0);
  at::Tensor x = input;
  for (const Drawn& d : draw(ops, p, n, input.size(2))) x = apply_one(x, d, row_begin);
  return x;
}

at::Tensor augment(const at::Tensor& input, const std::vector<AugOp>& ops, double p, std::int64_t row_begin,
                   std::int64_t global) {
  if (p <= 0 || ops.empty()) return input;
  // In x's dtype whatever autocast is on (the step augments inside its bf16/fp16 scope): autocast would run the
  // colour matrix's baddbmm in bf16, where the ops one by one were elementwise in x's dtype.
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const std::int64_t b = input.size(0), n = global > 0 ? global : b;
  const std::vector<Drawn> drawn = draw(ops, p, n, input.size(2));
  at::Tensor x = input;
  for (size_t i = 0; i < drawn.size();) {
    // A run of consecutive geometric (or colour-matrix) ops that touches some of this process's images is applied
    // as one; any other op, or a run of one op, is applied by itself to the images it touches.
    auto same_kind = [&](size_t j) {
      return is_geometric(drawn[i].op) ? is_geometric(drawn[j].op) : is_colour_matrix(drawn[j].op);
    };
    size_t e = i + 1;
    if (is_geometric(drawn[i].op) || is_colour_matrix(drawn[i].op))
      while (e < drawn.size() && same_kind(e)) ++e;
    std::vector<const Drawn*> run;
    for (size_t j = i; j < e; ++j)
      if (touches(drawn[j], row_begin, b)) run.push_back(&drawn[j]);
    if (run.size() == 1) {
      x = apply_one(x, *run[0], row_begin);
    } else if (run.size() > 1) {
      x = is_geometric(drawn[i].op) ? apply_geometric(x, run, row_begin) : apply_colour(x, run, row_begin);
    }
    i = e;
  }
  return x;
}

double ada_update(double p, double r_t, double target, std::int64_t images, double speed_kimg) {
  const double sign = r_t > target ? 1.0 : r_t < target ? -1.0 : 0.0;
  return std::clamp(p + sign * static_cast<double>(images) / (speed_kimg * 1000.0), 0.0, 1.0);
}

}  // namespace gan

#include "gan/winograd.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <array>
#include <type_traits>
#include <vector>

namespace gan {
namespace {

template <int R, int C>
using Mat = std::array<std::array<double, C>, R>;
template <int R, int C>
constexpr Mat<C, R> transposed(const Mat<R, C>& m) {
  Mat<C, R> t{};
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) t[c][r] = m[r][c];
  return t;
}

// F(m, 2) for a correlation y_i = d_i g_0 + d_{i+1} g_1, i < m: y = AT [(G g) * (BT d)] (interpolation points
// 0, 1, -1, 2 and infinity for m = 4; 0, 1 and infinity for m = 2). Two dimensions: Y = AT [(G g GT) * (BT d B)] A.
template <int M>
struct Wino;
template <>
struct Wino<2> {
  static constexpr int kN = 3;
  static constexpr Mat<3, 3> BT{{{1, -1, 0}, {0, 1, 0}, {0, -1, 1}}};
  static constexpr Mat<2, 3> AT{{{1, 1, 0}, {0, 1, 1}}};
  static constexpr Mat<3, 2> G{{{1, 0}, {1, 1}, {0, 1}}};
  static constexpr Mat<3, 3> B = transposed<kN, kN>(BT);
  static constexpr Mat<3, 2> A = transposed<2, 3>(AT);
};
template <>
struct Wino<4> {
  static constexpr int kN = 5;
  static constexpr Mat<5, 5> BT{
      {{2, -1, -2, 1, 0}, {0, -2, -1, 1, 0}, {0, 2, -3, 1, 0}, {0, -1, 0, 1, 0}, {0, 2, -1, -2, 1}}};
  static constexpr Mat<4, 5> AT{{{1, 1, 1, 1, 0}, {0, 1, -1, 2, 0}, {0, 1, 1, 4, 0}, {0, 1, -1, 8, 1}}};
  static constexpr Mat<5, 2> G{{{0.5, 0}, {-0.5, -0.5}, {-1.0 / 6, 1.0 / 6}, {1.0 / 6, 1.0 / 3}, {0, 1}}};
  static constexpr Mat<5, 5> B = transposed<kN, kN>(BT);
  static constexpr Mat<5, 4> A = transposed<4, 5>(AT);
};

// For every k < len: out[o1][o2] = sum_{a, e} L[o1][a] L[o2][e] in[a][e], reading in[a][e] at src[a * NI + e][k] and
// writing out[o1][o2] at dst[o1 * s1 + o2 * s2 + k]. The loops over the tile unroll, so L's zero terms vanish and
// the loop over k vectorizes (the pointers never overlap).
template <typename T, int NO, int NI, const Mat<NO, NI>& L>
inline void transform2d(const T* const* src, T* dst, std::int64_t s1, std::int64_t s2, std::int64_t len) {
#pragma GCC ivdep
  for (std::int64_t k = 0; k < len; ++k) {
    T t[NO][NI];
#pragma GCC unroll 8
    for (int o = 0; o < NO; ++o)
#pragma GCC unroll 8
      for (int e = 0; e < NI; ++e) {
        T acc = 0;
#pragma GCC unroll 8
        for (int a = 0; a < NI; ++a)
          if (L[o][a] != 0) acc += static_cast<T>(L[o][a]) * src[a * NI + e][k];
        t[o][e] = acc;
      }
#pragma GCC unroll 8
    for (int o1 = 0; o1 < NO; ++o1)
#pragma GCC unroll 8
      for (int o2 = 0; o2 < NO; ++o2) {
        T acc = 0;
#pragma GCC unroll 8
        for (int e = 0; e < NI; ++e)
          if (L[o2][e] != 0) acc += static_cast<T>(L[o2][e]) * t[o1][e];
        dst[o1 * s1 + o2 * s2 + k] = acc;
      }
  }
}

// The geometry of one call: x [n, h, w, c] (NHWC), output [n, h/2, w/2, co], tiles of m x m outputs.
struct Geometry {
  std::int64_t n, h, w, c, co, th, tw;  // th, tw: tiles per column, per row
  std::int64_t tiles() const { return n * th * tw; }
  std::int64_t tile(std::int64_t b, std::int64_t i, std::int64_t j) const { return (b * th + i) * tw + j; }
};

// U[tile, (i, j), (bh, bw, c)] = (BT d B)[i][j] for the tile's (m+1) x (m+1) window d of the space-to-depth phase
// (bh, bw) of the padded input: phase pixel (p, q) is x[2p + bh - 1][2q + bw - 1] (0 outside).
template <typename T, int M>
void input_transform(const T* x, T* u, const Geometry& g) {
  using W = Wino<M>;
  constexpr int N = W::kN;
  const std::int64_t c = g.c, c4 = 4 * c;
  at::parallel_for(0, g.n, 1, [&](std::int64_t b0, std::int64_t b1) {
    std::vector<T> zeros(c, T(0));
    const T* d[N * N];
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t ti = 0; ti < g.th; ++ti)
        for (std::int64_t tj = 0; tj < g.tw; ++tj)
          for (int bh = 0; bh < 2; ++bh)
            for (int bw = 0; bw < 2; ++bw) {
              for (int a = 0; a < N; ++a)
                for (int e = 0; e < N; ++e) {
                  const std::int64_t r = 2 * (M * ti + a) + bh - 1, q = 2 * (M * tj + e) + bw - 1;
                  d[a * N + e] =
                      r >= 0 && r < g.h && q >= 0 && q < g.w ? x + ((b * g.h + r) * g.w + q) * c : zeros.data();
                }
              T* out = u + g.tile(b, ti, tj) * N * N * c4 + (bh * 2 + bw) * c;
              transform2d<T, N, N, W::BT>(d, out, N * c4, c4, c);
            }
  });
}

// The transpose of input_transform, into gx [n, h, w, c]. Neighbouring tiles share a row or column of the phase
// image: in tile order the first tile to reach a pixel writes it and later ones add (one thread per image). Every
// pixel of x lies in some tile.
template <typename T, int M>
void input_transform_t(const T* gu, T* gx, const Geometry& g) {
  using W = Wino<M>;
  constexpr int N = W::kN;
  const std::int64_t c = g.c, c4 = 4 * c;
  at::parallel_for(0, g.n, 1, [&](std::int64_t b0, std::int64_t b1) {
    std::vector<T> gd(N * N * c);
    const T* src[N * N];
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t ti = 0; ti < g.th; ++ti)
        for (std::int64_t tj = 0; tj < g.tw; ++tj)
          for (int bh = 0; bh < 2; ++bh)
            for (int bw = 0; bw < 2; ++bw) {
              const T* in = gu + g.tile(b, ti, tj) * N * N * c4 + (bh * 2 + bw) * c;
              for (int i = 0; i < N * N; ++i) src[i] = in + i * c4;
              transform2d<T, N, N, W::B>(src, gd.data(), N * c, c, c);  // gd[a][e] = (B gU BT)[a][e]
              for (int a = 0; a < N; ++a) {
                const std::int64_t r = 2 * (M * ti + a) + bh - 1;
                if (r < 0 || r >= g.h) continue;
                for (int e = 0; e < N; ++e) {
                  const std::int64_t q = 2 * (M * tj + e) + bw - 1;
                  if (q < 0 || q >= g.w) continue;
                  T* o = gx + ((b * g.h + r) * g.w + q) * c;
                  const T* s = &gd[(a * N + e) * c];
                  if ((a == 0 && ti > 0) || (e == 0 && tj > 0)) {  // an earlier tile wrote this pixel
                    for (std::int64_t k = 0; k < c; ++k) o[k] += s[k];
                  } else {
                    for (std::int64_t k = 0; k < c; ++k) o[k] = s[k];
                  }
                }
              }
            }
  });
}

// y [n, h/2, w/2, co] (NHWC): each tile's m x m outputs AT Mt A from Mt[tile, (i, j), co].
template <typename T, int M>
void output_transform(const T* mt, T* y, const Geometry& g) {
  using W = Wino<M>;
  constexpr int N = W::kN;
  const std::int64_t co = g.co, ho = g.h / 2, wo = g.w / 2;
  at::parallel_for(0, g.n, 1, [&](std::int64_t b0, std::int64_t b1) {
    const T* src[N * N];
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t ti = 0; ti < g.th; ++ti)
        for (std::int64_t tj = 0; tj < g.tw; ++tj) {
          const T* in = mt + g.tile(b, ti, tj) * N * N * co;
          for (int i = 0; i < N * N; ++i) src[i] = in + i * co;
          transform2d<T, M, N, W::AT>(src, y + ((b * ho + M * ti) * wo + M * tj) * co, wo * co, co, co);
        }
  });
}

// The transpose of output_transform: gMt[tile, (i, j), co] = sum_{r, s} AT[r][i] AT[s][j] gy[r][s].
template <typename T, int M>
void output_transform_t(const T* gy, T* gmt, const Geometry& g) {
  using W = Wino<M>;
  constexpr int N = W::kN;
  const std::int64_t co = g.co, ho = g.h / 2, wo = g.w / 2;
  at::parallel_for(0, g.n, 1, [&](std::int64_t b0, std::int64_t b1) {
    const T* src[M * M];
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t ti = 0; ti < g.th; ++ti)
        for (std::int64_t tj = 0; tj < g.tw; ++tj) {
          for (int r = 0; r < M; ++r)
            for (int s = 0; s < M; ++s) src[r * M + s] = gy + ((b * ho + M * ti + r) * wo + M * tj + s) * co;
          transform2d<T, N, M, W::A>(src, gmt + g.tile(b, ti, tj) * N * N * co, N * co, co, co);
        }
  });
}

template <typename T>
struct Type {
  using type = T;
};
template <int M>
using Tile = std::integral_constant<int, M>;

// Calls f(Type<scalar_t>{}, Tile<m>{}) for the tensor's dtype and tile size m.
template <typename F>
void dispatch(const at::Tensor& t, int m, F&& f) {
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "downconv_winograd", [&] {
    if (m == 4) f(Type<scalar_t>{}, Tile<4>{});
    else f(Type<scalar_t>{}, Tile<2>{});
  });
}

Geometry geometry(const at::Tensor& x, std::int64_t co, int m) {
  const std::int64_t h = x.size(2), w = x.size(3);
  return {x.size(0), h, w, x.size(1), co, h / 2 / m, w / 2 / m};
}

// Transformed weight V[(i, j), (bh, bw, ci), co] = (G g GT)[i][j] for the 2x2 kernel g[a][e] = w[co][ci][2a + bh][2e +
// bw] of phase (bh, bw); differentiable (plain tensor ops), so w's gradient comes from V's.
at::Tensor winograd_weight(const at::Tensor& w, int m) {
  const std::int64_t co = w.size(0), ci = w.size(1), n = m + 1;
  auto w2 = w.reshape({co, ci, 2, 2, 2, 2})    // [Co, Ci, a, bh, e, bw]
                .permute({2, 4, 3, 5, 1, 0})    // [a, e, bh, bw, Ci, Co]
                .reshape({2, 2, 4 * ci * co});  // [a, e, K]
  std::vector<double> gv;
  for (int i = 0; i < n; ++i)
    for (int a = 0; a < 2; ++a) gv.push_back(m == 4 ? Wino<4>::G[i][a] : Wino<2>::G[i][a]);
  auto gm = at::tensor(gv, at::TensorOptions().dtype(at::kDouble)).view({n, 2}).to(w.scalar_type());  // [N, 2]
  auto v = at::einsum("ia,jb,abk->ijk", {gm, gm, w2});  // [N, N, K]
  return v.reshape({n * n, 4 * ci, co}).contiguous();   // [N*N, 4*Ci, Co]
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The transforms and GEMMs of one call, with V (winograd_weight) as the differentiable weight input.
struct WinogradDown : public torch::autograd::Function<WinogradDown> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& v, std::int64_t m) {
    const at::Tensor x = x_in.contiguous(at::MemoryFormat::ChannelsLast);  // NHWC in memory
    const Geometry g = geometry(x, v.size(2), static_cast<int>(m));
    const std::int64_t n2 = (m + 1) * (m + 1);
    auto u = at::empty({g.tiles(), n2, 4 * g.c}, x.options());  // [tiles, N*N, 4C]
    dispatch(x, static_cast<int>(m), [&](auto t, auto tile) {
      using T = typename decltype(t)::type;
      input_transform<T, decltype(tile)::value>(x.data_ptr<T>(), u.data_ptr<T>(), g);
    });
    auto mt = at::empty({g.tiles(), n2, g.co}, x.options());  // [tiles, N*N, Co]
    auto mt_t = mt.transpose(0, 1);
    at::bmm_out(mt_t, u.transpose(0, 1), v);     // per (i, j): [tiles, 4C] x [4C, Co], strided rows
    auto y = at::empty({g.n, g.co, g.h / 2, g.w / 2}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    dispatch(x, static_cast<int>(m), [&](auto t, auto tile) {
      using T = typename decltype(t)::type;
      output_transform<T, decltype(tile)::value>(mt.data_ptr<T>(), y.data_ptr<T>(), g);
    });
    ctx->saved_data["m"] = m;
    ctx->saved_data["shape"] = std::vector<std::int64_t>{g.n, g.c, g.h, g.w, g.co};
    if (v.requires_grad()) ctx->saved_data["u"] = u;  // for V's gradient
    if (x_in.requires_grad()) ctx->saved_data["v"] = v;  // for x's gradient
    return y;  // [N, Co, H/2, W/2], channels_last
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const int m = static_cast<int>(ctx->saved_data["m"].toInt());
    const auto s = ctx->saved_data["shape"].toIntVector();
    const Geometry g{s[0], s[2], s[3], s[1], s[4], s[2] / 2 / m, s[3] / 2 / m};
    TORCH_CHECK(!at::GradMode::is_enabled(), "downconv_winograd is differentiable once only: a gradient penalty "
                "(create_graph) needs the discriminator in DownconvMode::kDirect (train.downconv: direct)");
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const at::Tensor gy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    const std::int64_t n2 = (m + 1) * (m + 1);
    auto gmt = at::empty({g.tiles(), n2, g.co}, gy.options());  // [tiles, N*N, Co]
    dispatch(gy, m, [&](auto t, auto tile) {
      using T = typename decltype(t)::type;
      output_transform_t<T, decltype(tile)::value>(gy.data_ptr<T>(), gmt.data_ptr<T>(), g);
    });
    at::Tensor gx, gv;
    if (ctx->saved_data.count("u"))  // [N*N, 4C, tiles] x [N*N, tiles, Co]
      gv = at::bmm(ctx->saved_data["u"].toTensor().transpose(0, 1).transpose(1, 2), gmt.transpose(0, 1));
    if (ctx->saved_data.count("v")) {
      auto gu = at::empty({g.tiles(), n2, 4 * g.c}, gy.options());  // [tiles, N*N, 4C]
      auto gu_t = gu.transpose(0, 1);
      at::bmm_out(gu_t, gmt.transpose(0, 1), ctx->saved_data["v"].toTensor().transpose(1, 2));
      gx = at::empty({g.n, g.c, g.h, g.w}, gy.options().memory_format(at::MemoryFormat::ChannelsLast));
      dispatch(gy, m, [&](auto t, auto tile) {
        using T = typename decltype(t)::type;
        input_transform_t<T, decltype(tile)::value>(gu.data_ptr<T>(), gx.data_ptr<T>(), g);
      });
    }
    return {gx, gv, at::Tensor()};
  }
};

}  // namespace

bool downconv_winograd_applies(const at::Tensor& x, const at::Tensor& w) {
  if (x.dim() != 4 || w.dim() != 4 || w.size(2) != 4 || w.size(3) != 4 || x.size(1) != w.size(1)) return false;
  if (!x.device().is_cpu() || !w.device().is_cpu() || x.scalar_type() != w.scalar_type()) return false;
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kDouble) return false;
  return x.size(2) % 4 == 0 && x.size(3) % 4 == 0 && x.size(2) >= 4 && x.size(3) >= 4;  // output sides even
}

at::Tensor downconv_winograd(const at::Tensor& x, const at::Tensor& w, int tile) {
  TORCH_CHECK(downconv_winograd_applies(x, w), "downconv_winograd: x ", x.sizes(), " and weight ", w.sizes(),
              " do not fit (CPU float/double, 4x4 kernel, sides a multiple of 4)");
  const std::int64_t ho = x.size(2) / 2, wo = x.size(3) / 2;
  if (tile == 0) tile = ho % 4 == 0 && wo % 4 == 0 && ho >= 8 && wo >= 8 ? 4 : 2;
  TORCH_CHECK((tile == 2 || tile == 4) && ho % tile == 0 && wo % tile == 0, "downconv_winograd: tile ", tile,
              " does not divide the output ", ho, "x", wo);
  return WinogradDown::apply(x, winograd_weight(w, tile), static_cast<std::int64_t>(tile));
}

at::Tensor downconv(const at::Tensor& x, const at::Tensor& w, int stride, int padding, DownconvMode mode) {
  const bool wino = mode != DownconvMode::kDirect && stride == 2 && padding == 1 && downconv_winograd_applies(x, w) &&
                    (mode == DownconvMode::kWinograd || x.size(1) >= 16);
  return wino ? downconv_winograd(x, w) : at::conv2d(x, w, {}, stride, padding);
}

}  // namespace gan

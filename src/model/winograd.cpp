#include "gan/winograd.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
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

// The geometry of one call, for both forms, on NHWC tensors. Down: x [n, h, w, c] -> y [n, h/2, w/2, co], one 2x2
// convolution over the four space-to-depth phases of the padded input (4c channels). Up: x [n, h, w, c] -> y [n, 2h,
// 2w, co], four 2x2 convolutions over the padded input, one per output phase (a, b) = (row, column) parity. Tiles are
// m x m outputs of that 2x2 convolution; th x tw of them per image.
struct Geometry {
  std::int64_t n, h, w, c, co, th, tw;
  bool up;
  std::int64_t tiles() const { return n * th * tw; }
  std::int64_t tile(std::int64_t b, std::int64_t i, std::int64_t j) const { return (b * th + i) * tw + j; }
  std::int64_t out_h() const { return up ? 2 * h : h / 2; }
  std::int64_t out_w() const { return up ? 2 * w : w / 2; }
  // The GEMMs: per tile, `q` products of a [k] row by a [k, co] matrix (q = (m+1)^2 down, 4 (m+1)^2 up).
  std::int64_t q(int m) const { return (up ? 4 : 1) * (m + 1) * (m + 1); }
  std::int64_t k() const { return up ? c : 4 * c; }
};

// U[tile, ...] = (BT d B) for every tile and phase (bh, bw) of its (m+1) x (m+1) window d. Down: the window of the
// space-to-depth phase (bh, bw), pixel (p, q) = x[2p + bh - 1][2q + bw - 1], written to U[tile, (i, j), (bh, bw, c)].
// Up: the window of output phase (bh, bw), pixel (p, q) = x[p + bh - 1][q + bw - 1], to U[tile, (bh, bw, i, j), c].
// Pixels outside x are 0 (the padding).
template <typename T, int M, bool Up>
void input_transform(const T* x, T* u, const Geometry& g) {
  using W = Wino<M>;
  constexpr int N = W::kN;
  constexpr int St = Up ? 1 : 2;
  const std::int64_t c = g.c;
  const std::int64_t s1 = Up ? N * c : N * 4 * c, s2 = Up ? c : 4 * c;
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
                  const std::int64_t r = St * (M * ti + a) + bh - 1, q = St * (M * tj + e) + bw - 1;
                  d[a * N + e] =
                      r >= 0 && r < g.h && q >= 0 && q < g.w ? x + ((b * g.h + r) * g.w + q) * c : zeros.data();
                }
              const std::int64_t phase = Up ? (bh * 2 + bw) * N * N * c : (bh * 2 + bw) * c;
              transform2d<T, N, N, W::BT>(d, u + g.tile(b, ti, tj) * 4 * N * N * c + phase, s1, s2, c);
            }
  });
}

// The transpose of input_transform, into gx [n, h, w, c]. Down: neighbouring tiles share a row or column of a phase
// image: in tile order the first tile to reach a pixel writes it and later ones add. Up: the four phases' windows
// overlap too, so gx starts at 0 (the caller's) and every window adds. One thread per image; every pixel of x lies
// in some window.
template <typename T, int M, bool Up>
void input_transform_t(const T* gu, T* gx, const Geometry& g) {
  using W = Wino<M>;
  constexpr int N = W::kN;
  constexpr int St = Up ? 1 : 2;
  const std::int64_t c = g.c;
  const std::int64_t s1 = Up ? N * c : N * 4 * c, s2 = Up ? c : 4 * c;
  at::parallel_for(0, g.n, 1, [&](std::int64_t b0, std::int64_t b1) {
    std::vector<T> gd(N * N * c);
    const T* src[N * N];
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t ti = 0; ti < g.th; ++ti)
        for (std::int64_t tj = 0; tj < g.tw; ++tj)
          for (int bh = 0; bh < 2; ++bh)
            for (int bw = 0; bw < 2; ++bw) {
              const std::int64_t phase = Up ? (bh * 2 + bw) * N * N * c : (bh * 2 + bw) * c;
              const T* in = gu + g.tile(b, ti, tj) * 4 * N * N * c + phase;
              for (int a = 0; a < N; ++a)
                for (int e = 0; e < N; ++e) src[a * N + e] = in + a * s1 + e * s2;
              transform2d<T, N, N, W::B>(src, gd.data(), N * c, c, c);  // gd[a][e] = (B gU BT)[a][e]
              for (int a = 0; a < N; ++a) {
                const std::int64_t r = St * (M * ti + a) + bh - 1;
                if (r < 0 || r >= g.h) continue;
                for (int e = 0; e < N; ++e) {
                  const std::int64_t q = St * (M * tj + e) + bw - 1;
                  if (q < 0 || q >= g.w) continue;
                  T* o = gx + ((b * g.h + r) * g.w + q) * c;
                  const T* s = &gd[(a * N + e) * c];
                  if (Up || (a == 0 && ti > 0) || (e == 0 && tj > 0)) {  // gx is 0 (up) or an earlier tile wrote it
                    for (std::int64_t k = 0; k < c; ++k) o[k] += s[k];
                  } else {
                    for (std::int64_t k = 0; k < c; ++k) o[k] = s[k];
                  }
                }
              }
            }
  });
}

// Where output phase p of tile (ti, tj) of image b starts in y [n, out_h, out_w, co], and its row and column steps.
// Down: one phase, y[M ti + r][M tj + s]. Up: y[2 (M ti + r) + bh][2 (M tj + s) + bw] for p = (bh, bw).
struct OutPlace {
  std::int64_t offset, s1, s2;
};
template <int M, bool Up>
OutPlace out_place(const Geometry& g, std::int64_t b, std::int64_t ti, std::int64_t tj, int p) {
  const std::int64_t ho = g.out_h(), wo = g.out_w(), co = g.co;
  if (Up)
    return {((b * ho + 2 * M * ti + p / 2) * wo + 2 * M * tj + p % 2) * co, 2 * wo * co, 2 * co};
  return {((b * ho + M * ti) * wo + M * tj) * co, wo * co, co};
}

// y: each tile's m x m outputs AT Mt A per phase, from Mt[tile, (phase, i, j), co].
template <typename T, int M, bool Up>
void output_transform(const T* mt, T* y, const Geometry& g) {
  using W = Wino<M>;
  constexpr int N = W::kN;
  constexpr int P = Up ? 4 : 1;
  const std::int64_t co = g.co;
  at::parallel_for(0, g.n, 1, [&](std::int64_t b0, std::int64_t b1) {
    const T* src[N * N];
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t ti = 0; ti < g.th; ++ti)
        for (std::int64_t tj = 0; tj < g.tw; ++tj)
          for (int p = 0; p < P; ++p) {
            const T* in = mt + (g.tile(b, ti, tj) * P + p) * N * N * co;
            for (int i = 0; i < N * N; ++i) src[i] = in + i * co;
            const OutPlace o = out_place<M, Up>(g, b, ti, tj, p);
            transform2d<T, M, N, W::AT>(src, y + o.offset, o.s1, o.s2, co);
          }
  });
}

// The transpose of output_transform: gMt[tile, (phase, i, j), co] = sum_{r, s} AT[r][i] AT[s][j] gy[phase][r][s].
template <typename T, int M, bool Up>
void output_transform_t(const T* gy, T* gmt, const Geometry& g) {
  using W = Wino<M>;
  constexpr int N = W::kN;
  constexpr int P = Up ? 4 : 1;
  const std::int64_t co = g.co;
  at::parallel_for(0, g.n, 1, [&](std::int64_t b0, std::int64_t b1) {
    const T* src[M * M];
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t ti = 0; ti < g.th; ++ti)
        for (std::int64_t tj = 0; tj < g.tw; ++tj)
          for (int p = 0; p < P; ++p) {
            const OutPlace o = out_place<M, Up>(g, b, ti, tj, p);
            for (int r = 0; r < M; ++r)
              for (int s = 0; s < M; ++s) src[r * M + s] = gy + o.offset + r * o.s1 + s * o.s2;
            transform2d<T, N, M, W::A>(src, gmt + (g.tile(b, ti, tj) * P + p) * N * N * co, N * co, co, co);
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
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "winograd", [&] {
    if (m == 4) f(Type<scalar_t>{}, Tile<4>{});
    else f(Type<scalar_t>{}, Tile<2>{});
  });
}

Geometry geometry(const at::Tensor& x, std::int64_t co, int m, bool up) {
  const std::int64_t h = x.size(2), w = x.size(3), side = up ? 1 : 2;
  return {x.size(0), h, w, x.size(1), co, h / side / m, w / side / m, up};
}

// G g GT for the 2x2 kernels g = k[a][e] of every column of k [2, 2, K]: [(m+1)^2, K]. Plain tensor ops, so the
// kernel's gradient comes from V's.
at::Tensor winograd_kernel(const at::Tensor& k, int m) {
  const std::int64_t n = m + 1;
  std::vector<double> gv;
  for (int i = 0; i < n; ++i)
    for (int a = 0; a < 2; ++a) gv.push_back(m == 4 ? Wino<4>::G[i][a] : Wino<2>::G[i][a]);
  auto gm = at::tensor(gv, at::TensorOptions().dtype(at::kDouble)).view({n, 2}).to(k.scalar_type());  // [N, 2]
  return at::einsum("ia,jb,abk->ijk", {gm, gm, k}).reshape({n * n, k.size(2)});  // [N*N, K]
}

// Down: V[(i, j), (bh, bw, ci), co] = (G g GT)[i][j] for the 2x2 kernel g[a][e] = w[co][ci][2a + bh][2e + bw] of
// space-to-depth phase (bh, bw), w [Co, Ci, 4, 4]. Returns [N*N, 4*Ci, Co].
at::Tensor winograd_weight(const at::Tensor& w, int m) {
  const std::int64_t co = w.size(0), ci = w.size(1), n = m + 1;
  auto w2 = w.reshape({co, ci, 2, 2, 2, 2})    // [Co, Ci, a, bh, e, bw]
                .permute({2, 4, 3, 5, 1, 0})    // [a, e, bh, bw, Ci, Co]
                .reshape({2, 2, 4 * ci * co});  // [a, e, K]
  return winograd_kernel(w2, m).reshape({n * n, 4 * ci, co}).contiguous();  // [N*N, 4*Ci, Co]
}

// Up: output phase (bh, bw) of conv_transpose2d(x, w, stride 2, padding 1), w [Ci, Co, 4, 4], is the 2x2
// correlation of the padded input with g[t][u] = w[ci][co][3 - bh - 2t][3 - bw - 2u] (see upconv_phase).
// V[(bh, bw, i, j), ci, co] = (G g GT)[i][j]. Returns [4*N*N, Ci, Co].
at::Tensor winograd_weight_up(const at::Tensor& w, int m) {
  const std::int64_t ci = w.size(0), co = w.size(1), n = m + 1;
  auto w2 = w.flip({2, 3})                       // [Ci, Co, 4 (= 2t + bh), 4 (= 2u + bw)]
                .reshape({ci, co, 2, 2, 2, 2})   // [Ci, Co, t, bh, u, bw]
                .permute({2, 4, 3, 5, 0, 1})     // [t, u, bh, bw, Ci, Co]
                .reshape({2, 2, 4 * ci * co});   // [t, u, K]
  return winograd_kernel(w2, m)                  // [N*N, (bh, bw, Ci, Co)]
      .reshape({n * n, 4, ci * co})
      .transpose(0, 1)                           // [(bh, bw), N*N, Ci*Co]
      .reshape({4 * n * n, ci, co})
      .contiguous();                             // [4*N*N, Ci, Co]
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The transforms and GEMMs of one call, with V (winograd_weight or winograd_weight_up) as the differentiable weight
// input. The transformed input U is not kept for the backward pass: it is recomputed there from x, which autograd
// keeps anyway for the activation before it (U is 1.6-2.3x x's size down and 6-9x up).
template <bool Up>
struct WinogradConv : public torch::autograd::Function<WinogradConv<Up>> {
  static at::Tensor transform_input(const at::Tensor& x, const Geometry& g, int m) {
    auto u = at::empty({g.tiles(), g.q(m), g.k()}, x.options());  // [tiles, Q, K]
    dispatch(x, m, [&](auto t, auto tile) {
      using T = typename decltype(t)::type;
      input_transform<T, decltype(tile)::value, Up>(x.data_ptr<T>(), u.data_ptr<T>(), g);
    });
    return u;
  }

  // Images per chunk: the transforms and GEMMs run on chunks of the batch whose transformed input U is about
  // kChunkBytes, so that U, Mt and their gradients are short-lived buffers of that size rather than several times
  // the activation (at 64x64, batch 256: ~100 MB for one layer's U).
  static std::int64_t chunk_images(const Geometry& g, int m, std::int64_t element_size) {
    constexpr std::int64_t kChunkBytes = 8 << 20;
    const std::int64_t per_image = std::max<std::int64_t>(1, g.th * g.tw * g.q(m) * g.k() * element_size);
    return std::max<std::int64_t>(1, std::min(g.n, kChunkBytes / per_image));
  }

  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& v, std::int64_t m64) {
    const int m = static_cast<int>(m64);
    const at::Tensor x = x_in.contiguous(at::MemoryFormat::ChannelsLast);  // NHWC in memory
    const Geometry g = geometry(x, v.size(2), m, Up);
    auto y = at::empty({g.n, g.co, g.out_h(), g.out_w()}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    const std::int64_t chunk = chunk_images(g, m, x.element_size());
    for (std::int64_t b0 = 0; b0 < g.n; b0 += chunk) {
      Geometry gc = g;
      gc.n = std::min(chunk, g.n - b0);
      const at::Tensor u = transform_input(x.narrow(0, b0, gc.n), gc, m);  // [tiles, Q, K] of this chunk
      at::Tensor mt = at::empty({gc.tiles(), g.q(m), g.co}, x.options());  // [tiles, Q, Co]
      auto mt_t = mt.transpose(0, 1);
      at::bmm_out(mt_t, u.transpose(0, 1), v);  // per q: [tiles, K] x [K, Co], strided rows
      at::Tensor yc = y.narrow(0, b0, gc.n);    // (NHWC: a chunk of images is one block)
      dispatch(x, m, [&](auto t, auto tile) {
        using T = typename decltype(t)::type;
        output_transform<T, decltype(tile)::value, Up>(mt.data_ptr<T>(), yc.data_ptr<T>(), gc);
      });
    }
    ctx->saved_data["m"] = m64;
    ctx->saved_data["shape"] = std::vector<std::int64_t>{g.n, g.c, g.h, g.w, g.co};
    ctx->save_for_backward({v.requires_grad() ? x_in : at::Tensor(), x_in.requires_grad() ? v : at::Tensor()});
    return y;  // [N, Co, out_h, out_w], channels_last
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const int m = static_cast<int>(ctx->saved_data["m"].toInt());
    const auto s = ctx->saved_data["shape"].toIntVector();
    const std::int64_t side = Up ? 1 : 2;
    const Geometry g{s[0], s[2], s[3], s[1], s[4], s[2] / side / m, s[3] / side / m, Up};
    TORCH_CHECK(!at::GradMode::is_enabled(), "the Winograd convolutions are differentiable once only: a gradient "
                "penalty (create_graph) needs the discriminator in DownconvMode::kDirect (train.downconv: direct)");
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const auto saved = ctx->get_saved_variables();
    const at::Tensor gy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor x = saved[0].defined() ? saved[0].contiguous(at::MemoryFormat::ChannelsLast) : at::Tensor();
    at::Tensor gx, gv;
    if (saved[1].defined()) {
      gx = at::empty({g.n, g.c, g.h, g.w}, gy.options().memory_format(at::MemoryFormat::ChannelsLast));
      if (Up) gx.zero_();  // (at::zeros would ignore the memory format)
    }
    const std::int64_t chunk = chunk_images(g, m, gy.element_size());
    for (std::int64_t b0 = 0; b0 < g.n; b0 += chunk) {
      Geometry gc = g;
      gc.n = std::min(chunk, g.n - b0);
      const at::Tensor gyc = gy.narrow(0, b0, gc.n);
      auto gmt = at::empty({gc.tiles(), g.q(m), g.co}, gy.options());  // [tiles, Q, Co]
      dispatch(gy, m, [&](auto t, auto tile) {
        using T = typename decltype(t)::type;
        output_transform_t<T, decltype(tile)::value, Up>(gyc.data_ptr<T>(), gmt.data_ptr<T>(), gc);
      });
      if (x.defined()) {  // [Q, K, tiles] x [Q, tiles, Co], with U recomputed from x, summed over the chunks
        const at::Tensor u = transform_input(x.narrow(0, b0, gc.n), gc, m);
        auto ut = u.transpose(0, 1).transpose(1, 2);
        if (gv.defined()) gv.baddbmm_(ut, gmt.transpose(0, 1));
        else gv = at::bmm(ut, gmt.transpose(0, 1));
      }
      if (gx.defined()) {
        auto gu = at::empty({gc.tiles(), g.q(m), g.k()}, gy.options());  // [tiles, Q, K]
        auto gu_t = gu.transpose(0, 1);
        at::bmm_out(gu_t, gmt.transpose(0, 1), saved[1].transpose(1, 2));
        at::Tensor gxc = gx.narrow(0, b0, gc.n);
        dispatch(gy, m, [&](auto t, auto tile) {
          using T = typename decltype(t)::type;
          input_transform_t<T, decltype(tile)::value, Up>(gu.data_ptr<T>(), gxc.data_ptr<T>(), gc);
        });
      }
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
  return WinogradConv<false>::apply(x, winograd_weight(w, tile), static_cast<std::int64_t>(tile));
}

at::Tensor downconv(const at::Tensor& x, const at::Tensor& w, int stride, int padding, DownconvMode mode) {
  const bool wino = mode != DownconvMode::kDirect && stride == 2 && padding == 1 && downconv_winograd_applies(x, w) &&
                    (mode == DownconvMode::kWinograd || x.size(1) >= 16);
  return wino ? downconv_winograd(x, w) : at::conv2d(x, w, {}, stride, padding);
}

bool upconv_winograd_applies(const at::Tensor& x, const at::Tensor& w) {
  if (x.dim() != 4 || w.dim() != 4 || w.size(2) != 4 || w.size(3) != 4 || x.size(1) != w.size(0)) return false;
  if (!x.device().is_cpu() || !w.device().is_cpu() || x.scalar_type() != w.scalar_type()) return false;
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kDouble) return false;
  return x.size(2) % 2 == 0 && x.size(3) % 2 == 0 && x.size(2) >= 2 && x.size(3) >= 2;
}

at::Tensor upconv_winograd(const at::Tensor& x, const at::Tensor& w, int tile) {
  TORCH_CHECK(upconv_winograd_applies(x, w), "upconv_winograd: x ", x.sizes(), " and weight ", w.sizes(),
              " do not fit (CPU float/double, [in, out, 4, 4] weight, even sides)");
  const std::int64_t h = x.size(2), wd = x.size(3);
  if (tile == 0) tile = h % 4 == 0 && wd % 4 == 0 && h >= 8 && wd >= 8 ? 4 : 2;
  TORCH_CHECK((tile == 2 || tile == 4) && h % tile == 0 && wd % tile == 0, "upconv_winograd: tile ", tile,
              " does not divide the input ", h, "x", wd);
  return WinogradConv<true>::apply(x, winograd_weight_up(w, tile), static_cast<std::int64_t>(tile));
}

}  // namespace gan

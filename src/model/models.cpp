#include "gan/models.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>

#include "gan/errors.h"

namespace gan {
namespace nn = torch::nn;

int channel_mult(const ModelConfig& cfg, int resolution) {
  int mult = 1;
  for (int r = cfg.image_size / 2; r > resolution; r /= 2) mult *= 2;
  return std::min(mult, cfg.max_mult);
}

UpConvImpl::UpConvImpl(int in, int out, int stride_, int padding_) : stride(stride_), padding(padding_) {
  weight = register_parameter("weight", torch::empty({in, out, 4, 4}));
  nn::init::kaiming_uniform_(weight, std::sqrt(5.0));  // as ConvTranspose2d does: the same random draws
}

const char* upconv_name(UpconvMode mode) {
  switch (mode) {
    case UpconvMode::kTransposed: return "transposed";
    case UpconvMode::kPhase: return "phase";
    case UpconvMode::kGemm: return "gemm";
    case UpconvMode::kWinograd: return "winograd";
    case UpconvMode::kAuto: break;
  }
  return "auto";
}

UpconvMode upconv_mode(const std::string& name) {
  for (auto m : {UpconvMode::kTransposed, UpconvMode::kPhase, UpconvMode::kGemm, UpconvMode::kWinograd,
                 UpconvMode::kAuto})
    if (name == upconv_name(m)) return m;
  throw std::invalid_argument("'" + name + "' is not an upconv form (transposed, phase, gemm, winograd, auto)");
}

UpconvMode UpConvImpl::form_for(std::int64_t side) const {
  if (mode == UpconvMode::kTransposed) return mode;
  if (stride != 2 || padding != 1) return UpconvMode::kGemm;  // the 1x1 first layer: a matmul
  if (mode != UpconvMode::kAuto) return mode;
  if (tuned != UpconvMode::kAuto && tuned_side == side) return tuned;
  return side <= 4 ? UpconvMode::kGemm : UpconvMode::kPhase;
}

torch::Tensor UpConvImpl::forward(const torch::Tensor& x) {
  if (mode != UpconvMode::kTransposed && x.dim() == 4) {
    if (stride == 2 && padding == 1) {
      switch (form_for(x.size(2) == x.size(3) ? x.size(2) : 0)) {
        case UpconvMode::kGemm: return upconv_gemm(x, weight);
        case UpconvMode::kWinograd:
          if (upconv_winograd_applies(x, weight)) return upconv_winograd(x, weight);
          break;  // (bf16 under autocast, CUDA, odd sides): the phase form
        default: break;
      }
      return upconv_phase(x, weight);
    }
    if (stride == 1 && padding == 0 && x.size(2) == 1 && x.size(3) == 1) {
      auto y = upconv_from_1x1(x, weight);
      return x.size(0) > 1 && weight.is_contiguous(at::MemoryFormat::ChannelsLast) && !weight.is_contiguous()
                 ? y.contiguous(at::MemoryFormat::ChannelsLast)
                 : y;
    }
  }
  return torch::conv_transpose2d(x, weight, {}, stride, padding);
}

namespace {

// The stride-2 layers of g in order, with the side of the input each gets in a model.image_size generator.
std::vector<std::pair<UpConvImpl*, std::int64_t>> stride2_layers(GeneratorImpl& g) {
  std::vector<std::pair<UpConvImpl*, std::int64_t>> out;
  std::int64_t side = 4;  // the first layer makes 4x4
  for (auto& m : g.modules(/*include_self=*/false))
    if (auto* u = m->as<UpConvImpl>(); u && u->stride == 2) {
      out.emplace_back(u, side);
      side *= 2;
    }
  return out;
}

std::string fmt_ms(const char* name, double s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s %.2f ms", name, 1000 * s);
  return buf;
}

// tune_upconv's / tune_downconv's "a,b,c" string as one name per layer; throws std::invalid_argument when the count
// is not `layers`.
std::vector<std::string> split_forms(const std::string& forms, std::size_t layers, const char* what) {
  std::vector<std::string> names;
  for (std::size_t b = 0, e; b <= forms.size(); b = e + 1) {
    e = forms.find(',', b);
    if (e == std::string::npos) e = forms.size();
    names.push_back(forms.substr(b, e - b));
  }
  if (names.size() != layers)
    throw std::invalid_argument("'" + forms + "' names " + std::to_string(names.size()) + " " + what + " forms for " +
                                std::to_string(layers) + " layers");
  return names;
}

double seconds_of(const std::function<void()>& f, int reps) {
  double best = 1e30;
  for (int i = 0; i <= reps; ++i) {  // the first call warms up
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i > 0) best = std::min(best, s);
  }
  return best;
}

}  // namespace

std::string tune_upconv(GeneratorImpl& g, std::int64_t batch_in, bool channels_last, std::vector<std::string>* report) {
  // At most kTuneBatch images: the forms rank alike, and the measurement's own tensors (the gemm form's columns are
  // 16x the output) stay well below what the training step holds, so it does not raise the process's peak memory.
  const std::int64_t batch = std::min<std::int64_t>(batch_in, kTuneBatch);
  std::string forms;
  for (auto [u, side] : stride2_layers(g)) {
    const std::int64_t cin = u->weight.size(0), cout = u->weight.size(1);
    const double flops = 2.0 * static_cast<double>(batch * side * side * cin * cout * 16);
    u->tuned = UpconvMode::kAuto;
    UpconvMode best = u->form_for(side);  // the fixed rule
    std::string line;
    if (flops >= kTuneMinFlops && u->weight.device().is_cpu()) {
      auto opts = u->weight.options().requires_grad(false);
      at::Tensor x = torch::full({batch, cin, side, side}, 0.01, opts);  // [B, in, side, side]: constants, no RNG
      if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      x.requires_grad_(true);
      at::Tensor w = u->weight.detach().clone().requires_grad_(true);
      double best_s = 1e30;
      std::string others;
      for (auto form : {UpconvMode::kPhase, UpconvMode::kGemm, UpconvMode::kWinograd}) {
        if (form == UpconvMode::kWinograd && !upconv_winograd_applies(x, w)) continue;
        const double s = seconds_of(
            [&] {
              at::Tensor y = form == UpconvMode::kPhase  ? upconv_phase(x, w)
                             : form == UpconvMode::kGemm ? upconv_gemm(x, w)
                                                         : upconv_winograd(x, w);
              y.backward(torch::full_like(y, 0.01));
              x.mutable_grad() = at::Tensor();
              w.mutable_grad() = at::Tensor();
            },
            3);
        others += (others.empty() ? "" : ", ") + fmt_ms(upconv_name(form), s);
        if (s < best_s) best_s = s, best = form;
      }
      line = std::to_string(side) + "x" + std::to_string(side) + " " + upconv_name(best) + ": " + others;
      u->tuned = best;
      u->tuned_side = side;
    } else {
      line = std::to_string(side) + "x" + std::to_string(side) + " " + upconv_name(best) +
             " (fixed rule: too small to time)";
    }
    if (report) report->push_back(line);
    forms += (forms.empty() ? "" : ",") + std::string(upconv_name(best));
  }
  return forms;
}

void set_upconv_forms(GeneratorImpl& g, const std::string& forms) {
  auto layers = stride2_layers(g);
  const std::vector<std::string> names = split_forms(forms, layers.size(), "upconv");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const UpconvMode m = upconv_mode(names[i]);
    if (m == UpconvMode::kAuto || m == UpconvMode::kTransposed)
      throw std::invalid_argument("'" + names[i] + "' is not a measured upconv form (phase, gemm, winograd)");
    layers[i].first->tuned = m;
    layers[i].first->tuned_side = layers[i].second;
  }
}

namespace {

struct DownLayer {
  torch::Tensor weight;
  DownconvMode* tuned;
  std::int64_t* tuned_side;
  std::int64_t side;  // input side in a model.image_size discriminator
};

// The 4x4 stride-2 layers of d in order, with their input sides.
std::vector<DownLayer> stride2_layers(DiscriminatorImpl& d) {
  std::vector<DownLayer> out;
  std::int64_t side = d.config().image_size;
  for (auto& m : d.modules(/*include_self=*/false)) {
    if (auto* c = m->as<DownConvImpl>(); c && c->stride == 2) {
      out.push_back({c->weight, &c->tuned, &c->tuned_side, side});
      side /= 2;
    } else if (auto* sn = m->as<SNConv2dImpl>(); sn && sn->stride == 2) {
      out.push_back({sn->weight, &sn->tuned, &sn->tuned_side, side});
      side /= 2;
    }
  }
  return out;
}

const char* down_name(DownconvMode m) { return m == DownconvMode::kWinograd ? "winograd" : "direct"; }

}  // namespace

std::string tune_downconv(DiscriminatorImpl& d, std::int64_t batch_in, std::vector<std::string>* report) {
  const std::int64_t batch = std::min<std::int64_t>(batch_in, kTuneBatch);
  std::string forms;
  for (const DownLayer& l : stride2_layers(d)) {
    const std::int64_t cout = l.weight.size(0), cin = l.weight.size(1), side = l.side;
    const double flops = 2.0 * static_cast<double>(batch * (side / 2) * (side / 2) * cin * cout * 16);
    *l.tuned = DownconvMode::kAuto;
    auto opts = l.weight.options().requires_grad(false);
    at::Tensor x = torch::full({batch, cin, side, side}, 0.01, opts).contiguous(at::MemoryFormat::ChannelsLast);
    const bool applies = downconv_winograd_applies(x, l.weight);
    DownconvMode best = applies && cin >= 16 ? DownconvMode::kWinograd : DownconvMode::kDirect;  // the fixed rule
    std::string line = std::to_string(side) + "x" + std::to_string(side) + " ";
    if (applies && flops >= kTuneMinFlops && l.weight.device().is_cpu()) {
      x.requires_grad_(true);
      at::Tensor w = l.weight.detach().clone().requires_grad_(true);
      double best_s = 1e30;
      std::string times;
      for (auto form : {DownconvMode::kDirect, DownconvMode::kWinograd}) {
        const double s = seconds_of(
            [&] {
              at::Tensor y = downconv(x, w, 2, 1, form);
              y.backward(torch::full_like(y, 0.01));
              x.mutable_grad() = at::Tensor();
              w.mutable_grad() = at::Tensor();
            },
            3);
        times += (times.empty() ? "" : ", ") + fmt_ms(down_name(form), s);
        if (s < best_s) best_s = s, best = form;
      }
      line += std::string(down_name(best)) + ": " + times;
      d.set_all_tuned_direct(false);  // (set_downconv_forms decides; measuring runs in channels_last)
      *l.tuned = best;
      *l.tuned_side = side;
    } else {
      line += std::string(down_name(best)) + (applies ? " (fixed rule: too small to time)" : " (no Winograd form)");
    }
    if (report) report->push_back(line);
    forms += (forms.empty() ? "" : ",") + std::string(down_name(best));
  }
  return forms;
}

void set_downconv_forms(DiscriminatorImpl& d, const std::string& forms) {
  auto layers = stride2_layers(d);
  const std::vector<std::string> names = split_forms(forms, layers.size(), "downconv");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (names[i] != "direct" && names[i] != "winograd")
      throw std::invalid_argument("'" + names[i] + "' is not a measured downconv form (direct, winograd)");
    *layers[i].tuned = names[i] == "winograd" ? DownconvMode::kWinograd : DownconvMode::kDirect;
    *layers[i].tuned_side = layers[i].side;
  }
  d.set_all_tuned_direct(forms.find("winograd") == std::string::npos);
}

torch::Tensor upconv_phase(const torch::Tensor& x, const torch::Tensor& w) {
  TORCH_CHECK(x.dim() == 4 && w.dim() == 4 && w.size(2) == 4 && w.size(3) == 4 && x.size(1) == w.size(0),
              "upconv_phase: x ", x.sizes(), " and weight ", w.sizes(), " do not fit");
  const std::int64_t n = x.size(0), h = x.size(2), wd = x.size(3), cin = w.size(0), cout = w.size(1);
  // Output pixel (2m + a, 2j + b) only ever meets kernel rows 3 - a - 2t and columns 3 - b - 2u at input (m - 1 + a +
  // t, j - 1 + b + u), t, u in {0, 1}: per phase (a, b) a 2x2 correlation over the input padded by one pixel.
  // All four phases as one conv: K[(a, b, co), ci, t, u] = w[ci, co, 3 - a - 2t, 3 - b - 2u].
  auto k = w.permute({1, 0, 2, 3}).flip({2, 3})       // [Cout, Cin, 4 (= 2t + a), 4 (= 2u + b)]
               .reshape({cout, cin, 2, 2, 2, 2})      // [Cout, Cin, t, a, u, b]
               .permute({3, 5, 0, 1, 2, 4})           // [a, b, Cout, Cin, t, u]
               .reshape({4 * cout, cin, 2, 2});       // [4*Cout, Cin, 2, 2]
  const bool cl = x.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  if (cl) k = k.contiguous(at::MemoryFormat::ChannelsLast);
  auto o = torch::conv2d(x, k, {}, 1, 1);  // [N, 4*Cout, H+1, W+1]: phase (a, b) is rows a..a+H-1, cols b..b+W-1
  const auto s = o.strides();  // sN, sC, sH, sW
  const std::int64_t s_a = 2 * cout * s[1] + s[2], s_b = cout * s[1] + s[3];  // one phase step = next block + 1 px
  if (cl) {
    auto v = o.as_strided({n, h, 2, wd, 2, cout}, {s[0], s[2], s_a, s[3], s_b, s[1]}, o.storage_offset());
    return v.reshape({n, 2 * h, 2 * wd, cout}).permute({0, 3, 1, 2});  // [N, Cout, 2H, 2W], channels_last
  }
  auto v = o.as_strided({n, cout, h, 2, wd, 2}, {s[0], s[1], s[2], s_a, s[3], s_b}, o.storage_offset());
  return v.reshape({n, cout, 2 * h, 2 * wd});  // [N, Cout, 2H, 2W]
}

torch::Tensor upconv_from_1x1(const torch::Tensor& z, const torch::Tensor& w) {
  TORCH_CHECK(z.dim() == 4 && z.size(2) == 1 && z.size(3) == 1 && z.size(1) == w.size(0),
              "upconv_from_1x1: z ", z.sizes(), " and weight ", w.sizes(), " do not fit");
  const std::int64_t n = z.size(0), cin = w.size(0), cout = w.size(1), k = w.size(2);
  auto y = z.reshape({n, cin}).mm(w.reshape({cin, cout * k * k}));  // [N, Cout*k*k]
  return y.view({n, cout, k, k});                                      // [N, Cout, k, k]
}

torch::Tensor upconv_gemm(const torch::Tensor& x, const torch::Tensor& w) {
  TORCH_CHECK(x.dim() == 4 && w.dim() == 4 && w.size(2) == 4 && w.size(3) == 4 && x.size(1) == w.size(0),
              "upconv_gemm: x ", x.sizes(), " and weight ", w.sizes(), " do not fit");
  const std::int64_t n = x.size(0), h = x.size(2), wd = x.size(3), cin = w.size(0), cout = w.size(1);
  auto cols = x.permute({0, 2, 3, 1}).reshape({n * h * wd, cin})  // [N*H*W, Cin]
                  .mm(w.reshape({cin, cout * 16}));                // [N*H*W, Cout*16]: each pixel's 4x4 footprint
  cols = cols.view({n, h * wd, cout * 16}).transpose(1, 2);       // [N, Cout*16, H*W]
  return torch::nn::functional::fold(
      cols, torch::nn::functional::FoldFuncOptions({2 * h, 2 * wd}, {4, 4}).stride(2).padding(1));  // [N, Cout, 2H, 2W]
}

DownConvImpl::DownConvImpl(int in, int out, int kernel, int stride_, int padding_)
    : stride(stride_), padding(padding_) {
  weight = register_parameter("weight", torch::empty({out, in, kernel, kernel}));
  nn::init::kaiming_uniform_(weight, std::sqrt(5.0));  // as Conv2d does: the same random draws
}

namespace {
// kAuto with a measured choice for this input side: that form; otherwise the layer's mode.
DownconvMode down_form(DownconvMode mode, DownconvMode tuned, std::int64_t tuned_side, const torch::Tensor& x) {
  return mode == DownconvMode::kAuto && tuned != DownconvMode::kAuto && x.dim() == 4 && x.size(2) == tuned_side
             ? tuned
             : mode;
}
}  // namespace

torch::Tensor DownConvImpl::forward(const torch::Tensor& x) {
  return downconv(x, weight, stride, padding, down_form(mode, tuned, tuned_side, x));
}

SNConv2dImpl::SNConv2dImpl(int in, int out, int kernel, int stride_, int padding_) : stride(stride_), padding(padding_) {
  weight = register_parameter("weight", torch::empty({out, in, kernel, kernel}));
  nn::init::kaiming_uniform_(weight, std::sqrt(5.0));  // as Conv2d
  u = register_buffer("u", torch::nn::functional::normalize(torch::randn({out}),
                                                            torch::nn::functional::NormalizeFuncOptions().dim(0)));
}

torch::Tensor SNConv2dImpl::sigma() const {
  torch::NoGradGuard no_grad;
  auto w = weight.reshape({weight.size(0), -1});  // [out, in*k*k]
  auto v = torch::nn::functional::normalize(w.t().mv(u), torch::nn::functional::NormalizeFuncOptions().dim(0));
  return u.dot(w.mv(v));
}

torch::Tensor SNConv2dImpl::forward(const torch::Tensor& x) {
  auto w = weight.reshape({weight.size(0), -1});  // [out, in*k*k]
  const auto unit = torch::nn::functional::NormalizeFuncOptions().dim(0).eps(1e-12);
  torch::Tensor v, u_now;
  {
    torch::NoGradGuard no_grad;
    v = torch::nn::functional::normalize(w.detach().t().mv(u), unit);  // [in*k*k]
    if (is_training()) u.copy_(torch::nn::functional::normalize(w.detach().mv(v), unit));  // [out]
    u_now = u.clone();  // later calls update u in place; this graph keeps its own copy
  }
  auto sigma = u_now.dot(w.mv(v));  // u^T W v: the top singular value, differentiable in W (u, v constants)
  return downconv(x, weight / sigma, stride, padding, down_form(mode, tuned, tuned_side, x));
}

torch::Tensor MinibatchStdImpl::forward(const torch::Tensor& x) {
  const std::int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const std::int64_t g = n % 4 == 0 ? 4 : n;                         // group size
  auto y = x.reshape({g, n / g, c, h, w});                           // [G, N/G, C, H, W]: group members on dim 0
  auto sd = (y.var(0, /*unbiased=*/false) + 1e-8).sqrt();            // [N/G, C, H, W]
  auto f = sd.mean({1, 2, 3});                                       // [N/G]
  auto maps = f.view({1, n / g, 1, 1, 1}).expand({g, n / g, 1, h, w}).reshape({n, 1, h, w});  // [N, 1, H, W]
  return torch::cat({x, maps.to(x.dtype())}, 1);                     // [N, C + 1, H, W]
}

torch::Tensor sample_latent(const ModelConfig& cfg, std::int64_t n, c10::optional<at::Generator> gen) {
  if (cfg.latent == "uniform") return torch::rand({n, cfg.nz}, gen) * 2 - 1;  // [n, nz] in [-1, 1)
  return torch::randn({n, cfg.nz}, gen);                                     // [n, nz]
}

torch::Tensor sample_labels(const ModelConfig& cfg, std::int64_t n, c10::optional<at::Generator> gen) {
  return torch::randint(std::max(cfg.num_classes, 1), {n}, gen, torch::kLong);  // [n]
}

void GeneratorImpl::set_upconv_mode(UpconvMode mode) {
  for (auto& m : modules(/*include_self=*/false))
    if (auto* u = m->as<UpConvImpl>()) u->mode = mode;
}

void set_channels_last(nn::Module& module, bool channels_last) {
  torch::NoGradGuard no_grad;
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(fmt));
  for (auto& b : module.buffers())
    if (b.dim() == 4) b.set_data(b.contiguous(fmt));
}

namespace {
UpConv up(int in, int out, int stride, int pad) { return UpConv(in, out, stride, pad); }
nn::AnyModule down(const ModelConfig& cfg, int in, int out, int stride, int pad) {
  if (cfg.spectral_norm) return nn::AnyModule(SNConv2d(in, out, 4, stride, pad));
  return nn::AnyModule(DownConv(in, out, 4, stride, pad));
}
// BatchNorm2d, or its global-batch form with model.sync_bn (same parameters and state_dict).
nn::AnyModule batch_norm(const ModelConfig& cfg, int ch) {
  if (cfg.sync_bn) return nn::AnyModule(SyncBatchNorm2d(ch));
  return nn::AnyModule(nn::BatchNorm2d(ch));
}
nn::AnyModule norm(const ModelConfig& cfg, int ch) {
  if (cfg.d_norm == "layer") return nn::AnyModule(nn::GroupNorm(nn::GroupNormOptions(1, ch)));
  if (cfg.d_norm == "instance") return nn::AnyModule(nn::InstanceNorm2d(nn::InstanceNorm2dOptions(ch).affine(true)));
  return batch_norm(cfg, ch);
}
void set_reducer(nn::Module& module, const AllReduceSum& reduce) {
  for (auto& m : module.modules(/*include_self=*/false))
    if (auto* bn = m->as<SyncBatchNorm2dImpl>()) bn->reduce = reduce;
}
void check_labels(const ModelConfig& cfg, const torch::Tensor& labels, std::int64_t n, const char* who) {
  TORCH_CHECK(labels.defined(), who, " is conditional (", cfg.num_classes, " classes): labels are required");
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == n, who, " labels must be [", n, "], got ", labels.sizes());
}
}  // namespace

GeneratorImpl::GeneratorImpl(const ModelConfig& cfg) : cfg_(cfg) {
  const int g = cfg.ngf;
  int ch = g * channel_mult(cfg, 4);
  TORCH_CHECK(!cfg.conditional || cfg.num_classes >= 2, "conditional generator needs model.num_classes >= 2");
  const int in = cfg.nz + (cfg.conditional ? cfg.class_embed : 0);
  main_->push_back(up(in, ch, 1, 0));  // [N, ngf*m, 4, 4]
  main_->push_back(batch_norm(cfg, ch));
  main_->push_back(nn::ReLU(true));
  for (int res = 8; res < cfg.image_size; res *= 2) {
    int next = g * channel_mult(cfg, res);
    main_->push_back(up(ch, next, 2, 1));  // [N, ngf*m/2 (capped), res, res]
    main_->push_back(batch_norm(cfg, next));
    main_->push_back(nn::ReLU(true));
    ch = next;
  }
  main_->push_back(up(ch, cfg.channels, 2, 1));  // [N, channels, image_size, image_size]
  main_->push_back(nn::Tanh());
  register_module("main", main_);
  if (cfg.conditional) embed_ = register_module("embed", nn::Embedding(cfg.num_classes, cfg.class_embed));
}

torch::Tensor GeneratorImpl::forward(const torch::Tensor& z, const torch::Tensor& labels) {
  TORCH_CHECK(z.dim() == 2 || z.dim() == 4, "generator input must be [N, nz] or [N, nz, 1, 1]");
  TORCH_CHECK(z.size(1) == cfg_.nz, "generator expects nz = ", cfg_.nz, ", got ", z.size(1));
  auto in = z.reshape({z.size(0), cfg_.nz});  // [N, nz]
  if (cfg_.conditional) {
    check_labels(cfg_, labels, z.size(0), "generator");
    in = torch::cat({in, embed_->forward(labels).to(in.dtype())}, 1);  // [N, nz + class_embed]
  }
  auto out = main_->forward(in.view({in.size(0), in.size(1), 1, 1}));
  return out;  // [N, channels, image_size, image_size]
}

DiscriminatorImpl::DiscriminatorImpl(const ModelConfig& cfg) : cfg_(cfg) {
  const int d = cfg.ndf;
  int ch = d;
  TORCH_CHECK(!cfg.conditional || cfg.num_classes >= 2, "conditional discriminator needs model.num_classes >= 2");
  const bool concat = cfg.conditional && cfg.d_conditioning == "concat";
  main_->push_back(down(cfg, cfg.channels + (concat ? cfg.num_classes : 0), ch, 2, 1));  // [N, ndf, S/2, S/2]
  main_->push_back(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2).inplace(true)));
  for (int res = cfg.image_size / 4; res >= 4; res /= 2) {
    int next = d * channel_mult(cfg, res);
    main_->push_back(down(cfg, ch, next, 2, 1));  // [N, ndf*m, res, res]
    if (cfg.d_norm != "none") main_->push_back(norm(cfg, next));
    main_->push_back(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2).inplace(true)));
    ch = next;
  }
  if (cfg.minibatch_std) {
    main_->push_back(MinibatchStd());  // [N, ndf*m + 1, 4, 4]
    ++ch;
  }
  main_->push_back(down(cfg, ch, 1, 1, 0));  // [N, 1, 1, 1]: one logit per image
  register_module("main", main_);
  if (cfg.conditional && !concat) embed_ = register_module("embed", nn::Embedding(cfg.num_classes, ch));
}

void GeneratorImpl::set_batch_stats_reducer(const AllReduceSum& reduce) { set_reducer(*this, reduce); }

void DiscriminatorImpl::set_batch_stats_reducer(const AllReduceSum& reduce) { set_reducer(*this, reduce); }

void DiscriminatorImpl::set_downconv_mode(DownconvMode mode) {
  downconv_ = mode;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<DownConvImpl>()) c->mode = mode;
    else if (auto* sn = m->as<SNConv2dImpl>()) sn->mode = mode;
  }
}

torch::Tensor DiscriminatorImpl::forward(const torch::Tensor& x_in, const torch::Tensor& labels) {
  // The Winograd form works on channels_last activations; oneDNN's first conv then writes channels_last too. When
  // every layer was measured faster as conv2d (tune_downconv), the activations keep the caller's format.
  const bool cl = downconv_ != DownconvMode::kDirect && !(downconv_ == DownconvMode::kAuto && all_tuned_direct_) &&
                  x_in.device().is_cpu() && x_in.dim() == 4;
  const torch::Tensor x = cl ? x_in.contiguous(at::MemoryFormat::ChannelsLast) : x_in;
  TORCH_CHECK(x.dim() == 4 && x.size(1) == cfg_.channels && x.size(2) == cfg_.image_size &&
                  x.size(3) == cfg_.image_size,
              "discriminator expects [N, ", cfg_.channels, ", ", cfg_.image_size, ", ", cfg_.image_size, "], got ",
              x.sizes());
  if (cfg_.conditional) check_labels(cfg_, labels, x.size(0), "discriminator");
  torch::Tensor h = x;
  if (cfg_.conditional && cfg_.d_conditioning == "concat") {
    auto maps = torch::one_hot(labels, cfg_.num_classes).to(x.dtype());  // [N, K]
    maps = maps.view({x.size(0), cfg_.num_classes, 1, 1}).expand({-1, -1, x.size(2), x.size(3)});
    h = torch::cat({x, maps}, 1).contiguous(x.suggest_memory_format());  // [N, C + K, S, S]
  }
  const size_t last = main_->size() - 1;
  size_t i = 0;
  torch::Tensor logits;
  for (auto it = main_->begin(); it != main_->end(); ++it, ++i) {
    if (i < last) {
      h = it->forward(h);  // ... -> [N, ndf*m (+1), 4, 4] before the last layer
      continue;
    }
    logits = it->forward(h);  // [N, 1, 1, 1]
  }
  if (embed_) {  // projection: + <embed(y), sum over pixels of h>
    auto proj = (embed_->forward(labels).to(h.dtype()) * h.sum({2, 3})).sum(1);  // [N]
    logits = logits + proj.view({x.size(0), 1, 1, 1});
  }
  TORCH_CHECK(logits.dim() == 4 && logits.size(1) == 1 && logits.size(2) == 1 && logits.size(3) == 1,
              "discriminator produced ", logits.sizes(), " instead of [N, 1, 1, 1]");
  return logits.view({x.size(0)});  // [N]
}

void dcgan_init(nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) c->weight.normal_(0.0, 0.02);
    else if (auto* dc = m->as<DownConvImpl>()) dc->weight.normal_(0.0, 0.02);
    else if (auto* u = m->as<UpConvImpl>()) u->weight.normal_(0.0, 0.02);
    else if (auto* sn = m->as<SNConv2dImpl>()) sn->weight.normal_(0.0, 0.02);
    else if (auto* e = m->as<nn::EmbeddingImpl>()) e->weight.normal_(0.0, 0.02);
    else if (auto* b = m->as<nn::BatchNorm2d>()) {
      b->weight.normal_(1.0, 0.02);
      b->bias.zero_();
    } else if (auto* sb = m->as<SyncBatchNorm2dImpl>()) {
      sb->weight.normal_(1.0, 0.02);
      sb->bias.zero_();
    }
  }
}

std::int64_t parameter_count(nn::Module& module) {
  std::int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace gan

#include "gan/eval.h"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "gan/cache.h"
#include "gan/datasets.h"
#include "gan/errors.h"
#include "gan/files.h"
#include "gan/inception.h"
#include "gan/pickle.h"
#include "gan/progress.h"

namespace gan {
namespace fs = std::filesystem;

// ---------------------------------------------------------------- metrics

namespace {

at::Tensor as_features(const at::Tensor& x, const char* what) {
  if (!x.defined() || x.dim() != 2 || x.size(0) < 2)
    throw std::invalid_argument(std::string(what) + ": expected a feature matrix [N >= 2, D]");
  return x.to(torch::kCPU, torch::kDouble).contiguous();  // [N, D]
}

// Gaussian fit: mean [D] and unbiased covariance [D, D].
std::pair<at::Tensor, at::Tensor> gaussian_fit(const at::Tensor& x) {
  at::Tensor mu = x.mean(0);                       // [D]
  at::Tensor c = x - mu;                           // [N, D]
  at::Tensor cov = c.t().matmul(c) / static_cast<double>(x.size(0) - 1);  // [D, D]
  return {mu, cov};
}

// Writes a cache archive atomically; a cache that cannot be written costs time later, so it only warns.
void save_to_cache(torch::serialize::OutputArchive& ar, const std::string& dir, const std::string& path,
                   const char* what, const char* consequence) {
  try {
    make_dirs(dir);
    std::ostringstream bytes;
    ar.save_to(bytes);
    write_file_atomic(path, bytes.str());
  } catch (const UserError& e) {
    spdlog::warn("cannot cache {} ({}){}", what, e.what(), consequence);
  }
}

}  // namespace

double frechet_distance_stats(const at::Tensor& mu1, const at::Tensor& cov1, const at::Tensor& mu2,
                              const at::Tensor& cov2) {
  at::Tensor m1 = mu1.to(torch::kDouble), m2 = mu2.to(torch::kDouble);  // [D]
  at::Tensor c1 = cov1.to(torch::kDouble), c2 = cov2.to(torch::kDouble);  // [D, D]
  c1 = (c1 + c1.t()) / 2;
  c2 = (c2 + c2.t()) / 2;
  // sqrt(C1) from its eigendecomposition; tr sqrt(C1 C2) = tr sqrt(sqrt(C1) C2 sqrt(C1)), the latter symmetric PSD.
  auto [w1, v1] = at::linalg_eigh(c1);                              // [D], [D, D]
  at::Tensor s1 = v1.matmul(torch::diag(w1.clamp_min(0).sqrt())).matmul(v1.t());  // [D, D]
  at::Tensor m = s1.matmul(c2).matmul(s1);                           // [D, D]
  m = (m + m.t()) / 2;
  const double tr_sqrt = at::linalg_eigvalsh(m).clamp_min(0).sqrt().sum().item<double>();
  const double mean_term = (m1 - m2).pow(2).sum().item<double>();
  const double fd = mean_term + c1.trace().item<double>() + c2.trace().item<double>() - 2 * tr_sqrt;
  return std::max(fd, 0.0);  // rounding can leave -1e-12 for identical inputs
}

double frechet_distance(const at::Tensor& a, const at::Tensor& b) {
  auto [mu1, cov1] = gaussian_fit(as_features(a, "frechet_distance"));
  auto [mu2, cov2] = gaussian_fit(as_features(b, "frechet_distance"));
  return frechet_distance_stats(mu1, cov1, mu2, cov2);
}

KidResult kid(const at::Tensor& a, const at::Tensor& b, int subsets, std::int64_t subset_size, std::uint64_t seed) {
  at::Tensor x = as_features(a, "kid").to(torch::kFloat), y = as_features(b, "kid").to(torch::kFloat);  // [Na, D], [Nb, D]
  if (x.size(1) != y.size(1)) throw std::invalid_argument("kid: feature sizes differ");
  const std::int64_t m = std::min({subset_size, x.size(0), y.size(0)});
  const double d = static_cast<double>(x.size(1));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto kernel_sum = [&](const at::Tensor& p, const at::Tensor& q, bool drop_diagonal) {
    at::Tensor k = (p.matmul(q.t()).to(torch::kDouble) / d + 1).pow(3);  // [m, m]
    double s = k.sum().item<double>();
    if (drop_diagonal) s -= k.diagonal().sum().item<double>();
    return s;
  };
  // Subsets as large as both sets are the sets themselves in another order, which the statistic ignores: one value,
  // and no spread to report (100 copies of it would print "+- 0").
  const bool whole = m == x.size(0) && m == y.size(0);
  std::vector<double> values;
  for (int s = 0; s < (whole ? 1 : subsets); ++s) {
    at::Tensor xs = x.index_select(0, torch::randperm(x.size(0), gen, torch::kLong).narrow(0, 0, m));  // [m, D]
    at::Tensor ys = y.index_select(0, torch::randperm(y.size(0), gen, torch::kLong).narrow(0, 0, m));  // [m, D]
    const double md = static_cast<double>(m);
    values.push_back((kernel_sum(xs, xs, true) + kernel_sum(ys, ys, true)) / (md * (md - 1)) -
                     2 * kernel_sum(xs, ys, false) / (md * md));
  }
  KidResult r;
  double sum = 0, sq = 0;
  for (double v : values) sum += v;
  r.mean = sum / static_cast<double>(values.size());
  for (double v : values) sq += (v - r.mean) * (v - r.mean);
  r.std = values.size() > 1 ? std::sqrt(sq / static_cast<double>(values.size() - 1)) : NAN;
  return r;
}

namespace {

// Distance of each row of x to its k-th nearest other row of x. Returns [N].
at::Tensor knn_radius(const at::Tensor& x, int k) {
  std::vector<at::Tensor> out;
  for (std::int64_t i = 0; i < x.size(0); i += 1000) {
    at::Tensor dist = torch::cdist(x.narrow(0, i, std::min<std::int64_t>(1000, x.size(0) - i)), x);  // [c, N]
    out.push_back(std::get<0>(dist.kthvalue(k + 1, 1)));  // [c]; the smallest is the point itself
  }
  return torch::cat(out);  // [N]
}

// Share of the rows of q lying inside at least one ball (centre p[j], radius r[j]).
double inside_share(const at::Tensor& q, const at::Tensor& p, const at::Tensor& r) {
  std::int64_t inside = 0;
  for (std::int64_t i = 0; i < q.size(0); i += 1000) {
    at::Tensor dist = torch::cdist(q.narrow(0, i, std::min<std::int64_t>(1000, q.size(0) - i)), p);  // [c, Np]
    inside += (dist <= r.unsqueeze(0)).any(1).sum().item<std::int64_t>();
  }
  return static_cast<double>(inside) / static_cast<double>(q.size(0));
}

}  // namespace

PrecisionRecall precision_recall(const at::Tensor& real, const at::Tensor& gen, int k) {
  at::Tensor r = as_features(real, "precision_recall").to(torch::kFloat);  // [Nr, D]
  at::Tensor g = as_features(gen, "precision_recall").to(torch::kFloat);   // [Ng, D]
  if (r.size(0) <= k || g.size(0) <= k) throw std::invalid_argument("precision_recall: need more than k points");
  PrecisionRecall pr;
  pr.precision = inside_share(g, r, knn_radius(r, k));
  pr.recall = inside_share(r, g, knn_radius(g, k));
  return pr;
}

double entropy(const std::vector<double>& hist) {
  double total = 0, h = 0;
  for (double v : hist) total += v;
  if (total <= 0) return 0;
  for (double v : hist)
    if (v > 0) h -= (v / total) * std::log(v / total);
  return h;
}

// ---------------------------------------------------------------- helpers

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Restores torch's global CPU generator on scope exit and seeds it meanwhile: module initialisation inside does not
// disturb the training run's random stream (exact resume) and is itself reproducible.
class GlobalRngGuard {
 public:
  explicit GlobalRngGuard(std::uint64_t seed) : gen_(at::detail::getDefaultCPUGenerator()) {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    state_ = gen_.get_state();
    gen_.set_current_seed(seed);
  }
  ~GlobalRngGuard() {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    gen_.set_state(state_);
  }

 private:
  at::Generator gen_;
  at::Tensor state_;
};

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}
std::uint64_t text_hash(const std::string& s) {
  return cache_checksum(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

std::string eval_cache_dir(const std::string& setting) {
  if (setting != "auto") return setting;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  if (xdg && xdg[0] == '/') return std::string(xdg) + "/gan-trainer";
  if (home && home[0]) return std::string(home) + "/.cache/gan-trainer";
  throw UserError(kExitUsage, "eval.cache is auto but neither $XDG_CACHE_HOME nor $HOME is set; set eval.cache to a "
                              "writable folder");
}

// Internal resolution of the classifier: the image size up to 32 (larger images are box-filtered down to 32).
int classifier_resolution(int image_size) { return std::min(image_size, 32); }

// [N, C, S, S] -> [N, C, R, R] by averaging SxS/RxR blocks (S, R powers of two, R <= S).
at::Tensor to_resolution(const at::Tensor& x, int r) {
  if (x.size(-1) == r) return x;
  return torch::adaptive_avg_pool2d(x, {r, r});  // [N, C, r, r]
}

// The dataset's identity: every setting that changes its pixels, its size and a fingerprint of its content.
std::string dataset_key(const Config& cfg, ImageSource& src) {
  const DataConfig& d = cfg.data;
  std::string path = d.path.empty() ? std::string(kFashionMnistDir) : d.path;
  std::error_code ec;
  fs::path abs = fs::weakly_canonical(fs::absolute(path), ec);
  if (!ec) path = abs.string();
  std::ostringstream key;
  key << "source=" << d.source << ";path=" << path << ";split=" << d.split << ";labels=" << d.labels
      << ";background=" << d.background << ";min_image_size=" << d.min_image_size << ";max_images=" << d.max_images
      << ";size=" << cfg.model.image_size << ";channels=" << cfg.model.channels << ";n=" << src.size()
      << ";classes=" << src.num_classes();
  // Content fingerprint: up to 256 evenly spaced images and every label.
  const size_t per = static_cast<size_t>(src.channels()) * src.image_size() * src.image_size();
  std::vector<std::uint8_t> buf(per);
  std::uint64_t fp = 0;
  const std::int64_t n = src.size(), probes = std::min<std::int64_t>(256, n);
  for (std::int64_t j = 0; j < probes; ++j) {
    const std::int64_t i = j * n / probes;
    std::uint64_t h = src.load(i, buf.data()) ? cache_checksum(buf.data(), per) : 0;
    fp = fp * 1099511628211ull ^ h;
  }
  std::vector<std::int32_t> labels(static_cast<size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = src.label(i);
  fp ^= cache_checksum(reinterpret_cast<const std::uint8_t*>(labels.data()), labels.size() * sizeof(std::int32_t));
  key << ";content=" << hex64(fp);
  return key.str();
}

// Loads images `indices` of `src` as [N, C, S, S] uint8 (failed decodes skipped). `loaded` gets the indices used.
at::Tensor load_images(ImageSource& src, const std::vector<std::int64_t>& indices, std::vector<std::int64_t>* loaded) {
  const std::int64_t c = src.channels(), s = src.image_size();
  at::Tensor out = torch::empty({static_cast<std::int64_t>(indices.size()), c, s, s}, torch::kUInt8);  // [N, C, S, S]
  std::uint8_t* p = out.data_ptr<std::uint8_t>();
  std::int64_t n = 0;
  for (std::int64_t i : indices) {
    if (src.load(i, p + n * c * s * s)) {
      ++n;
      if (loaded) loaded->push_back(i);
    }
  }
  return out.narrow(0, 0, n);  // [n, C, S, S]
}

at::Tensor bytes_to_unit(const at::Tensor& u8) { return u8.to(torch::kFloat).div_(127.5).sub_(1.0); }

// ---------------------------------------------------------------- the classifier extractor

constexpr std::int64_t kClassifierFormat = 2;
constexpr int kClassifierWidth = 32;  // stride-2 convs: ~2.5 MMAC per 32x32 image
constexpr int kClassifierFeatures = 128;
constexpr double kClassifierMaxSeconds = 120;

// Three strided conv-BN-ReLU blocks, then a 128-d ReLU layer (the features, scaled to unit mean square per
// dimension on held-out data so that KID's kernel sees O(1) values) and a linear head. Input [N, C, S, S] in [-1, 1].
class ClassifierImpl : public torch::nn::Module {
 public:
  ClassifierImpl(int channels, int resolution, int classes, int width)
      : resolution(resolution), classes(classes) {
    namespace nn = torch::nn;
    auto block = [&](int in, int out, int kernel) {
      trunk->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(2).padding(1).bias(false)));
      trunk->push_back(nn::BatchNorm2d(out));
      trunk->push_back(nn::ReLU());
    };
    block(channels, width, 4);       // [N, w, R/2, R/2]
    block(width, 2 * width, 3);      // [N, 2w, R/4, R/4]
    block(2 * width, 4 * width, 3);  // [N, 4w, R/8, R/8]
    trunk->push_back(nn::Flatten());  // [N, 4w * (R/8)^2]
    trunk->push_back(nn::Linear(4 * width * (resolution / 8) * (resolution / 8), kClassifierFeatures));
    trunk->push_back(nn::ReLU());  // [N, 128]
    head = nn::Linear(kClassifierFeatures, classes);
    register_module("trunk", trunk);
    register_module("head", head);
    scale = register_buffer("scale", torch::ones({1}));
  }
  // Before the scale: x [N, C, S, S] -> [N, 128]
  at::Tensor hidden(const at::Tensor& x) { return trunk->forward(to_resolution(x, resolution)); }
  at::Tensor logits(const at::Tensor& h) { return head->forward(h); }  // [N, K]
  at::Tensor features(const at::Tensor& h) { return h * scale; }       // [N, 128]

  int resolution, classes;
  torch::nn::Sequential trunk;
  torch::nn::Linear head{nullptr};
  at::Tensor scale;  // [1]
};
TORCH_MODULE(Classifier);

std::uint64_t parameter_hash(torch::nn::Module& m) {
  std::uint64_t h = 0;
  auto add = [&](const at::Tensor& t) {
    at::Tensor c = t.to(torch::kCPU).contiguous();
    h = h * 1099511628211ull ^
        cache_checksum(static_cast<const std::uint8_t*>(c.data_ptr()), static_cast<size_t>(c.nbytes()));
  };
  for (const auto& p : m.named_parameters()) add(p.value());
  for (const auto& b : m.named_buffers()) add(b.value());
  return h;
}

struct TrainedClassifier {
  Classifier net{nullptr};
  double accuracy = NAN, seconds = NAN;
};

TrainedClassifier train_classifier(ImageSource& src, int channels, const c10::Device& device) {
  const auto t0 = Clock::now();
  const int r = classifier_resolution(src.image_size());
  const int k = src.num_classes();
  // A fixed shuffle; the last tenth (at most 10,000) is held out; at most 60,000 images are used for training.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(20240501);
  at::Tensor perm = torch::randperm(src.size(), gen, torch::kLong);  // [N]
  const std::int64_t n_all = src.size();
  const std::int64_t n_hold = std::clamp<std::int64_t>(n_all / 10, 1, 10000);
  const std::int64_t n_train = std::min<std::int64_t>(n_all - n_hold, 60000);
  if (n_train < 2 * k)
    throw UserError(kExitData, "the dataset has " + std::to_string(n_all) + " labelled images, too few to train the "
                                   "evaluation classifier; give eval.extractor a TorchScript model path");
  std::vector<std::int64_t> order(perm.data_ptr<std::int64_t>(), perm.data_ptr<std::int64_t>() + n_all);
  auto load_split = [&](std::int64_t begin, std::int64_t count, at::Tensor& labels) {
    std::vector<at::Tensor> parts;
    std::vector<std::int64_t> used, lab;
    for (std::int64_t i = begin; i < begin + count; i += 2048) {
      std::vector<std::int64_t> idx(order.begin() + i, order.begin() + std::min(begin + count, i + 2048));
      at::Tensor u8 = load_images(src, idx, &used);  // [c, C, S, S]
      // Down to the classifier's resolution once, kept as bytes.
      parts.push_back(
          to_resolution(u8.to(torch::kFloat), r).round_().clamp_(0, 255).to(torch::kUInt8));  // [c, C, R, R]
    }
    for (std::int64_t i : used) lab.push_back(src.label(i));
    labels = torch::tensor(lab, torch::kLong);  // [n]
    return torch::cat(parts);                  // [n, C, R, R]
  };
  at::Tensor y_train, y_hold;
  at::Tensor x_train = load_split(0, n_train, y_train);         // [n_train, C, R, R] uint8
  at::Tensor x_hold = load_split(n_all - n_hold, n_hold, y_hold);  // [n_hold, C, R, R] uint8
  const double load_s = seconds_since(t0);

  Classifier net(channels, r, k, kClassifierWidth);
  net->to(device);
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(2e-3));
  // Budget: two epochs, at least 10,000 images seen, at most kClassifierMaxSeconds; lr decays linearly to 0.
  const std::int64_t n = x_train.size(0);
  if (n < 2 * k)
    throw UserError(kExitData, "eval.extractor classifier: only " + std::to_string(n) + " labelled training images for " +
                                   std::to_string(k) + " classes; give eval.extractor a TorchScript model instead");
  const std::int64_t batch = std::min<std::int64_t>(128, n);  // a small dataset still makes progress every epoch
  const std::int64_t total_steps = std::max<std::int64_t>(2 * n, 10000) / batch;
  std::int64_t step = 0;
  bool out_of_time = false;
  net->train();
  while (step < total_steps && !out_of_time) {
    at::Tensor ep = torch::randperm(n, gen, torch::kLong);  // [n]
    for (std::int64_t i = 0; i + batch <= n && step < total_steps; i += batch, ++step) {
      at::Tensor idx = ep.narrow(0, i, batch);                                  // [B]
      at::Tensor x = bytes_to_unit(x_train.index_select(0, idx)).to(device);  // [B, C, R, R]
      at::Tensor y = y_train.index_select(0, idx).to(device);                 // [B]
      for (auto& group : opt.param_groups())
        static_cast<torch::optim::AdamOptions&>(group.options())
            .lr(2e-3 * (1.0 - static_cast<double>(step) / static_cast<double>(total_steps)));
      opt.zero_grad();
      at::Tensor loss = torch::nn::functional::cross_entropy(net->logits(net->hidden(x)), y);  // []
      loss.backward();
      opt.step();
      if (seconds_since(t0) > kClassifierMaxSeconds) {
        out_of_time = true;
        break;
      }
    }
  }
  net->eval();
  torch::NoGradGuard no_grad;
  std::int64_t correct = 0;
  double square_sum = 0;
  for (std::int64_t i = 0; i < x_hold.size(0); i += 1000) {
    const std::int64_t c = std::min<std::int64_t>(1000, x_hold.size(0) - i);
    at::Tensor x = bytes_to_unit(x_hold.narrow(0, i, c)).to(device);  // [c, C, R, R]
    at::Tensor h = net->hidden(x);                                    // [c, 128]
    at::Tensor pred = net->logits(h).argmax(1).cpu();                 // [c]
    correct += (pred == y_hold.narrow(0, i, c)).sum().item<std::int64_t>();
    square_sum += h.to(torch::kDouble).pow(2).sum().item<double>();
  }
  const double mean_square = square_sum / static_cast<double>(x_hold.size(0) * kClassifierFeatures);
  net->scale.fill_(mean_square > 0 ? 1.0 / std::sqrt(mean_square) : 1.0);
  TrainedClassifier out;
  out.net = net;
  out.accuracy = static_cast<double>(correct) / static_cast<double>(x_hold.size(0));
  out.seconds = seconds_since(t0);
  spdlog::info("eval classifier: trained on {} images ({}x{}, {} classes) in {:.1f} s ({:.1f} s loading, {} steps of "
               "{}{}): held-out accuracy {:.2f}% on {} images",
               n, r, r, k, out.seconds, load_s, step, batch, out_of_time ? ", stopped at the time limit" : "",
               100 * out.accuracy, x_hold.size(0));
  return out;
}

// ---------------------------------------------------------------- real statistics

struct RealStats {
  at::Tensor a, b;  // [m, D] float: two disjoint real subsets
  at::Tensor pred_a;  // [m] int64 predicted classes of a (classifier) or undefined
};

}  // namespace

// ---------------------------------------------------------------- Evaluator

struct Evaluator::Impl {
  Config cfg;
  c10::Device device;
  ExtractorInfo info;
  Classifier classifier{nullptr};
  std::unique_ptr<torch::jit::Module> script;
  FidInception inception{nullptr};
  std::vector<std::string> class_names;
  RealStats real;
  std::int64_t floor_n = -1;  // the floors below were computed with this many generated-side samples
  double fd_floor = NAN, kid_floor = NAN, precision_floor = NAN, recall_floor = NAN;

  Impl(const Config& c, const c10::Device& d) : cfg(c), device(d) {}

  // images [N, C, S, S] float in [-1, 1] -> features [N, D] float CPU; `pred` [N] int64 (classifier only).
  at::Tensor extract(const at::Tensor& images, at::Tensor* pred) {
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> feats, preds;
    for (std::int64_t i = 0; i < images.size(0); i += 500) {
      at::Tensor x = images.narrow(0, i, std::min<std::int64_t>(500, images.size(0) - i)).to(device, torch::kFloat);
      if (classifier) {
        at::Tensor h = classifier->hidden(x);  // [c, 128]
        if (pred) preds.push_back(classifier->logits(h).argmax(1).cpu());  // [c]
        feats.push_back(classifier->features(h).cpu());                    // [c, 128]
      } else if (inception) {
        feats.push_back(inception->features(x, fid_inception_chunk(device)).cpu());  // [c, 2048]
      } else {
        c10::IValue out;
        try {
          out = script->forward({x});
        } catch (const c10::Error& e) {
          throw UserError(kExitUsage, "eval.extractor " + cfg.eval.extractor + " failed on a batch [" +
                                          std::to_string(x.size(0)) + ", " + std::to_string(x.size(1)) + ", " +
                                          std::to_string(x.size(2)) + ", " + std::to_string(x.size(3)) +
                                          "] in [-1, 1]: " + e.what_without_backtrace());
        }
        if (!out.isTensor())
          throw UserError(kExitUsage, "eval.extractor " + cfg.eval.extractor + " returned no tensor; its forward must "
                                      "return the features as one tensor [N, ...]");
        at::Tensor f = out.toTensor();
        if (f.dim() < 1 || f.size(0) != x.size(0))
          throw UserError(kExitUsage, "eval.extractor " + cfg.eval.extractor + " returned shape " +
                                          c10::str(f.sizes()) + " for " + std::to_string(x.size(0)) +
                                          " images; it must return [N, ...]");
        feats.push_back(f.reshape({f.size(0), -1}).to(torch::kCPU, torch::kFloat));  // [c, D]
      }
    }
    if (pred && !preds.empty()) *pred = torch::cat(preds);
    return torch::cat(feats);  // [N, D]
  }

  void open_classifier(ImageSource& src, const std::string& data_key, const std::string& dir) {
    if (src.num_classes() < 2)
      throw UserError(kExitUsage, "eval.extractor is classifier, but the dataset (" + src.description() +
                                      ") has no class labels to train it on; give eval.extractor pytorch-fid's weights "
                                      "file (--set eval.extractor=pt_inception-2015-12-05-6726825d.pth: the standard "
                                      "FID) or the path of a TorchScript feature extractor");
    const int r = classifier_resolution(cfg.model.image_size);
    const std::string key = "classifier-v" + std::to_string(kClassifierFormat) + ";width=" +
                            std::to_string(kClassifierWidth) + ";" + data_key;
    const std::string path = dir + "/eval-classifier-" + hex64(text_hash(key)) + ".pt";
    info.cache_file = path;
    class_names = src.class_names();
    if (fs::exists(path)) {
      try {
        torch::serialize::InputArchive ar;
        ar.load_from(path, device);
        c10::IValue stored_key, acc, secs;
        if (ar.try_read("key", stored_key) && stored_key.isString() && stored_key.toStringRef() == key &&
            ar.try_read("accuracy", acc) && ar.try_read("seconds", secs)) {
          Classifier net(cfg.model.channels, r, src.num_classes(), kClassifierWidth);
          torch::serialize::InputArchive sub;
          ar.read("model", sub);
          net->load(sub);
          net->to(device);
          net->eval();
          classifier = net;
          info.accuracy = acc.toDouble();
          info.train_seconds = secs.toDouble();
          spdlog::info("eval classifier: {} (held-out accuracy {:.2f}%)", path, 100 * info.accuracy);
        } else {
          spdlog::warn("eval classifier {} belongs to other data; training a new one", path);
        }
      } catch (const c10::Error& e) {
        spdlog::warn("eval classifier {} is unreadable ({}); training a new one", path,
                     std::string(e.what_without_backtrace()).substr(0, 200));
      }
    }
    if (!classifier) {
      spdlog::info("eval classifier: training on {} (first use; cached in {})", src.description(), path);
      TrainedClassifier t = train_classifier(src, cfg.model.channels, device);
      classifier = t.net;
      info.accuracy = t.accuracy;
      info.train_seconds = t.seconds;
      info.trained_now = true;
      torch::serialize::OutputArchive ar, sub;
      classifier->save(sub);
      ar.write("model", sub);
      ar.write("key", c10::IValue(key));
      ar.write("accuracy", c10::IValue(t.accuracy));
      ar.write("seconds", c10::IValue(t.seconds));
      save_to_cache(ar, dir, path, "the eval classifier", "; it will be trained again next time");
    }
    info.description = "classifier:" + path;
  }

  // A TorchScript model, or pytorch-fid's Inception weights (a file of torch.save holding Inception-v3's state_dict).
  void open_script(const std::string& path) {
    if (!fs::is_regular_file(path))
      throw UserError(kExitUsage, "eval.extractor: no file " + path + "; give the path of a TorchScript model "
                                  "(saved with torch.jit.save), of pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                                  "or 'classifier'");
    StateDict weights;
    bool is_weights = false;
    std::string not_weights;  // why it is no weights file, for the message when it is no TorchScript model either
    try {
      weights = load_weights_file(path);
      is_weights = true;
    } catch (const UserError& e) {  // not a state_dict: a TorchScript archive, or neither (said below)
      not_weights = e.what();
      // torch.save's legacy stream is never TorchScript: its reader's line is the one that helps (a cut download).
      std::string head(64, '\0');
      std::ifstream in(path, std::ios::binary);
      in.read(&head[0], 64);
      head.resize(static_cast<size_t>(in.gcount()));
      if (pickle::looks_legacy(head)) throw UserError(kExitUsage, "eval.extractor " + not_weights);
    }
    if (is_weights) {
      if (!is_inception_weights(weights))
        throw UserError(kExitUsage, "eval.extractor " + path + " holds weights, but not Inception-v3's (no "
                                    "Mixed_7c.branch_pool.conv.weight); give pytorch-fid's "
                                    "pt_inception-2015-12-05-6726825d.pth or a TorchScript model");
      inception = FidInception();
      load_fid_inception(inception, weights, path);
      inception->to(device);
      inception->set_channels_last(true);  // 1.5x faster on the CPU (oneDNN), the same features to 1e-6
      info.description = "inception-fid:" + path;
      return;
    }
    try {
      script = std::make_unique<torch::jit::Module>(torch::jit::load(path, device));
    } catch (const c10::Error& e) {
      std::string why = e.what_without_backtrace();
      why = why.substr(0, why.find('\n'));
      throw UserError(kExitUsage, "eval.extractor: cannot load " + path + " as a TorchScript model (" + why +
                                      ") nor as Inception weights (" + not_weights +
                                      "); save a model with torch.jit.save(torch.jit.script(model) or "
                                      "torch.jit.trace(...))");
    }
    script->eval();
    info.description = path;
  }

  // Identity of the extractor's function, for the real-statistics cache key.
  std::string extractor_key() {
    if (classifier) return "classifier:" + hex64(parameter_hash(*classifier));
    struct stat st {};
    ::stat(cfg.eval.extractor.c_str(), &st);
    std::error_code ec;
    return std::string(inception ? "inception-fid-v1:" : "script:") + fs::absolute(cfg.eval.extractor, ec).string() +
           ";size=" + std::to_string(st.st_size) +
           ";mtime=" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
  }

  void prepare_real(ImageSource& src, const std::string& data_key, const std::string& dir) {
    const std::int64_t m = std::min<std::int64_t>(cfg.eval.samples, src.size() / 2);
    if (m < 10) throw UserError(kExitData, "the dataset " + src.description() + " is too small to evaluate against");
    const std::string key = "real-v1;m=" + std::to_string(m) + ";" + extractor_key() + ";" + data_key;
    const std::string path = dir + "/eval-real-" + hex64(text_hash(key)) + ".pt";
    if (fs::exists(path)) {
      try {
        torch::serialize::InputArchive ar;
        ar.load_from(path);
        c10::IValue stored_key;
        if (ar.try_read("key", stored_key) && stored_key.isString() && stored_key.toStringRef() == key) {
          ar.read("a", real.a, /*is_buffer=*/true);
          ar.read("b", real.b, /*is_buffer=*/true);
          at::Tensor pred;
          if (ar.try_read("pred_a", pred, /*is_buffer=*/true)) real.pred_a = pred;
          info.real_stats_cached = true;
          return;
        }
      } catch (const c10::Error&) {
        spdlog::warn("eval real statistics {} unreadable; computing them again", path);
      }
    }
    const auto t0 = Clock::now();
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
    at::Tensor perm = torch::randperm(src.size(), gen, torch::kLong);  // [N]
    std::vector<std::int64_t> order(perm.data_ptr<std::int64_t>(), perm.data_ptr<std::int64_t>() + perm.size(0));
    std::vector<at::Tensor> fa, fb, pa;
    std::int64_t na = 0, nb = 0;
    RateLog progress("eval: real features");
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(order.size()) && nb < m; i += 500) {
      std::vector<std::int64_t> idx(order.begin() + i, order.begin() + std::min<std::int64_t>(i + 500, order.size()));
      at::Tensor images = bytes_to_unit(load_images(src, idx, nullptr));  // [c, C, S, S]
      at::Tensor pred;
      at::Tensor f = extract(images, classifier ? &pred : nullptr);  // [c, D]
      // Fill a first, then b.
      const std::int64_t to_a = std::min<std::int64_t>(m - na, f.size(0));
      if (to_a > 0) {
        fa.push_back(f.narrow(0, 0, to_a));
        if (pred.defined()) pa.push_back(pred.narrow(0, 0, to_a));
        na += to_a;
      }
      const std::int64_t to_b = std::min<std::int64_t>(m - nb, f.size(0) - to_a);
      if (to_b > 0) {
        fb.push_back(f.narrow(0, to_a, to_b));
        nb += to_b;
      }
      progress.update(na + nb, 2 * m);
    }
    const std::int64_t got = std::min(na, nb);
    if (got < 10) throw UserError(kExitData, "too few decodable images in " + src.description() + " to evaluate");
    real.a = torch::cat(fa).narrow(0, 0, got).contiguous();  // [m, D]
    real.b = torch::cat(fb).narrow(0, 0, got).contiguous();  // [m, D]
    if (!pa.empty()) real.pred_a = torch::cat(pa).narrow(0, 0, got).contiguous();  // [m]
    spdlog::info("eval: real features of 2 x {} images ({}-d) in {:.1f} s", got, real.a.size(1), seconds_since(t0));
    torch::serialize::OutputArchive ar;
    ar.write("key", c10::IValue(key));
    ar.write("a", real.a, /*is_buffer=*/true);
    ar.write("b", real.b, /*is_buffer=*/true);
    if (real.pred_a.defined()) ar.write("pred_a", real.pred_a, /*is_buffer=*/true);
    save_to_cache(ar, dir, path, "the eval real statistics", "");
  }

  void compute_floors(std::int64_t n_gen) {
    const std::int64_t n = std::min<std::int64_t>(n_gen, real.b.size(0));
    if (n == floor_n) return;
    at::Tensor b = real.b.narrow(0, 0, n);  // [n, D]
    fd_floor = frechet_distance(real.a, b);
    kid_floor = kid(real.a, b).mean;
    PrecisionRecall pr = precision_recall(real.a, b);
    precision_floor = pr.precision;
    recall_floor = pr.recall;
    floor_n = n;
  }

  void fill_class_stats(EvalResult& r, const at::Tensor& pred_gen) {
    if (!classifier || !pred_gen.defined() || !real.pred_a.defined()) return;
    const std::int64_t k = classifier->classes;
    r.class_names = class_names;
    auto hist = [&](const at::Tensor& p) {
      at::Tensor counts = torch::bincount(p, {}, k).to(torch::kDouble);  // [K]
      counts = counts / std::max<double>(1.0, static_cast<double>(p.size(0)));
      return std::vector<double>(counts.data_ptr<double>(), counts.data_ptr<double>() + k);
    };
    r.class_hist = hist(pred_gen);
    r.class_entropy = entropy(r.class_hist);
    r.class_entropy_real = entropy(hist(real.pred_a));
    r.classes_covered = 0;
    for (double v : r.class_hist)
      if (v >= kCoveredShare / static_cast<double>(k)) ++r.classes_covered;
  }

  void fill_common(EvalResult& r) {
    r.extractor = info.description;
    r.extractor_accuracy = info.accuracy;
    r.n_real = real.a.size(0);
    r.feature_dim = real.a.size(1);
    r.n_asked = cfg.eval.samples;
  }
};

Evaluator::Evaluator(const Config& cfg, const c10::Device& device, ImageSource* data)
    : impl_(std::make_unique<Impl>(cfg, device)) {
  GlobalRngGuard rng(1);
  const std::string dir = eval_cache_dir(cfg.eval.cache);
  const bool use_classifier = cfg.eval.extractor == "classifier";
  if (!use_classifier) impl_->open_script(cfg.eval.extractor);  // before opening the data: fail fast
  std::unique_ptr<ImageSource> owned;
  if (!data) {
    owned = open_dataset(cfg.data, cfg.model.image_size, cfg.model.channels);
    data = owned.get();
  }
  if (data->image_size() != cfg.model.image_size || data->channels() != cfg.model.channels)
    throw std::invalid_argument("Evaluator: the data source's size/channels differ from cfg.model");
  const std::string key = dataset_key(cfg, *data);
  if (use_classifier) impl_->open_classifier(*data, key, dir);
  impl_->prepare_real(*data, key, dir);
}

Evaluator::~Evaluator() = default;

const ExtractorInfo& Evaluator::extractor_info() const { return impl_->info; }

EvalResult Evaluator::real_floor() {
  const auto t0 = Clock::now();
  EvalResult r;
  impl_->fill_common(r);
  impl_->compute_floors(impl_->real.b.size(0));
  r.fd_floor = impl_->fd_floor;
  r.kid_floor = impl_->kid_floor;
  r.precision_floor = impl_->precision_floor;
  r.recall_floor = impl_->recall_floor;
  if (impl_->classifier && impl_->real.pred_a.defined()) {
    EvalResult tmp;
    impl_->fill_class_stats(tmp, impl_->real.pred_a);
    r.class_names = tmp.class_names;
    r.class_entropy_real = tmp.class_entropy_real;
  }
  r.seconds = seconds_since(t0);
  return r;
}

EvalResult Evaluator::evaluate(const GenerateFn& generate) {
  GlobalRngGuard rng(2);
  torch::NoGradGuard no_grad;
  const auto t0 = Clock::now();
  Impl& s = *impl_;
  EvalResult r;
  s.fill_common(r);
  const std::int64_t n = s.cfg.eval.samples;
  const double max_s = parse_duration(s.cfg.eval.max_time);
  const std::int64_t minimum = std::min(kMinEvalSamples, n);
  const std::int64_t chunk = 250;
  const int c = s.cfg.model.channels, size = s.cfg.model.image_size;
  std::vector<at::Tensor> feats, preds;
  std::int64_t done = 0;
  double last_chunk_s = 0;
  bool finite = true;
  RateLog progress("eval: generated");
  while (done < n) {
    const std::int64_t count = std::min(chunk, n - done);
    if (max_s > 0 && done >= minimum && seconds_since(t0) + last_chunk_s > max_s) {
      r.capped = true;
      break;
    }
    const auto tc = Clock::now();
    at::Tensor x = generate(done, count);  // [count, C, S, S]
    if (!x.defined() || x.dim() != 4 || x.size(0) > count || x.size(1) != c || x.size(2) != size || x.size(3) != size)
      throw std::logic_error("Evaluator: the generator callback returned " +
                             (x.defined() ? c10::str(x.sizes()) : std::string("nothing")) + ", expected [" +
                             std::to_string(count) + ", " + std::to_string(c) + ", " + std::to_string(size) + ", " +
                             std::to_string(size) + "]");
    if (x.size(0) == 0) break;  // a source that has no more images
    if (!torch::isfinite(x).all().item<bool>()) finite = false;
    at::Tensor pred;
    feats.push_back(s.extract(x, s.classifier ? &pred : nullptr));  // [k, D]
    if (pred.defined()) preds.push_back(pred);                      // [k]
    done += x.size(0);
    last_chunk_s = seconds_since(tc);
    progress.update(done, n);
    if (x.size(0) < count) break;  // ... and the last of them
  }
  if (done < 10) throw UserError(kExitData, "only " + std::to_string(done) + " images to score; need at least 10");
  r.n_gen = done;
  if (!finite) {
    spdlog::warn("eval: the generator produced non-finite pixels; no scores");
    r.seconds = seconds_since(t0);
    return r;
  }
  at::Tensor g = torch::cat(feats);  // [n_gen, D]
  r.fd = frechet_distance(s.real.a, g);
  KidResult k = kid(s.real.a, g);
  r.kid = k.mean;
  r.kid_std = k.std;
  PrecisionRecall pr = precision_recall(s.real.a, g);
  r.precision = pr.precision;
  r.recall = pr.recall;
  s.compute_floors(done);
  r.fd_floor = s.fd_floor;
  r.kid_floor = s.kid_floor;
  r.precision_floor = s.precision_floor;
  r.recall_floor = s.recall_floor;
  if (!preds.empty()) s.fill_class_stats(r, torch::cat(preds));
  r.seconds = seconds_since(t0);
  return r;
}

GenerateFn image_sampler(std::shared_ptr<ImageSource> src) {
  auto next = std::make_shared<std::int64_t>(0);  // the next file to try: skipped files move it on
  return [src, next](std::int64_t /*first*/, std::int64_t count) {
    std::vector<at::Tensor> parts;
    std::int64_t got = 0;
    while (got < count && *next < src->size()) {
      std::vector<std::int64_t> idx;
      for (std::int64_t i = *next; i < src->size() && static_cast<std::int64_t>(idx.size()) < count - got; ++i)
        idx.push_back(i);
      *next += static_cast<std::int64_t>(idx.size());
      at::Tensor u8 = load_images(*src, idx, nullptr);  // [k, C, S, S]
      got += u8.size(0);
      parts.push_back(bytes_to_unit(u8));
    }
    if (parts.empty()) return torch::empty({0, src->channels(), src->image_size(), src->image_size()});
    return torch::cat(parts);  // [got <= count, C, S, S] in [-1, 1]
  };
}

GenerateFn generator_sampler(Generator g, const ModelConfig& model, const c10::Device& device, std::uint64_t seed) {
  // Latents come in blocks of 256, block b drawn from its own generator seeded from (seed, b): image i has the same
  // latent however the indices are split into calls (torch's normal sampler consumes its stream by tensor size).
  constexpr std::int64_t kBlock = 256;
  struct State {
    std::int64_t block = -1;
    at::Tensor z;  // [kBlock, nz]
  };
  auto state = std::make_shared<State>();
  return [g, model, device, seed, state](std::int64_t first, std::int64_t count) mutable -> at::Tensor {
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> rows;
    for (std::int64_t i = first; i < first + count;) {
      const std::int64_t block = i / kBlock;
      if (block != state->block) {
        auto gen = at::make_generator<at::CPUGeneratorImpl>(seed * 1000003ull + static_cast<std::uint64_t>(block));
        state->z = sample_latent(model, kBlock, gen);  // [kBlock, nz]
        state->block = block;
      }
      const std::int64_t take = std::min(first + count, (block + 1) * kBlock) - i;
      rows.push_back(state->z.narrow(0, i - block * kBlock, take));  // [take, nz]
      i += take;
    }
    at::Tensor z = torch::cat(rows).to(device);  // [count, nz]
    at::Tensor labels;
    if (model.conditional)
      labels = (torch::arange(first, first + count, torch::kLong) % std::max(1, model.num_classes)).to(device);  // [count]
    return g->forward(z, labels).to(torch::kCPU, torch::kFloat);  // [count, C, S, S]
  };
}

// ---------------------------------------------------------------- reports

namespace {

std::string num(double v, int digits = 6) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace

std::string eval_json(const EvalResult& r) {
  std::ostringstream o;
  o << "{\"extractor\": " << quoted(r.extractor) << ", \"extractor_accuracy\": " << num(r.extractor_accuracy)
    << ", \"feature_dim\": " << r.feature_dim << ", \"n_real\": " << r.n_real << ", \"n_gen\": " << r.n_gen
    << ", \"n_asked\": " << r.n_asked << ", \"capped\": " << (r.capped ? "true" : "false")
    << ", \"fd\": " << num(r.fd) << ", \"fd_floor\": " << num(r.fd_floor) << ", \"kid\": " << num(r.kid)
    << ", \"kid_std\": " << num(r.kid_std) << ", \"kid_floor\": " << num(r.kid_floor)
    << ", \"precision\": " << num(r.precision) << ", \"precision_floor\": " << num(r.precision_floor)
    << ", \"recall\": " << num(r.recall) << ", \"recall_floor\": " << num(r.recall_floor)
    << ", \"class_entropy\": " << num(r.class_entropy) << ", \"class_entropy_real\": " << num(r.class_entropy_real)
    << ", \"classes_covered\": " << r.classes_covered << ", \"class_hist\": [";
  for (size_t i = 0; i < r.class_hist.size(); ++i) o << (i ? ", " : "") << num(r.class_hist[i], 4);
  o << "], \"class_names\": [";
  for (size_t i = 0; i < r.class_names.size(); ++i) o << (i ? ", " : "") << quoted(r.class_names[i]);
  o << "], \"seconds\": " << num(r.seconds, 4) << "}";
  return o.str();
}

std::string eval_table(const EvalResult& r) {
  std::ostringstream o;
  o << "extractor  " << r.extractor;
  if (std::isfinite(r.extractor_accuracy)) o << " (held-out accuracy " << fixed(100 * r.extractor_accuracy, 1) << "%)";
  o << ", " << r.feature_dim << "-d features\n";
  if (r.n_gen > 0) {
    o << "samples    " << r.n_gen << " generated vs " << r.n_real << " real";
    if (r.capped) o << " (CAPPED by eval.max_time: " << r.n_asked << " asked; scores are noisier and FD/KID higher)";
    o << "\n";
  } else {
    o << "samples    real vs real only: " << r.n_real << " vs " << r.n_real << " disjoint real images\n";
  }
  auto row = [&](const char* name, double v, double floor, int dec, const std::string& extra, const char* hint) {
    o << name << (r.n_gen > 0 ? fixed(v, dec) + extra : std::string("-")) << "   (real-vs-real floor "
      << fixed(floor, dec) << ")  " << hint << "\n";
  };
  row("FD         ", r.fd, r.fd_floor, 3, "", "lower is better");
  row("KID        ", r.kid, r.kid_floor, 5, std::isfinite(r.kid_std) ? " +- " + fixed(r.kid_std, 5) : "",
      "lower is better");
  row("precision  ", r.precision, r.precision_floor, 3, "", "share of generated images on the real manifold");
  row("recall     ", r.recall, r.recall_floor, 3, "", "share of real images covered by generated ones");
  if (!r.class_hist.empty()) {
    const size_t k = r.class_hist.size();
    o << "classes    " << r.classes_covered << "/" << k << " covered (>= " << fixed(100 * kCoveredShare / k, 1)
      << "% of generated images each); entropy " << fixed(r.class_entropy, 3) << " nats (real "
      << fixed(r.class_entropy_real, 3) << ", max ln " << k << " = " << fixed(std::log(static_cast<double>(k)), 3)
      << ")\n";
    o << "histogram ";
    for (size_t i = 0; i < k; ++i)
      o << " " << (i < r.class_names.size() ? r.class_names[i] : std::to_string(i)) << " "
        << fixed(100 * r.class_hist[i], 1) << "%" << (i + 1 < k ? "," : "");
    o << "\n";
  } else if (std::isfinite(r.class_entropy_real)) {
    o << "classes    real predicted-class entropy " << fixed(r.class_entropy_real, 3) << " nats\n";
  }
  o << "time       " << fixed(r.seconds, 1) << " s\n";
  return o.str();
}

}  // namespace gan

#include "gan/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include "gan/errors.h"

namespace gan {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw UserError(kExitUsage, msg); }

// Where a value came from, for messages: "configs/x.cfg:12" or "--set train.lr".
std::string where(const std::string& origin, const YAML::Node& node) {
  if (node.Mark().is_null()) return origin;
  return origin + ":" + std::to_string(node.Mark().line + 1);
}

// One config key: how to read it from a YAML scalar into Config and how to print it.
struct Field {
  std::string section, key, doc;
  bool is_text = false;  // --set takes the value verbatim instead of parsing it as YAML
  std::function<void(Config&, const YAML::Node&, const std::string& loc)> set;
  std::function<std::string(const Config&)> get;
};

std::string scalar_text(const YAML::Node& n) { return n.IsScalar() ? n.Scalar() : std::string("<not a scalar>"); }

template <typename T>
const char* type_name() {
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else return "an integer";
}

template <typename T>
T convert(const YAML::Node& n, const std::string& loc, const std::string& full_key) {
  if (!n.IsScalar())
    fail(loc + ": " + full_key + " must be " + type_name<T>() + ", got " +
         (n.IsNull() ? "no value" : n.IsMap() ? "a mapping" : "a list"));
  try {
    if constexpr (std::is_integral_v<T>) {
      // yaml-cpp accepts "1.5" for int via stream extraction in some versions; be strict.
      const std::string& s = n.Scalar();
      if (s.find_first_of(".eE") != std::string::npos && s.rfind("0x", 0) != 0) throw YAML::BadConversion(n.Mark());
    }
    return n.as<T>();
  } catch (const YAML::BadConversion&) {
    fail(loc + ": " + full_key + " must be " + type_name<T>() + ", got '" + scalar_text(n) + "'");
  }
}

template <typename S, typename T>
Field number(const std::string& section, const std::string& key, S Config::*sec, T S::*member, double lo,
             double hi, const std::string& doc) {
  Field f{section, key, doc, false, {}, {}};
  std::string full = section + "." + key;
  f.set = [=](Config& c, const YAML::Node& n, const std::string& loc) {
    T v = convert<T>(n, loc, full);
    if (!(static_cast<double>(v) >= lo && static_cast<double>(v) <= hi)) {
      std::ostringstream os;
      os << loc << ": " << full << " = " << scalar_text(n) << " is out of range [" << lo << ", " << hi << "]";
      fail(os.str());
    }
    c.*sec.*member = v;
  };
  f.get = [=](const Config& c) {
    const T v = c.*sec.*member;
    std::ostringstream os;
    if constexpr (std::is_floating_point_v<T>) {
      os.precision(std::numeric_limits<T>::digits10);  // short ("0.0002") when that reads back exactly
      os << v;
      T back{};
      std::istringstream(os.str()) >> back;
      if (back == v) return os.str();
      os.str("");
      os.precision(std::numeric_limits<T>::max_digits10);  // else every digit (found by the config fuzzer)
    }
    os << v;
    return os.str();
  };
  return f;
}

template <typename S>
Field text(const std::string& section, const std::string& key, S Config::*sec, std::string S::*member,
           std::vector<std::string> choices, const std::string& doc) {
  Field f{section, key, doc, true, {}, {}};
  std::string full = section + "." + key;
  f.set = [=](Config& c, const YAML::Node& n, const std::string& loc) {
    std::string v = n.IsNull() ? std::string() : convert<std::string>(n, loc, full);
    if (!choices.empty() && std::find(choices.begin(), choices.end(), v) == choices.end()) {
      std::string list;
      for (const auto& ch : choices) list += (list.empty() ? "" : " | ") + ch;
      fail(loc + ": " + full + " = '" + v + "' is not one of: " + list);
    }
    c.*sec.*member = v;
  };
  f.get = [=](const Config& c) { return YAML::Dump(YAML::Node(c.*sec.*member)); };
  return f;
}

template <typename S>
Field flag(const std::string& section, const std::string& key, S Config::*sec, bool S::*member,
           const std::string& doc) {
  Field f{section, key, doc, false, {}, {}};
  std::string full = section + "." + key;
  f.set = [=](Config& c, const YAML::Node& n, const std::string& loc) {
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v))
      fail(loc + ": " + full + " must be true or false, got '" + scalar_text(n) + "'");
    c.*sec.*member = v;
  };
  f.get = [=](const Config& c) { return std::string(c.*sec.*member ? "true" : "false"); };
  return f;
}

// A text field holding a duration ("45s", "90m", "1d12h" or "" for none).
template <typename S>
Field duration(const std::string& section, const std::string& key, S Config::*sec, std::string S::*member,
               const std::string& doc) {
  Field f = text(section, key, sec, member, {}, doc);
  f.set = [base = f.set, sec, member, full = section + "." + key](Config& c, const YAML::Node& n,
                                                                  const std::string& loc) {
    base(c, n, loc);
    const std::string& v = c.*sec.*member;
    if (parse_duration(v) < 0) fail(loc + ": " + full + " = '" + v + "' is not a duration like 45s, 90m, 6h or 1d12h");
  };
  return f;
}

bool is_power_of_two(int v) { return v > 0 && (v & (v - 1)) == 0; }

const std::vector<Field>& fields() {
  static const std::vector<Field> table = [] {
    const double kBig = 1e12;
    std::vector<Field> t;
    t.push_back(text("data", "source", &Config::data, &DataConfig::source, {"fashion-mnist", "mnist", "idx", "folder"},
                     "fashion-mnist | mnist | idx | folder"));
    t.push_back(text("data", "path", &Config::data, &DataConfig::path, {},
                     "image folder, IDX images file or folder; \"\" = the Debian dataset location"));
    t.push_back(text("data", "split", &Config::data, &DataConfig::split, {"train", "test", "all"},
                     "IDX split: train | test | all"));
    t.push_back(text("data", "background", &Config::data, &DataConfig::background, {},
                     "#rrggbb colour that transparent pixels are composited on"));
    t.push_back(number("data", "max_images", &Config::data, &DataConfig::max_images, 0, kBig,
                       "use at most this many images (0 = all)"));
    t.push_back(number("data", "workers", &Config::data, &DataConfig::workers, 0, 256,
                       "image-decoding threads for folders (0 = number of cores)"));
    t.push_back(number("data", "min_image_size", &Config::data, &DataConfig::min_image_size, 1, 65536,
                       "skip images narrower or shorter than this (icons, tracking pixels)"));
    t.push_back(number("data", "max_bad_fraction", &Config::data, &DataConfig::max_bad_fraction, 0.0, 1.0,
                       "stop when more than this fraction of the files tried fail to decode"));
    Field cache = text("data", "cache", &Config::data, &DataConfig::cache, {},
                       "auto | off | FOLDER: where folder sources keep a uint8 cache");
    cache.set = [base = cache.set](Config& c, const YAML::Node& n, const std::string& loc) {
      base(c, n, loc);
      if (c.data.cache.empty())
        fail(loc + ": data.cache is empty; use auto, off or a folder to keep the preprocessed cache in");
    };
    t.push_back(cache);
    t.push_back(flag("data", "xflip", &Config::data, &DataConfig::xflip,
                     "show each image mirrored half of the time"));
    t.push_back(text("data", "labels", &Config::data, &DataConfig::labels, {},
                     "IDX label file for source idx (\"\" = next to the images)"));
    Field size = number("model", "image_size", &Config::model, &ModelConfig::image_size, 16, 256,
                        "output resolution: 16, 32, 64, 128 or 256");
    size.set = [base = size.set](Config& c, const YAML::Node& n, const std::string& loc) {
      base(c, n, loc);
      if (!is_power_of_two(c.model.image_size))
        fail(loc + ": model.image_size = " + std::to_string(c.model.image_size) +
             " is not a power of two; use 16, 32, 64, 128 or 256");
    };
    t.push_back(size);
    Field channels = number("model", "channels", &Config::model, &ModelConfig::channels, 1, 3,
                            "1 (grayscale) or 3 (RGB); images are converted to it");
    channels.set = [base = channels.set](Config& c, const YAML::Node& n, const std::string& loc) {
      base(c, n, loc);
      if (c.model.channels == 2) fail(loc + ": model.channels = 2; use 1 (grayscale) or 3 (RGB)");
    };
    t.push_back(channels);
    t.push_back(number("model", "nz", &Config::model, &ModelConfig::nz, 1, 4096, "latent vector length"));
    t.push_back(number("model", "ngf", &Config::model, &ModelConfig::ngf, 1, 1024, "generator width"));
    t.push_back(number("model", "ndf", &Config::model, &ModelConfig::ndf, 1, 1024, "discriminator width"));
    t.push_back(number("model", "max_mult", &Config::model, &ModelConfig::max_mult, 1, 64,
                       "channel multiplier cap for sizes above 64"));
    t.push_back(text("model", "latent", &Config::model, &ModelConfig::latent, {"normal", "uniform"},
                     "latent distribution: normal | uniform (-1, 1)"));
    t.push_back(text("model", "d_norm", &Config::model, &ModelConfig::d_norm, {"batch", "none", "layer", "instance"},
                     "D normalisation: batch | none | layer | instance"));
    t.push_back(flag("model", "spectral_norm", &Config::model, &ModelConfig::spectral_norm,
                     "spectral normalisation of D's convolutions"));
    t.push_back(flag("model", "minibatch_std", &Config::model, &ModelConfig::minibatch_std,
                     "minibatch std-dev channel before D's last conv"));
    t.push_back(flag("model", "conditional", &Config::model, &ModelConfig::conditional,
                     "class-conditional G and D (labelled data)"));
    t.push_back(number("model", "num_classes", &Config::model, &ModelConfig::num_classes, 0, 100000,
                       "classes of a conditional model (0 = from the data)"));
    t.push_back(number("model", "class_embed", &Config::model, &ModelConfig::class_embed, 1, 4096,
                       "length of G's class embedding"));
    t.push_back(text("model", "d_conditioning", &Config::model, &ModelConfig::d_conditioning,
                     {"projection", "concat"}, "conditional D: projection | concat"));
    t.push_back(flag("model", "sync_bn", &Config::model, &ModelConfig::sync_bn,
                     "distributed: BatchNorm over the global batch"));
    t.push_back(text("train", "device", &Config::train, &TrainConfig::device, {},
                     "auto | cpu | cuda | cuda:N (auto = CUDA when available)"));
    t.push_back(number("train", "threads", &Config::train, &TrainConfig::threads, 0, 1024,
                       "CPU threads (0 = all cores)"));
    t.push_back(number("train", "batch_size", &Config::train, &TrainConfig::batch_size, 2, 65536, "images per step"));
    t.push_back(number("train", "epochs", &Config::train, &TrainConfig::epochs, 0, 1000000,
                       "passes over the data (ignored when steps > 0)"));
    t.push_back(number("train", "steps", &Config::train, &TrainConfig::steps, 0, kBig,
                       "total steps; when > 0 it replaces epochs"));
    t.push_back(number("train", "kimg", &Config::train, &TrainConfig::kimg, 0.0, 1e9,
                       "length in thousands of real images; when > 0 it replaces epochs"));
    t.push_back(number("train", "lr", &Config::train, &TrainConfig::lr, 1e-9, 1.0, "Adam learning rate"));
    t.push_back(number("train", "beta1", &Config::train, &TrainConfig::beta1, 0.0, 0.999999, "Adam beta1"));
    t.push_back(number("train", "beta2", &Config::train, &TrainConfig::beta2, 0.0, 0.999999, "Adam beta2"));
    t.push_back(number("train", "lr_g", &Config::train, &TrainConfig::lr_g, 0.0, 1.0, "G learning rate (0 = lr)"));
    t.push_back(number("train", "lr_d", &Config::train, &TrainConfig::lr_d, 0.0, 1.0, "D learning rate (0 = lr)"));
    t.push_back(number("train", "beta1_g", &Config::train, &TrainConfig::beta1_g, -1.0, 0.999999, "G beta1 (-1 = beta1)"));
    t.push_back(number("train", "beta2_g", &Config::train, &TrainConfig::beta2_g, -1.0, 0.999999, "G beta2 (-1 = beta2)"));
    t.push_back(number("train", "beta1_d", &Config::train, &TrainConfig::beta1_d, -1.0, 0.999999, "D beta1 (-1 = beta1)"));
    t.push_back(number("train", "beta2_d", &Config::train, &TrainConfig::beta2_d, -1.0, 0.999999, "D beta2 (-1 = beta2)"));
    t.push_back(text("train", "loss", &Config::train, &TrainConfig::loss, {"bce", "minimax", "lsgan", "hinge", "wgan-gp", "rpgan"},
                     "bce (non-saturating) | minimax | lsgan | hinge | wgan-gp | rpgan (R3GAN)"));
    t.push_back(number("train", "gp_weight", &Config::train, &TrainConfig::gp_weight, 0.0, 1e6,
                       "wgan-gp gradient penalty weight"));
    t.push_back(number("train", "r1_gamma", &Config::train, &TrainConfig::r1_gamma, 0.0, 1e6,
                       "R1 penalty gamma on real images (0 = off)"));
    t.push_back(number("train", "r2_gamma", &Config::train, &TrainConfig::r2_gamma, 0.0, 1e6,
                       "R2 penalty gamma on generated images (0 = off)"));
    t.push_back(text("train", "augment", &Config::train, &TrainConfig::augment, {"off", "diffaug", "ada", "auto"},
                     "augment all D sees: off | diffaug | ada (adaptive) | auto (ADA from best.pt once FD regresses)"));
    t.push_back(text("train", "augment_policy", &Config::train, &TrainConfig::augment_policy, {},
                     "ops, e.g. color,translation,cutout (\"\" = mode default)"));
    t.push_back(number("train", "ada_target", &Config::train, &TrainConfig::ada_target, 0.0, 1.0,
                       "ada: target E[sign(D(real))]"));
    t.push_back(number("train", "ada_kimg", &Config::train, &TrainConfig::ada_kimg, 0.001, 1e9,
                       "ada: kimg for p to move by 1"));
    t.push_back(number("train", "augment_patience", &Config::train, &TrainConfig::augment_patience, 1, 1000,
                       "auto: evaluations in a row with a regressed FD before ADA starts from best.pt"));
    t.push_back(number("train", "schedule_kimg", &Config::train, &TrainConfig::schedule_kimg, 0.0, 1e9,
                       "cosine schedules' length in kimg (0 = the run)"));
    t.push_back(number("train", "lr_final", &Config::train, &TrainConfig::lr_final, 0.0, 1.0,
                       "learning rates end at this fraction (cosine)"));
    t.push_back(number("train", "gamma_final", &Config::train, &TrainConfig::gamma_final, 0.0, 1.0,
                       "R1/R2 gamma end at this fraction (cosine)"));
    t.push_back(number("train", "beta2_final", &Config::train, &TrainConfig::beta2_final, -1.0, 0.999999,
                       "Adam beta2 at the end (cosine; -1 = constant)"));
    t.push_back(number("train", "label_smoothing", &Config::train, &TrainConfig::label_smoothing, 0.0, 0.5,
                       "one-sided: real targets 1 - s"));
    t.push_back(number("train", "instance_noise", &Config::train, &TrainConfig::instance_noise, 0.0, 10.0,
                       "std of noise on D inputs at step 0, annealed to 0"));
    t.push_back(number("train", "instance_noise_steps", &Config::train, &TrainConfig::instance_noise_steps, 0, kBig,
                       "steps to anneal instance noise (0 = whole run)"));
    t.push_back(number("train", "d_steps", &Config::train, &TrainConfig::d_steps, 1, 100, "D updates per G update"));
    t.push_back(number("train", "ema_decay", &Config::train, &TrainConfig::ema_decay, 0.0, 0.999999,
                       "generator EMA decay (0 = off)"));
    t.push_back(flag("train", "ema_rampup", &Config::train, &TrainConfig::ema_rampup,
                     "EMA decay min(decay, (1+t)/(10+t))"));
    t.push_back(number("train", "seed", &Config::train, &TrainConfig::seed, 0, 9.0e15,
                       "seeds weights, noise and shuffling"));
    t.push_back(duration("train", "max_time", &Config::train, &TrainConfig::max_time,
                         "stop cleanly after e.g. 90m, 6h, 1d12h (\"\" = none)"));
    t.push_back(text("train", "on_nan", &Config::train, &TrainConfig::on_nan, {"stop", "rollback"},
                     "non-finite loss/gradient: stop | rollback"));
    t.push_back(number("train", "max_rollbacks", &Config::train, &TrainConfig::max_rollbacks, 0, 1000,
                       "with on_nan: rollback, give up after N"));
    t.push_back(text("train", "upconv", &Config::train, &TrainConfig::upconv,
                     {"auto", "phase", "gemm", "winograd", "transposed"},
                     "G's transposed convs: auto (fastest measured per layer) | phase (sub-pixel conv2d) | gemm "
                     "(GEMM + fold) | winograd (CPU) | transposed"));
    t.push_back(text("train", "downconv", &Config::train, &TrainConfig::downconv, {"auto", "winograd", "direct"},
                     "D's stride-2 convs: auto | winograd (CPU) | direct (conv2d); penalties use direct"));
    t.push_back(text("train", "channels_last", &Config::train, &TrainConfig::channels_last, {"auto", "on", "off"},
                     "channels_last activations: auto (on for CUDA) | on | off"));
    t.push_back(text("train", "amp", &Config::train, &TrainConfig::amp, {"off", "bf16", "fp16", "auto"},
                     "mixed precision: off | bf16 (CUDA, or a CPU with AVX512-BF16/AMX) | fp16 (CUDA, loss "
                     "scaling) | auto (bf16 on a CPU that has it, else off)"));
    t.push_back(flag("train", "cudnn_benchmark", &Config::train, &TrainConfig::cudnn_benchmark,
                     "CUDA: let cuDNN pick the fastest algorithms"));
    t.push_back(text("train", "cuda_graphs", &Config::train, &TrainConfig::cuda_graphs, {"auto", "on", "off"},
                     "CUDA: replay the step as one CUDA graph: auto (where possible) | on | off"));
    t.push_back(text("output", "dir", &Config::output, &OutputConfig::dir, {}, "parent folder of run folders"));
    t.push_back(text("output", "name", &Config::output, &OutputConfig::name, {},
                     "run folder name; \"\" = <config name>-<date>-<time>"));
    t.push_back(number("output", "log_every", &Config::output, &OutputConfig::log_every, 1, kBig,
                       "progress line every N steps"));
    t.push_back(number("output", "metrics_every", &Config::output, &OutputConfig::metrics_every, 1, kBig,
                       "metrics.jsonl row every N steps"));
    t.push_back(number("output", "sample_every", &Config::output, &OutputConfig::sample_every, 1, kBig,
                       "sample grid every N steps (and at the end)"));
    t.push_back(number("output", "checkpoint_every", &Config::output, &OutputConfig::checkpoint_every, 1, kBig,
                       "checkpoint every N steps (and at the end)"));
    t.push_back(number("output", "keep_last", &Config::output, &OutputConfig::keep_last, 0, 1000000,
                       "keep the newest N step checkpoints (0 = all)"));
    t.push_back(number("output", "samples", &Config::output, &OutputConfig::samples, 1, 4096,
                       "images in each sample grid (fixed noise)"));
    t.push_back(number("output", "grid_rows", &Config::output, &OutputConfig::grid_rows, 1, 4096,
                       "images per grid row"));
    t.push_back(number("eval", "every", &Config::eval, &EvalConfig::every, 0, kBig,
                       "evaluate every N steps and at the end (0 = off; the classifier extractor needs classes: "
                       "without them, no evaluation and a warning)"));
    t.push_back(number("eval", "samples", &Config::eval, &EvalConfig::samples, 100, 1000000,
                       "generated (and real) images per evaluation"));
    t.push_back(duration("eval", "max_time", &Config::eval, &EvalConfig::max_time,
                         "cap per evaluation, e.g. 2m (\"\" = none)"));
    t.push_back(text("eval", "extractor", &Config::eval, &EvalConfig::extractor, {},
                     "classifier | path to a TorchScript feature model, or to pytorch-fid's "
                     "pt_inception-2015-12-05-6726825d.pth (the standard FID)"));
    t.push_back(text("eval", "cache", &Config::eval, &EvalConfig::cache, {},
                     "folder for classifier + real statistics (auto = ~/.cache/gan-trainer)"));
    t.push_back(number("health", "window", &Config::health, &HealthConfig::window, 1, 1000000,
                       "steps over which D saturation is judged"));
    t.push_back(number("health", "saturation", &Config::health, &HealthConfig::saturation, 0.5, 1.0,
                       "warn when D(x) > this and D(G(z)) < 1 - this"));
    t.push_back(number("health", "min_diversity", &Config::health, &HealthConfig::min_diversity, 0.0, 1.0,
                       "warn below this fraction of the data's diversity"));
    t.push_back(number("health", "eval_regress", &Config::health, &HealthConfig::eval_regress, 1.0, 1e6,
                       "warn when an eval FD exceeds best x this"));
    t.push_back(number("health", "grace_steps", &Config::health, &HealthConfig::grace_steps, 0, kBig,
                       "no diversity warning before this step"));
    t.push_back(text("dist", "backend", &Config::dist, &DistConfig::backend, {"auto", "gloo", "nccl"},
                     "auto (nccl on CUDA, gloo on CPU) | gloo | nccl"));
    Field timeout = duration("dist", "timeout", &Config::dist, &DistConfig::timeout,
                             "end the run when a peer is silent this long");
    timeout.set = [base = timeout.set](Config& c, const YAML::Node& n, const std::string& loc) {
      base(c, n, loc);
      if (parse_duration(c.dist.timeout) < 1)
        fail(loc + ": dist.timeout = '" + c.dist.timeout + "' must be at least 1s, e.g. 5m");
    };
    t.push_back(timeout);
    t.push_back(number("dist", "bucket_mb", &Config::dist, &DistConfig::bucket_mb, 0.001, 4096.0,
                       "gradient all-reduce bucket size in MB"));
    t.push_back(flag("dist", "overlap", &Config::dist, &DistConfig::overlap,
                     "all-reduce buckets during the backward pass"));
    return t;
  }();
  return table;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// " (did you mean 'x'?)" when some candidate is close enough, else "".
std::string suggestion(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  if (best.empty() || best_d > std::max<size_t>(2, word.size() / 3)) return "";
  return " (did you mean '" + best + "'?)";
}

std::vector<std::string> sections() { return {"data", "model", "train", "output", "eval", "health", "dist"}; }

// The PyTorch DCGAN example's names for our keys (its command-line flags), accepted in the section they belong to.
const std::map<std::string, std::pair<std::string, std::string>>& example_names() {
  static const std::map<std::string, std::pair<std::string, std::string>> m{
      {"nc", {"model", "channels"}},         {"imageSize", {"model", "image_size"}},
      {"batchSize", {"train", "batch_size"}}, {"niter", {"train", "epochs"}},
      {"manualSeed", {"train", "seed"}}};
  return m;
}

const Field& find_field(const std::string& section, const std::string& key, const std::string& loc) {
  std::vector<std::string> keys;
  const Field* elsewhere = nullptr;  // the same key in another section
  for (const auto& f : fields()) {
    if (f.key == key && f.section != section) elsewhere = &f;
    if (f.section != section) continue;
    if (f.key == key) return f;
    keys.push_back(f.key);
  }
  auto alias = example_names().find(key);
  if (alias != example_names().end()) {
    const auto& [alias_section, alias_key] = alias->second;
    if (alias_section == section) return find_field(alias_section, alias_key, loc);
    fail(loc + ": unknown key '" + section + "." + key + "' (did you mean '" + alias_section + "." + alias_key +
         "'?); valid keys are listed by gan-train --help-config");
  }
  if (elsewhere)
    fail(loc + ": unknown key '" + section + "." + key + "' (did you mean '" + elsewhere->section + "." + key +
         "'?); valid keys are listed by gan-train --help-config");
  fail(loc + ": unknown key '" + section + "." + key + "'" + suggestion(key, keys) +
       "; valid keys are listed by gan-train --help-config");
}

void check_section(const std::string& section, const std::string& loc) {
  auto s = sections();
  if (std::find(s.begin(), s.end(), section) == s.end())
    fail(loc + ": unknown section '" + section + "'" + suggestion(section, s) +
         "; sections are data, model, train, output, eval, health, dist");
}

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& origin, bool validate) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    fail(origin + ":" + std::to_string(e.mark.line + 1) + ": malformed YAML: " + e.msg);
  }
  Config cfg;
  cfg.origin = origin;
  if (root.IsNull()) return cfg;  // an empty file means all defaults
  if (!root.IsMap())
    fail(origin + ": the config must be a mapping of sections (data, model, train, output, eval, health, dist)");
  auto key_name = [&](const YAML::Node& k) {
    if (!k.IsScalar()) fail(where(origin, k) + ": keys must be plain names" + (k.IsNull() ? "" : ", not lists or mappings"));
    return k.Scalar();
  };
  for (const auto& sec : root) {
    std::string section = key_name(sec.first);
    check_section(section, where(origin, sec.first));
    if (sec.second.IsNull()) continue;
    if (!sec.second.IsMap()) fail(where(origin, sec.second) + ": section '" + section + "' must be a mapping of keys");
    for (const auto& kv : sec.second) {
      std::string key = key_name(kv.first);
      const std::string at = where(origin, kv.first);  // named: g++ 14 warns of a reference from a call given a temporary
      const Field& f = find_field(section, key, at);
      f.set(cfg, kv.second, where(origin, kv.second));
    }
  }
  if (validate) validate_config(cfg);
  return cfg;
}

Config load_config(const std::string& path, bool validate) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read config " + path + ": no such file or not readable (see configs/ for examples)");
  std::stringstream ss;
  ss << in.rdbuf();
  Config cfg = parse_config(ss.str(), path, validate);
  std::string stem = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  cfg.name = stem.substr(0, stem.find_last_of('.') == 0 ? stem.size() : stem.find_last_of('.'));
  if (cfg.name.empty()) cfg.name = "run";
  return cfg;
}

void apply_override(Config& cfg, const std::string& assignment) {
  auto eq = assignment.find('=');
  auto dot = assignment.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq)
    fail("--set " + assignment + ": expected section.key=value, e.g. --set train.lr=1e-4");
  std::string section = assignment.substr(0, dot), key = assignment.substr(dot + 1, eq - dot - 1);
  std::string value = assignment.substr(eq + 1);
  std::string loc = "--set " + section + "." + key;
  check_section(section, loc);
  const Field& f = find_field(section, key, loc);
  YAML::Node node(value);
  if (!f.is_text) {
    try {
      node = YAML::Load(value);
    } catch (const YAML::Exception& e) {
      fail(loc + ": cannot parse value '" + value + "': " + e.msg);
    }
  }
  f.set(cfg, node, loc);
}

void validate_config(const Config& cfg) {
  const auto& m = cfg.model;
  if (!is_power_of_two(m.image_size))
    fail(cfg.origin + ": model.image_size = " + std::to_string(m.image_size) +
         " is not a power of two; use 16, 32, 64, 128 or 256");
  if (m.channels != 1 && m.channels != 3)
    fail(cfg.origin + ": model.channels = " + std::to_string(m.channels) + " must be 1 (grayscale) or 3 (RGB)");
  if (cfg.train.steps == 0 && cfg.train.epochs == 0 && cfg.train.kimg == 0)
    fail(cfg.origin + ": train.epochs, train.steps and train.kimg are all 0; set one of them (e.g. --epochs 5 or "
                      "--steps 1000)");
  if (cfg.train.steps > 0 && cfg.train.kimg > 0)
    fail(cfg.origin + ": train.steps and train.kimg both set the length; keep one of them (the other 0)");
  const std::string& d = cfg.train.device;
  bool cuda_n = d.rfind("cuda:", 0) == 0 && d.size() > 5 &&
                d.find_first_not_of("0123456789", 5) == std::string::npos;
  if (d != "auto" && d != "cpu" && d != "cuda" && !cuda_n)
    fail(cfg.origin + ": train.device = '" + d + "' is not auto, cpu, cuda or cuda:N");
  const std::string& bg = cfg.data.background;
  std::string hex = bg.size() == 7 && bg[0] == '#' ? bg.substr(1) : "";
  if (hex.size() != 6 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
    fail(cfg.origin + ": data.background = '" + bg + "' must be a colour like #ffffff");
  if (cfg.data.source == "folder" && cfg.data.path.empty())
    fail(cfg.origin + ": data.source is folder but data.path is empty; set data.path to your image folder");
  const auto& t = cfg.train;
  if (t.loss == "wgan-gp" && m.d_norm == "batch")
    fail(cfg.origin + ": train.loss wgan-gp needs model.d_norm none, layer or instance (batch norm mixes the samples "
                      "that the gradient penalty treats one by one)");
  if (t.label_smoothing > 0 && (t.loss == "hinge" || t.loss == "wgan-gp" || t.loss == "rpgan"))
    fail(cfg.origin + ": train.label_smoothing applies to bce, minimax and lsgan, not " + t.loss);
  if (t.augment == "off" && !t.augment_policy.empty())
    fail(cfg.origin + ": train.augment_policy is set but train.augment is off; set train.augment diffaug, ada or auto");
  if (t.loss == "rpgan" && t.d_steps > 1)
    fail(cfg.origin + ": train.loss rpgan pairs each D update with a G update; use train.d_steps 1");
  if (m.conditional && m.num_classes == 1)
    fail(cfg.origin + ": model.num_classes = 1 for a conditional model; use 0 (from the data) or at least 2");
  if (m.minibatch_std && cfg.train.batch_size < 2)
    fail(cfg.origin + ": model.minibatch_std needs train.batch_size >= 2");
  if (cfg.output.name.find('/') != std::string::npos)
    fail(cfg.origin + ": output.name = '" + cfg.output.name + "' must be a folder name without '/'; use output.dir");
}

std::string to_yaml(const Config& cfg) {
  std::ostringstream os;
  std::string current;
  for (const auto& f : fields()) {
    if (f.section != current) {
      os << (current.empty() ? "" : "\n") << f.section << ":\n";
      current = f.section;
    }
    std::string line = "  " + f.key + ": " + f.get(cfg);
    os << line << std::string(line.size() < 34 ? 34 - line.size() : 1, ' ') << "# " << f.doc << "\n";
  }
  return os.str();
}

double parse_duration(const std::string& text) {
  if (text.empty()) return 0;
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    while (j < text.size() && (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.')) ++j;
    if (j == i || j == text.size()) return -1;  // a number must be followed by a unit
    double v;
    try {
      v = std::stod(text.substr(i, j - i));
    } catch (const std::exception&) {
      return -1;
    }
    switch (text[j]) {
      case 's': total += v; break;
      case 'm': total += 60 * v; break;
      case 'h': total += 3600 * v; break;
      case 'd': total += 86400 * v; break;
      default: return -1;
    }
    i = j + 1;
  }
  return total;
}

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  for (const auto& f : fields()) keys.push_back(f.section + "." + f.key);
  return keys;
}

}  // namespace gan

#include "gan/sampler.h"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "gan/checkpoint.h"
#include "gan/errors.h"
#include "gan/files.h"
#include "gan/gif.h"
#include "gan/image.h"
#include "gan/models.h"
#include "gan/platform.h"
#include "gan/weights.h"

namespace gan {

namespace {

constexpr std::int64_t kMaxImages = 100000;  // per request, like --n

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// A non-negative decimal integer of at most 18 digits (so it fits int64); false otherwise.
bool parse_uint(const std::string& s, std::int64_t& out) {
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
    return false;
  out = std::stoll(s);
  return true;
}

void check_truncation(const std::string& latent, double psi) {
  if (latent == "uniform") {
    if (!(psi > 0 && psi <= 1))
      throw UserError(kExitUsage, "--truncation " + format_number(psi) +
                                      " is out of range for uniform latents (they are scaled by psi): give 0 < psi <= 1");
  } else if (!(psi >= 0.01 && psi <= 100)) {
    throw UserError(kExitUsage, "--truncation " + format_number(psi) +
                                    " is out of range for normal latents (components beyond +-psi are redrawn): give "
                                    "0.01 to 100, e.g. 0.7");
  }
}

// Runs the generator in chunks of 256 on `device`; returns images on the CPU.
at::Tensor generate(Generator& g, const at::Tensor& z, const at::Tensor& labels, const c10::Device& device) {
  std::vector<at::Tensor> chunks;
  for (std::int64_t i = 0; i < z.size(0); i += 256) {
    const std::int64_t k = std::min<std::int64_t>(256, z.size(0) - i);
    chunks.push_back(
        g->forward(z.narrow(0, i, k).to(device), labels.defined() ? labels.narrow(0, i, k).to(device) : labels).cpu());
  }  // [<=256, C, S, S] each
  return torch::cat(chunks);  // [N, C, S, S]
}

Image single(const at::Tensor& images, std::int64_t i) { return make_grid(images.narrow(0, i, 1), 1, /*padding=*/0); }

// Labels [n] for a conditional model drawing with one class: `cls`, or class 0 when none was asked for.
at::Tensor one_class_labels(const ModelConfig& m, int cls, std::int64_t n) {
  if (!m.conditional) return at::Tensor();
  if (cls < 0) spdlog::info("conditional model: using class 0 (choose one with --class)");
  return torch::full({n}, std::max(cls, 0), torch::kLong);  // [n]
}

void check_options(const SampleOptions& o) {
  const bool interp = !o.interpolate.empty(), arith = !o.arithmetic.empty();
  if (interp && arith) throw UserError(kExitUsage, "--interpolate and --arithmetic cannot be combined: run gan-sample twice");
  if ((interp || arith) && !o.seeds.empty())
    throw UserError(kExitUsage, std::string("--seeds cannot be combined with ") + (interp ? "--interpolate" : "--arithmetic") +
                                    ": give the seeds there");
  if (!interp && (!o.frames.empty() || !o.gif.empty()))
    throw UserError(kExitUsage, std::string(o.gif.empty() ? "--frames" : "--gif") +
                                    " needs --interpolate A,B[,C...] (the seeds to walk through)");
  if ((interp || arith) && !o.individual.empty())
    throw UserError(kExitUsage, std::string("--individual applies to grids; with ") +
                                    (interp ? "--interpolate use --frames DIR" : "--arithmetic use --out FILE"));
  if (interp && o.out.empty() && o.frames.empty() && o.gif.empty())
    throw UserError(kExitUsage, "nothing to write: give --out strip.png, --frames DIR and/or --gif anim.gif");
  if (arith && o.out.empty()) throw UserError(kExitUsage, "nothing to write: give --out row.png for --arithmetic");
  if (!interp && !arith && o.out.empty() && o.individual.empty() && o.save_images.empty() && o.save_latents.empty())
    throw UserError(kExitUsage, "nothing to write: give --out grid.png, --individual DIR, --save-images X.npy and/or "
                                "--save-latents Z.npy");
  if (!o.latents.empty() && (interp || arith || !o.seeds.empty() || o.n_per_class > 0))
    throw UserError(kExitUsage, "--latents gives the latents itself: it cannot be combined with --seeds, --n-per-class, "
                                "--interpolate or --arithmetic");
  if (o.n_per_class > 0 && !o.seeds.empty())
    throw UserError(kExitUsage, "--n-per-class draws its latents from --seed: give --n-per-class or --seeds, not both");
  if (o.n < 1 || o.n > kMaxImages) throw UserError(kExitUsage, "--n " + std::to_string(o.n) + ": give 1 to 100000");
  if (o.threads < 0) throw UserError(kExitUsage, "--threads " + std::to_string(o.threads) + ": give 0 (all cores) or more");
  if (o.nrow < 1) throw UserError(kExitUsage, "--nrow " + std::to_string(o.nrow) + ": give 1 or more");
  if (o.steps < 2 || o.steps > 10000) throw UserError(kExitUsage, "--steps " + std::to_string(o.steps) + ": give 2 to 10000");
  if (!o.mode.empty() && o.mode != "slerp" && o.mode != "lerp")
    throw UserError(kExitUsage, "--mode '" + o.mode + "': give slerp or lerp");
  if (!(o.truncation >= 0))
    throw UserError(kExitUsage, "--truncation " + format_number(o.truncation) + ": give a positive PSI such as 0.7 (0 = off)");
  if (!(o.fps >= 0.1 && o.fps <= 50)) throw UserError(kExitUsage, "--fps " + format_number(o.fps) + ": give 0.1 to 50");
  // Parse now, so that a typo is reported before the checkpoint is loaded.
  if (!o.seeds.empty()) parse_seeds(o.seeds);
  if (interp && parse_seeds(o.interpolate, "--interpolate").size() < 2)
    throw UserError(kExitUsage, "--interpolate '" + o.interpolate + "': give at least two seeds, e.g. 3,8");
  if (arith) parse_arithmetic(o.arithmetic);
}

// <stem>_labels.npy beside <stem>.npy: where the classes of a latents file are kept.
std::string labels_path(const std::string& latents) {
  const auto dot = latents.rfind('.');
  return (dot == std::string::npos ? latents : latents.substr(0, dot)) + "_labels.npy";
}

// --latents: [N, nz] float from a .npy or a PyTorch file (a tensor, or a dict holding one); classes from
// <stem>_labels.npy when it exists.
at::Tensor read_latents(const std::string& path, const ModelConfig& m, at::Tensor* labels) {
  at::Tensor z;
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".npy") == 0) {
    z = load_npy(path);
    std::error_code ec;
    if (m.conditional && std::filesystem::exists(labels_path(path), ec)) *labels = load_npy(labels_path(path)).to(torch::kLong);
  } else {
    try {
      z = load_tensor_file(path);
    } catch (const UserError& e) {
      throw UserError(kExitUsage, std::string("--latents ") + e.what());
    }
  }
  if (z.dim() == 4 && z.size(2) == 1 && z.size(3) == 1) z = z.flatten(1);  // [N, nz, 1, 1] as the DCGAN example draws
  if (z.dim() != 2 || z.size(1) != m.nz || z.size(0) < 1 || z.size(0) > kMaxImages)
    throw UserError(kExitUsage, "--latents " + path + ": shape " + c10::str(z.sizes()) + " is not [N, " +
                                    std::to_string(m.nz) + "] (model.nz = " + std::to_string(m.nz) + ", N up to 100000)");
  if (labels->defined() && (labels->dim() != 1 || labels->size(0) != z.size(0)))
    throw UserError(kExitUsage, labels_path(path) + ": " + std::to_string(labels->numel()) + " labels for " +
                                    std::to_string(z.size(0)) + " latents");
  if (labels->defined() && (labels->min().item<std::int64_t>() < 0 || labels->max().item<std::int64_t>() >= m.num_classes))
    throw UserError(kExitUsage, labels_path(path) + ": labels must be 0 to " + std::to_string(m.num_classes - 1));
  return z.to(torch::kFloat);
}

// The grid (--out) and/or individual files for --n images from --seed, for --seeds, or for --latents.
int write_samples(const SampleOptions& o, SamplingModel& model, int cls, const c10::Device& device) {
  const ModelConfig& m = model.cfg.model;
  const int classes = std::max(m.num_classes, 1);
  std::vector<std::int64_t> seeds;
  at::Tensor z, given_labels;
  bool per_class_rows = false;  // draw each latent in every class: one row per class
  if (!o.latents.empty()) {
    z = read_latents(o.latents, m, &given_labels);  // [N, nz]
  } else if (!o.seeds.empty()) {
    seeds = parse_seeds(o.seeds);
    z = seed_latents(m, seeds, o.truncation);  // [S, nz]
    per_class_rows = true;
  } else {
    // --n images in all, spread over the classes: one row per class when they divide evenly.
    std::int64_t count = o.n;
    if (o.n_per_class > 0) count = o.n_per_class, per_class_rows = true;
    else if (m.conditional && cls < 0 && o.n % classes == 0) count = o.n / classes, per_class_rows = true;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(o.seed));
    z = sample_latent(m, count, gen);  // [count, nz] on CPU: the same images on any device
    if (o.truncation > 0) z = truncate_latent(z, m.latent, o.truncation, gen);
  }
  const std::int64_t count = z.size(0);
  int cols = o.nrow;
  at::Tensor labels;
  std::vector<int> image_class(static_cast<size_t>(count), -1);
  std::vector<std::int64_t> image_latent(static_cast<size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) image_latent[static_cast<size_t>(i)] = i;
  if (m.conditional && cls >= 0) {
    labels = torch::full({count}, cls, torch::kLong);  // [S]
    std::fill(image_class.begin(), image_class.end(), cls);
  } else if (m.conditional && (given_labels.defined() || !per_class_rows)) {
    // The classes given with the latents, or class i % K for image i: every class equally often.
    labels = given_labels.defined() ? given_labels : torch::arange(count, torch::kLong).remainder(classes);  // [N]
    for (std::int64_t i = 0; i < count; ++i) image_class[static_cast<size_t>(i)] = static_cast<int>(labels[i].item<std::int64_t>());
  } else if (m.conditional) {  // one row per class, one column per latent (the same latents in every row)
    z = z.repeat({classes, 1});                                                 // [classes * S, nz], class-major
    labels = torch::arange(classes, torch::kLong).repeat_interleave(count);     // [classes * S]
    cols = static_cast<int>(count);
    image_class.clear();
    image_latent.clear();
    for (int c = 0; c < classes; ++c)
      for (std::int64_t i = 0; i < count; ++i) {
        image_class.push_back(c);
        image_latent.push_back(i);
      }
  }
  at::Tensor images = generate(model.g, z, labels, device);  // [N, C, S, S]
  const std::int64_t total = images.size(0);
  int written = 0;
  if (!o.save_latents.empty()) {  // exactly what produced the images: image i from z[i] (and labels[i])
    save_npy(o.save_latents, z);
    ++written;
    if (labels.defined()) save_npy(labels_path(o.save_latents), labels), ++written;
    spdlog::info("wrote {} ({} latents{})", o.save_latents, total, labels.defined() ? " and their classes" : "");
  }
  if (!o.save_images.empty()) {
    save_npy(o.save_images, images.to(torch::kFloat));
    spdlog::info("wrote {} ({} images, float32 in [-1, 1])", o.save_images, total);
    ++written;
  }
  if (!o.out.empty()) {
    write_png(o.out, make_grid(images, cols));
    spdlog::info("wrote {} ({} images of {}x{}{})", o.out, total, m.image_size, m.image_size,
                 m.conditional && cls < 0 ? ", one row per class" : "");
    ++written;
  }
  if (!o.individual.empty()) {
    make_dirs(o.individual);
    for (std::int64_t i = 0; i < total; ++i) {
      char name[96];
      const int c = image_class[static_cast<size_t>(i)];
      const std::int64_t j = image_latent[static_cast<size_t>(i)];
      char prefix[24] = "";
      if (c >= 0) std::snprintf(prefix, sizeof prefix, "class%03d_", c);
      if (seeds.empty())
        std::snprintf(name, sizeof name, "/%s%06lld.png", prefix, static_cast<long long>(j));
      else
        std::snprintf(name, sizeof name, "/%sseed%06lld.png", prefix,
                      static_cast<long long>(seeds[static_cast<size_t>(j)]));
      write_png(o.individual + name, single(images, i));
      ++written;
    }
    spdlog::info("wrote {} images to {}", total, o.individual);
  }
  return written;
}

// --interpolate: the strip (one row per pair of neighbouring seeds), PNG frames and/or a GIF of the whole walk.
int write_interpolation(const SampleOptions& o, SamplingModel& model, int cls, const c10::Device& device) {
  const ModelConfig& m = model.cfg.model;
  const std::vector<std::int64_t> keys = parse_seeds(o.interpolate, "--interpolate");
  const std::string mode = !o.mode.empty() ? o.mode : (m.latent == "uniform" ? "lerp" : "slerp");
  at::Tensor path = interpolation_path(seed_latents(m, keys, o.truncation), o.steps, mode);  // [K-1, steps, nz]
  at::Tensor z = path.reshape({-1, m.nz});                                                   // [(K-1)*steps, nz]
  at::Tensor images = generate(model.g, z, one_class_labels(m, cls, z.size(0)), device);    // [(K-1)*steps, C, S, S]
  int written = 0;
  if (!o.out.empty()) {
    write_png(o.out, make_grid(images, o.steps));
    spdlog::info("wrote {} ({} rows of {} images, {})", o.out, keys.size() - 1, o.steps, mode);
    ++written;
  }
  // The walk without repeating each inner key: (K-1)*(steps-1)+1 frames.
  std::vector<Image> frames;
  for (std::int64_t i = 0; i < images.size(0); ++i)
    if (i < o.steps || i % o.steps != 0) frames.push_back(single(images, i));
  if (!o.frames.empty()) {
    make_dirs(o.frames);
    for (size_t i = 0; i < frames.size(); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "/frame_%06zu.png", i);
      write_png(o.frames + name, frames[i]);
      ++written;
    }
    spdlog::info("wrote {} frames to {}", frames.size(), o.frames);
  }
  if (!o.gif.empty()) {
    write_gif(o.gif, frames, o.fps);
    spdlog::info("wrote {} ({} frames at {} fps)", o.gif, frames.size(), o.fps);
    ++written;
  }
  return written;
}

// --arithmetic: one row with each term's (mean) image and the result.
int write_arithmetic(const SampleOptions& o, SamplingModel& model, int cls, const c10::Device& device) {
  const ModelConfig& m = model.cfg.model;
  const std::vector<LatentTerm> terms = parse_arithmetic(o.arithmetic);
  ArithmeticLatents a = arithmetic_latents(m, terms, o.truncation);
  at::Tensor z = torch::cat({a.terms, a.result.unsqueeze(0)});                              // [T+1, nz]
  at::Tensor images = generate(model.g, z, one_class_labels(m, cls, z.size(0)), device);  // [T+1, C, S, S]
  write_png(o.out, make_grid(images, static_cast<int>(z.size(0))));
  spdlog::info("wrote {} ({} term images, then the result of {})", o.out, terms.size(), o.arithmetic);
  return 1;
}

}  // namespace

std::vector<std::int64_t> parse_seeds(const std::string& spec, const std::string& option) {
  auto fail = [&](const std::string& why) {
    throw UserError(kExitUsage, option + " '" + spec + "': " + why);
  };
  const std::string hint = "; give seeds (non-negative integers) and ranges, e.g. 0-63 or 1,5,9-12";
  if (trim(spec).empty()) fail("no seeds" + hint);
  std::vector<std::int64_t> seeds;
  size_t begin = 0;
  while (begin <= spec.size()) {
    size_t comma = spec.find(',', begin);
    if (comma == std::string::npos) comma = spec.size();
    const std::string item = trim(spec.substr(begin, comma - begin));
    begin = comma + 1;
    if (item.empty()) fail("empty item" + hint);
    std::int64_t lo, hi;
    const size_t dash = item.find('-');
    if (dash == std::string::npos) {
      if (!parse_uint(item, lo)) fail("'" + item + "' is not a seed" + hint);
      hi = lo;
    } else {
      if (!parse_uint(trim(item.substr(0, dash)), lo) || !parse_uint(trim(item.substr(dash + 1)), hi))
        fail("'" + item + "' is not a seed range" + hint);
      if (lo > hi)
        fail("range " + item + " runs backwards; write it as " + std::to_string(hi) + "-" + std::to_string(lo));
    }
    if (hi - lo + 1 > kMaxImages - static_cast<std::int64_t>(seeds.size()))
      fail("more than " + std::to_string(kMaxImages) + " seeds; ask for fewer");
    for (std::int64_t s = lo; s <= hi; ++s) seeds.push_back(s);
  }
  return seeds;
}

at::Tensor truncate_latent(const at::Tensor& z, const std::string& latent, double psi, at::Generator& gen) {
  check_truncation(latent, psi);
  if (latent == "uniform") return z * psi;  // [n, nz]
  at::Tensor out = z.clone();                // [n, nz]
  while (true) {
    at::Tensor outside = out.abs() > psi;  // [n, nz] bool
    const std::int64_t k = outside.sum().item<std::int64_t>();
    if (k == 0) break;
    out.masked_scatter_(outside, torch::randn({k}, gen, out.options()));  // redraw only those components
  }
  return out;
}

at::Tensor seed_latent(const ModelConfig& model, std::int64_t seed, double psi) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(seed));
  at::Tensor z = sample_latent(model, 1, gen);  // [1, nz]
  if (psi > 0) z = truncate_latent(z, model.latent, psi, gen);
  return z[0];  // [nz]
}

at::Tensor seed_latents(const ModelConfig& model, const std::vector<std::int64_t>& seeds, double psi) {
  std::vector<at::Tensor> rows;
  rows.reserve(seeds.size());
  for (std::int64_t s : seeds) rows.push_back(seed_latent(model, s, psi));
  return torch::stack(rows);  // [S, nz]
}

at::Tensor lerp(const at::Tensor& a, const at::Tensor& b, double t) { return a * (1 - t) + b * t; }  // [nz]

at::Tensor slerp(const at::Tensor& a, const at::Tensor& b, double t) {
  at::Tensor ad = a.to(torch::kDouble), bd = b.to(torch::kDouble);
  const double na = ad.norm().item<double>(), nb = bd.norm().item<double>();
  if (na == 0 || nb == 0) return lerp(a, b, t);
  at::Tensor ua = ad / na, ub = bd / nb;  // [nz] unit directions
  const double omega = std::acos(std::clamp(ua.dot(ub).item<double>(), -1.0, 1.0));
  const double so = std::sin(omega);
  if (so < 1e-6) return lerp(a, b, t);  // (anti)parallel: no unique great circle
  at::Tensor dir = ua * (std::sin((1 - t) * omega) / so) + ub * (std::sin(t * omega) / so);  // [nz], unit length
  return (dir * ((1 - t) * na + t * nb)).to(a.scalar_type());                               // [nz]
}

at::Tensor interpolation_path(const at::Tensor& keys, int steps, const std::string& mode) {
  if (keys.dim() != 2 || keys.size(0) < 2) throw UserError(kExitUsage, "interpolation needs at least two latents");
  if (steps < 2) throw UserError(kExitUsage, "--steps " + std::to_string(steps) + ": give 2 or more");
  if (mode != "slerp" && mode != "lerp") throw UserError(kExitUsage, "--mode '" + mode + "': give slerp or lerp");
  std::vector<at::Tensor> rows;
  for (std::int64_t k = 0; k + 1 < keys.size(0); ++k)
    for (int i = 0; i < steps; ++i) {
      const double t = static_cast<double>(i) / (steps - 1);
      rows.push_back(mode == "slerp" ? slerp(keys[k], keys[k + 1], t) : lerp(keys[k], keys[k + 1], t));
    }
  return torch::stack(rows).view({keys.size(0) - 1, steps, keys.size(1)});  // [K-1, steps, nz]
}

std::vector<LatentTerm> parse_arithmetic(const std::string& expr) {
  auto fail = [&](const std::string& why) {
    throw UserError(kExitUsage, "--arithmetic '" + expr + "': " + why +
                                    "; write seeds and averaged groups joined by + and -, e.g. 1-2+3 or [1,2,3]-[4,5,6]+[7,8,9]");
  };
  const std::string& s = expr;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  };
  std::vector<LatentTerm> terms;
  skip_space();
  if (i == s.size()) fail("empty");
  while (i < s.size()) {
    LatentTerm t;
    if (s[i] == '+' || s[i] == '-') {
      t.sign = s[i] == '-' ? -1 : 1;
      ++i;
      skip_space();
    } else if (!terms.empty()) {
      fail("expected + or - at '" + s.substr(i) + "'");
    }
    if (i >= s.size()) fail("a sign without a term at the end");
    if (s[i] == '[') {
      const size_t close = s.find(']', i);
      if (close == std::string::npos) fail("'[' without ']'");
      const std::string group = s.substr(i + 1, close - i - 1);
      if (trim(group).empty()) fail("empty group []");
      t.seeds = parse_seeds(group, "--arithmetic group [" + group + "] in");
      i = close + 1;
    } else {
      size_t j = i;
      while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      std::int64_t seed;
      if (!parse_uint(s.substr(i, j - i), seed)) fail("expected a seed or [group] at '" + s.substr(i) + "'");
      t.seeds = {seed};
      i = j;
    }
    terms.push_back(std::move(t));
    skip_space();
  }
  return terms;
}

ArithmeticLatents arithmetic_latents(const ModelConfig& model, const std::vector<LatentTerm>& terms, double psi) {
  if (terms.empty()) throw UserError(kExitUsage, "--arithmetic: no terms");
  std::vector<at::Tensor> means;
  for (const LatentTerm& t : terms) means.push_back(seed_latents(model, t.seeds, psi).mean(0));  // [nz]
  ArithmeticLatents out;
  out.terms = torch::stack(means);  // [T, nz]
  out.result = torch::zeros_like(means[0]);
  for (size_t k = 0; k < terms.size(); ++k) out.result += means[k] * terms[k].sign;  // [nz]
  return out;
}

int resolve_class(const std::string& spec, const ModelConfig& model, const std::vector<std::string>& class_names,
                  const std::string& checkpoint) {
  if (!model.conditional)
    throw UserError(kExitUsage, "--class " + spec + ": " + checkpoint +
                                    " holds an unconditional generator (model.conditional: false); leave out --class");
  const int classes = model.num_classes;
  std::string valid = classes > 0 ? "0-" + std::to_string(classes - 1) : "none";
  if (!class_names.empty()) {
    valid += " or ";
    for (size_t i = 0; i < class_names.size() && i < 50; ++i) valid += (i ? ", " : "") + class_names[i];
    if (class_names.size() > 50) valid += ", ... (" + std::to_string(class_names.size() - 50) + " more)";
  }
  std::int64_t index;
  if (parse_uint(trim(spec), index)) {
    if (index < classes) return static_cast<int>(index);
    throw UserError(kExitUsage, "--class " + spec + ": the model has " + std::to_string(classes) + " classes; valid: " + valid);
  }
  for (size_t i = 0; i < class_names.size() && static_cast<int>(i) < classes; ++i)
    if (class_names[i] == spec) return static_cast<int>(i);
  auto lower = [](std::string x) {
    for (char& c : x) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return x;
  };
  for (size_t i = 0; i < class_names.size() && static_cast<int>(i) < classes; ++i)
    if (lower(class_names[i]) == lower(spec)) return static_cast<int>(i);
  throw UserError(kExitUsage, "--class '" + spec + "' is not a class of " + checkpoint + "; valid: " + valid);
}

namespace {

// Exported or PyTorch weights of a generator (G.pt, G.safetensors) rather than a gan-train checkpoint.
bool is_weights_file(const SampleOptions& o) {
  const std::string& p = o.checkpoint;
  return !o.config.empty() || (p.size() > 12 && p.compare(p.size() - 12, 12, ".safetensors") == 0);
}

// The generator from a weights file: the model section of --config, or of the file's own "config" metadata.
SamplingModel load_generator_weights(const SampleOptions& o, const c10::Device& device) {
  std::map<std::string, std::string> metadata;
  StateDict weights = load_weights_file(o.checkpoint, &metadata);
  SamplingModel m;
  if (!o.config.empty()) m.cfg = load_config(o.config);
  else if (metadata.count("config")) m.cfg = parse_config(metadata["config"], o.checkpoint + " (its config metadata)");
  else
    throw UserError(kExitUsage, o.checkpoint + " holds weights without a config: give --config with the model section "
                                               "it was trained with");
  m.g = Generator(m.cfg.model);
  load_state_dict(*m.g, weights, o.checkpoint);
  m.g->to(device);
  m.g->eval();
  return m;
}

}  // namespace

int sample(const SampleOptions& opts) {
  check_options(opts);
  const c10::Device device = resolve_device(opts.device);
  configure_threads(opts.threads);
  SamplingModel model = is_weights_file(opts) ? load_generator_weights(opts, device) : load_generator(opts.checkpoint, device);
  const ModelConfig& m = model.cfg.model;
  if (opts.truncation > 0) check_truncation(m.latent, opts.truncation);
  const int cls = opts.class_spec.empty() ? -1 : resolve_class(opts.class_spec, m, model.class_names, opts.checkpoint);
  if (model.ema) spdlog::info("using the EMA generator");

  torch::NoGradGuard no_grad;
  if (!opts.interpolate.empty()) return write_interpolation(opts, model, cls, device);
  if (!opts.arithmetic.empty()) return write_arithmetic(opts, model, cls, device);
  return write_samples(opts, model, cls, device);
}

}  // namespace gan

// Images from a checkpoint alone: the generator is rebuilt from the config stored in it.
// Also the latent tools of gan-sample: per-seed latents, truncation, class choice, interpolation (strip, PNG
// frames, GIF) and latent arithmetic.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gan/config.h"

namespace gan {

struct SampleOptions {
  std::string checkpoint;     // .pt written by gan-train, or exported/PyTorch weights of G with `config`
  std::string config;         // with a weights file (G.pt, G.safetensors): the config whose model section built it
                              // ("" = a safetensors file's own "config" metadata)
  int n = 64;                 // number of images (ignored with `seeds`); a conditional model spreads them evenly over
                              // the classes (one row per class when n is a multiple of their number)
  int n_per_class = 0;        // conditional models: this many latents, each drawn in every class (one row per class)
  std::string latents;        // .npy or .pt file of latent vectors [N, nz] to use instead of drawing them
                              // (and <stem>_labels.npy beside a .npy: the classes of a conditional model)
  std::string save_latents;   // .npy to write the latents used into (and <stem>_labels.npy for a conditional model)
  std::string save_images;    // .npy to write the generated images into, float32 [N, C, S, S] in [-1, 1]
  std::string out = "";       // grid / strip / arithmetic row PNG ("" = none)
  std::string individual;     // folder for one PNG per image ("" = none)
  std::int64_t seed = 0;      // noise seed for the --n images
  int nrow = 8;               // images per grid row (a conditional grid without `class_spec` has one row per class)
  std::string device = "auto";
  int threads = 0;            // torch intra-op threads (0 = all cores)
  std::string seeds;          // "0-63" or "1,5,9-12": one image per seed, latent drawn from that seed alone
  double truncation = 0;      // 0 = off; normal latents: resample |z| > psi; uniform latents: scale by psi
  std::string class_spec;     // conditional models: class index or name ("" = every class / class 0)
  std::string interpolate;    // "A,B[,C...]": seeds to walk through
  int steps = 8;              // images per interpolated pair, both ends included
  std::string mode;           // slerp | lerp ("" = slerp for normal latents, lerp for uniform)
  std::string frames;         // folder for the interpolation's numbered PNG frames
  std::string gif;            // animated GIF of the interpolation
  double fps = 10;            // GIF frame rate
  std::string arithmetic;     // "A-B+C", a term being a seed or an averaged group "[1,2,3]"
};

// Writes what `opts` asks for; returns how many files were written.
// Throws UserError (bad option: kExitUsage; bad checkpoint: kExitCheckpoint; unwritable output: kExitIo).
int sample(const SampleOptions& opts);

// "0-63", "1,5,9-12" -> the seeds in order (duplicates kept). Throws UserError(kExitUsage) naming `option`.
std::vector<std::int64_t> parse_seeds(const std::string& spec, const std::string& option = "--seeds");

// The latent [nz] of one seed: sample_latent(model, 1) from a CPU generator seeded with `seed`, then truncated
// with `psi` (0 = off) drawing any resamples from the same generator, so a seed always gives the same vector.
at::Tensor seed_latent(const ModelConfig& model, std::int64_t seed, double psi = 0);
// [S, nz] for several seeds.
at::Tensor seed_latents(const ModelConfig& model, const std::vector<std::int64_t>& seeds, double psi = 0);

// Truncation trick. `latent` "normal": every component with |z| > psi is redrawn from N(0, 1) (with `gen`) until
// none is left: the BigGAN definition (Brock et al. 2019), a normal truncated to [-psi, psi], not StyleGAN's
// pull towards the mean. "uniform": z * psi. Throws UserError(kExitUsage) for psi out of range (normal: 0.01..100,
// uniform: 0 < psi <= 1).
at::Tensor truncate_latent(const at::Tensor& z, const std::string& latent, double psi, at::Generator& gen);

// Interpolation between two latents [nz] at t in [0, 1].
// slerp: the direction moves along the great circle from a's to b's direction, the length linearly from |a| to |b|
// (so the ends are exactly a and b, and with equal lengths the length stays constant). Nearly parallel
// directions fall back to lerp.
at::Tensor slerp(const at::Tensor& a, const at::Tensor& b, double t);
at::Tensor lerp(const at::Tensor& a, const at::Tensor& b, double t);
// keys [K, nz] (K >= 2) -> [K - 1, steps, nz]: for each neighbouring pair, `steps` latents from the first key to
// the second at t = i / (steps - 1). `mode`: slerp | lerp.
at::Tensor interpolation_path(const at::Tensor& keys, int steps, const std::string& mode);

// One term of latent arithmetic: +1 or -1 times the mean latent of `seeds`.
struct LatentTerm {
  int sign = 1;
  std::vector<std::int64_t> seeds;
};
// "A-B+C", "[1,2,3]-[4,5,6]+[7,8,9]", "-3+4": a leading sign is optional. Throws UserError(kExitUsage).
std::vector<LatentTerm> parse_arithmetic(const std::string& expr);
// Mean latent of each term [T, nz] (unsigned) and the signed sum of those means [nz].
struct ArithmeticLatents {
  at::Tensor terms;   // [T, nz]
  at::Tensor result;  // [nz]
};
ArithmeticLatents arithmetic_latents(const ModelConfig& model, const std::vector<LatentTerm>& terms, double psi = 0);

// "--class K|NAME" -> class index. Throws UserError(kExitUsage) for an unconditional model (naming `checkpoint`)
// or an unknown class (listing the valid ones).
int resolve_class(const std::string& spec, const ModelConfig& model, const std::vector<std::string>& class_names,
                  const std::string& checkpoint);

}  // namespace gan

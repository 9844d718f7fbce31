// Sample-quality metrics: Frechet distance, KID, precision/recall and class coverage of generated images, each next
// to its real-vs-real floor, computed on the features of an extractor: a small CNN classifier trained once on the
// labelled dataset and cached, or any TorchScript model. Real-data features are cached too (eval.cache).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gan/config.h"
#include "gan/models.h"

namespace gan {

class ImageSource;

struct EvalResult {
  std::string extractor;             // "classifier:<cache file>" or the TorchScript path
  double extractor_accuracy = NAN;   // classifier: held-out accuracy when it was trained (NaN for TorchScript)
  std::int64_t n_real = 0, n_gen = 0;
  std::int64_t feature_dim = 0;
  double fd = NAN, kid = NAN, kid_std = NAN, precision = NAN, recall = NAN;
  // The same scores between two disjoint real subsets of the same sizes (what a perfect generator would get).
  double fd_floor = NAN, kid_floor = NAN, precision_floor = NAN, recall_floor = NAN;
  std::vector<std::string> class_names;  // classifier extractor on labelled data
  std::vector<double> class_hist;        // predicted-class fractions of the generated images
  double class_entropy = NAN, class_entropy_real = NAN;  // of class_hist and of the real images' predictions, nats
  int classes_covered = 0;          // classes with >= kCoveredShare / K of the generated images (1% for K = 10)
  double seconds = 0;               // wall time of evaluate()
  bool capped = false;              // eval.max_time was reached: n_gen < the samples asked for
  std::int64_t n_asked = 0;         // eval.samples
};

// A class counts as covered when it holds at least this share of a uniform histogram (0.1 / K of the images).
constexpr double kCoveredShare = 0.1;
// Fewest generated images an evaluation computes with, even past eval.max_time.
constexpr std::int64_t kMinEvalSamples = 500;

// Returns `count` generated images [count, C, S, S] in [-1, 1] on the CPU (or the evaluator's device), for sample
// indices [first, first + count). The evaluator calls it with first = 0, then consecutive ranges. A source that runs
// out (a folder of images) returns fewer, or none: the evaluation scores what it got (UserError(kExitData) below 10).
using GenerateFn = std::function<at::Tensor(std::int64_t first, std::int64_t count)>;

// Images from `g` (in whatever mode the caller left it; use eval mode): image i has a latent from sample_latent
// determined by (seed, i) alone, and for a conditional model the label i % num_classes, so the same seed gives the
// same images however the range is split into calls.
GenerateFn generator_sampler(Generator g, const ModelConfig& model, const c10::Device& device, std::uint64_t seed = 0);

// Images read from `src` in order (another tool's samples, for gan-eval --images), files that do not decode skipped;
// fewer than asked at the end of the files.
GenerateFn image_sampler(std::shared_ptr<ImageSource> src);

// What the extractor is and whether it was trained or read from the cache by this Evaluator.
struct ExtractorInfo {
  std::string description;         // as EvalResult::extractor
  std::string cache_file;          // classifier: the cached model file
  bool trained_now = false;        // classifier trained by this constructor (false: loaded from the cache)
  double accuracy = NAN;           // classifier's held-out accuracy
  double train_seconds = NAN;      // classifier's training time (when trained, or as stored)
  bool real_stats_cached = false;  // real features read from the cache (false: computed and written)
};

class Evaluator {
 public:
  // Prepares the extractor (eval.extractor) and the real features of cfg.data at cfg.model.image_size/channels,
  // from the cache (eval.cache) when present, else computing and caching them. `data` may pass an already opened
  // source of cfg.data (else it is opened here and released after). Throws UserError: kExitUsage for an unusable
  // eval.extractor (or the classifier on unlabelled data), kExitData for data problems.
  // Leaves torch's global RNG state as it found it (training resumes stay exact).
  Evaluator(const Config& cfg, const c10::Device& device, ImageSource* data = nullptr);
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // Generates up to eval.samples images in chunks and scores them; stops early (at least kMinEvalSamples) when the
  // next chunk would pass eval.max_time, and sets `capped`.
  EvalResult evaluate(const GenerateFn& generate);
  // The real-vs-real floors alone (n_gen = 0).
  EvalResult real_floor();
  const ExtractorInfo& extractor_info() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One JSON object (NaN as null), for metrics.jsonl rows and summary files.
std::string eval_json(const EvalResult& r);
// Human-readable lines, each score with its real-vs-real floor next to it.
std::string eval_table(const EvalResult& r);

// ---- Pure metrics on feature matrices [N, D] (any float dtype; computed in double) ----

// Frechet distance between Gaussians (mean, covariance [D, D]):
// |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr sqrt(sqrt(C1) C2 sqrt(C1)), via symmetric eigendecompositions.
double frechet_distance_stats(const at::Tensor& mu1, const at::Tensor& cov1, const at::Tensor& mu2,
                              const at::Tensor& cov2);
// The same for Gaussian fits (unbiased covariance) of two feature sets.
double frechet_distance(const at::Tensor& a, const at::Tensor& b);

struct KidResult {
  double mean = NAN, std = NAN;
};
// Kernel inception distance: unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3 over `subsets` random subsets of
// min(subset_size, |a|, |b|) rows of each set (seeded), mean and standard deviation; when that is all rows of both
// sets, the one value and std NaN (no spread to measure).
KidResult kid(const at::Tensor& a, const at::Tensor& b, int subsets = 100, std::int64_t subset_size = 1000,
              std::uint64_t seed = 0);

struct PrecisionRecall {
  double precision = NAN, recall = NAN;
};
// Kynkaanniemi et al. 2019: precision = share of `gen` inside the union of real k-NN balls (radius = distance to the
// k-th nearest other real point); recall = share of `real` inside the generated k-NN balls.
PrecisionRecall precision_recall(const at::Tensor& real, const at::Tensor& gen, int k = 3);

// Shannon entropy (nats) of a histogram (normalised here); 0 for an empty one.
double entropy(const std::vector<double>& hist);

}  // namespace gan

// The run configuration: typed structs with a documented default per field, loaded from YAML (.cfg files).
// Every key is listed in one table in config.cpp (name, doc, range); unknown keys are errors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gan {

struct DataConfig {
  std::string source = "fashion-mnist";  // fashion-mnist | mnist | idx | folder
  std::string path = "";                 // folder of images, IDX images file, or MNIST folder; "" = Debian's location
  std::string split = "train";           // for IDX sources: train | test | all
  std::string background = "#ffffff";   // colour that transparent pixels are composited on
  std::int64_t max_images = 0;           // use at most this many images (0 = all)
  int workers = 0;                       // image-decoding threads for folders (0 = number of cores)
  int min_image_size = 8;                // skip images narrower or shorter than this (tracking pixels, icons)
  double max_bad_fraction = 0.5;         // stop when more than this fraction of the files tried fail to decode
  std::string cache = "auto";            // folder sources: auto | off | folder for the preprocessed uint8 cache
  bool xflip = false;                    // show each image mirrored left-right half of the time (a plain data option)
  std::string labels = "";               // IDX label file for data.source idx ("" = the images file's name with
                                         // images-idx3 -> labels-idx1); folders: first sub-directory names
};

struct ModelConfig {
  int image_size = 32;     // output resolution, a power of two from 16 to 256
  int channels = 1;        // 1 (grayscale) or 3 (RGB); images are converted to it
  int nz = 100;            // latent vector length
  int ngf = 64;            // generator width (channels of its last hidden layer)
  int ndf = 64;            // discriminator width (channels of its first layer)
  int max_mult = 8;        // channel multiplier cap for sizes above 64 (64x64 reaches exactly 8)
  std::string latent = "normal";  // latent distribution: normal (N(0, 1)) | uniform (U(-1, 1))
  std::string d_norm = "batch";   // D's normalisation: batch | none | layer | instance (wgan-gp needs not batch)
  bool spectral_norm = false;     // spectral normalisation of D's convolutions (power iteration, 1 step per call)
  bool minibatch_std = false;     // minibatch standard-deviation channel before D's last convolution
  bool conditional = false;       // class-conditional G and D (labels from IDX label files or sub-folders)
  int num_classes = 0;            // classes of a conditional model (0 = from the data; stored resolved)
  int class_embed = 50;           // length of G's class embedding, concatenated to z
  std::string d_conditioning = "projection";  // conditional D: projection (Miyato & Koyama) | concat (label maps)
  bool sync_bn = false;           // distributed runs: BatchNorm statistics over the global batch (else per process)
};

struct TrainConfig {
  std::string device = "auto";  // auto | cpu | cuda | cuda:N (auto = CUDA when available)
  int threads = 0;               // CPU threads for torch (0 = all cores)
  int batch_size = 128;          // images per step
  int epochs = 5;                // passes over the data (ignored when steps > 0)
  std::int64_t steps = 0;        // total training steps; when > 0 it replaces epochs
  double kimg = 0;               // length in thousands of real images shown (StyleGAN's unit); when > 0 it replaces
                                 // epochs (steps = ceil(kimg * 1000 / (batch_size * d_steps)))
  double lr = 2e-4;              // Adam learning rate (G and D)
  double beta1 = 0.5;            // Adam beta1
  double beta2 = 0.999;          // Adam beta2
  double lr_g = 0;               // G's learning rate (0 = lr); TTUR: a higher lr_d than lr_g
  double lr_d = 0;               // D's learning rate (0 = lr)
  double beta1_g = -1, beta2_g = -1;  // G's Adam betas (-1 = beta1 / beta2)
  double beta1_d = -1, beta2_d = -1;  // D's Adam betas (-1 = beta1 / beta2)
  std::string loss = "bce";      // bce (non-saturating) | minimax | lsgan | hinge | wgan-gp | rpgan (R3GAN's
                                 // relativistic pairing loss; use it with r1_gamma and r2_gamma)
  double gp_weight = 10;         // wgan-gp: gradient penalty weight (lambda)
  double r1_gamma = 0;           // R1 penalty gamma/2 * |grad D(x)|^2 on real images (0 = off)
  double r2_gamma = 0;           // R2 penalty gamma/2 * |grad D(G(z))|^2 on generated images (0 = off)
  std::string augment = "off";   // augmentation of every image D sees: off | diffaug (always) | ada (adaptive p) |
                                 // auto (none until an evaluation's FD regresses by health.eval_regress, then back to
                                 // best.pt and ADA from there; ADA from step 0 when the run cannot evaluate)
  std::string augment_policy = "";  // ops, e.g. color,translation,cutout or xflip,rotate90,xint,scale,brightness,
                                    // contrast,saturation ("" = the mode's default)
  double ada_target = 0.6;       // ada: the E[sign(D(real))] that p steers towards
  double ada_kimg = 100;         // ada: thousands of images over which p can move by 1 (StyleGAN2-ADA: 500, for
                                 // runs of millions of images)
  int augment_patience = 2;      // auto: evaluations in a row whose FD exceeds health.eval_regress x the best before
                                 // the run goes back to best.pt with ADA (1: the first such evaluation)
  double schedule_kimg = 0;      // cosine schedules below run over this many kimg (0 = the whole run)
  double lr_final = 1;           // learning rates end at this fraction of their start (cosine; 1 = constant)
  double gamma_final = 1;        // r1_gamma and r2_gamma end at this fraction (cosine; 1 = constant)
  double beta2_final = -1;       // Adam beta2 ends at this value (cosine; -1 = constant)
  double label_smoothing = 0;    // one-sided: real targets 1 - s (bce, minimax, lsgan)
  double instance_noise = 0;     // std of Gaussian noise added to D's inputs at step 0, annealed linearly to 0
  std::int64_t instance_noise_steps = 0;  // steps over which instance noise reaches 0 (0 = the whole run)
  int d_steps = 1;               // D updates (each on a fresh batch) per G update
  double ema_decay = 0;          // generator EMA decay, e.g. 0.999 (0 = off); samples and eval use the EMA G
  bool ema_rampup = true;        // EMA decay min(ema_decay, (1 + t) / (10 + t)) early in training
  std::int64_t seed = 1;         // seeds weights, noise and shuffling
  std::string max_time = "";     // stop cleanly after this long, e.g. 90m, 6h, 1d12h ("" = no limit)
  std::string on_nan = "stop";   // non-finite loss or gradient: stop | rollback (to the last checkpoint)
  int max_rollbacks = 3;         // with on_nan: rollback, give up after this many rollbacks
  std::string downconv = "auto";  // D's 4x4 stride-2 convs: auto | winograd | direct (same function, see README)
  std::string upconv = "auto";   // G's transposed convs: auto | phase | gemm | winograd | transposed (same function, see README)
  std::string channels_last = "auto";  // activations in channels_last: auto (on for CUDA) | on | off
  std::string amp = "off";       // mixed precision: off | bf16 (autocast: CUDA, or a CPU with native bf16) |
                                 // fp16 (CUDA: autocast + loss scaling) | auto (bf16 on such a CPU, else off)
  bool cudnn_benchmark = true;   // CUDA: let cuDNN time its algorithms for the fixed shapes
  std::string cuda_graphs = "auto";  // CUDA: replay the step as one graph: auto (where the config allows) | on | off
};

struct OutputConfig {
  std::string dir = "runs";      // parent folder of run folders
  std::string name = "";         // run folder name; "" = <config name>-<YYYYmmdd-HHMMSS>
  int log_every = 50;            // progress line every N steps
  int metrics_every = 10;        // metrics.jsonl row every N steps
  int sample_every = 500;        // sample grid every N steps (and always at the end)
  int checkpoint_every = 2000;   // checkpoint every N steps (and always at the end)
  int keep_last = 0;             // keep only the newest N step checkpoints (0 = keep all)
  int samples = 64;              // images in each sample grid (fixed noise)
  int grid_rows = 8;             // images per grid row
};

struct EvalConfig {
  std::int64_t every = 0;          // evaluate every N steps and at the end (0 = off; gan-eval works any time)
  std::int64_t samples = 5000;     // generated images per evaluation (the real statistics use as many)
  std::string max_time = "5m";     // cap per evaluation: fewer samples when generating would take longer
  std::string extractor = "classifier";  // classifier (trained once on labelled data, cached) | path to a
                                         // TorchScript model mapping [N, C, H, W] in [-1, 1] to features
  std::string cache = "auto";      // folder for the classifier and real statistics (auto = ~/.cache/gan-trainer)
};

struct HealthConfig {
  int window = 200;                // steps over which D saturation is judged
  double saturation = 0.95;        // warn when mean D(x) > this and D(G(z)) < 1 - this for a whole window
  double min_diversity = 0.25;     // warn when fixed-noise sample diversity falls below this fraction of the data's
  double eval_regress = 1.25;      // warn when an eval FD is this many times the best so far
  std::int64_t grace_steps = 500;  // no diversity warning before this step (G starts out drawing near-equal images)
};

// Data-parallel training over several processes (torchrun or gan-train --nproc-per-node); one process ignores it.
struct DistConfig {
  std::string backend = "auto";  // auto (nccl on CUDA, gloo on CPU) | gloo | nccl
  std::string timeout = "5m";    // a rendezvous or collective waiting longer ends the run, naming the rank
  double bucket_mb = 25;         // gradients are averaged in flat buckets of about this size
  bool overlap = true;           // start a bucket's all-reduce during the backward pass as soon as it is complete
};

struct Config {
  DataConfig data;
  ModelConfig model;
  TrainConfig train;
  OutputConfig output;
  EvalConfig eval;
  HealthConfig health;
  DistConfig dist;
  std::string origin = "default";  // where it came from (file path), for messages; not a key
  std::string name = "run";        // config file stem, used for run folder names; not a key
};

// Loads and validates a .cfg file. Throws UserError(kExitUsage) naming file, line and key. With `validate` false the
// cross-field checks are left to a validate_config() after overrides (a config may leave data.path to --set).
Config load_config(const std::string& path, bool validate = true);
// Parses YAML text (`origin` is used in messages). Missing keys keep their defaults.
Config parse_config(const std::string& yaml_text, const std::string& origin, bool validate = true);
// Applies "section.key=value" (value parsed as YAML). Throws UserError naming the override. Call
// validate_config() after the last override (cross-field checks need them all).
void apply_override(Config& cfg, const std::string& assignment);
// Cross-field checks (e.g. paths that must exist are checked by the data code, not here).
void validate_config(const Config& cfg);
// The resolved config as YAML with one comment per key; parse_config(to_yaml(c)) == c.
std::string to_yaml(const Config& cfg);
// "90s", "30m", "6h", "1d12h", "1h30m" -> seconds; "" -> 0 (no limit). Returns -1 when malformed.
double parse_duration(const std::string& text);
// All keys as "section.key", in table order (for help and suggestions).
std::vector<std::string> config_keys();

}  // namespace gan

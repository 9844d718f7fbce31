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
};

struct ModelConfig {
  int image_size = 32;     // output resolution, a power of two from 16 to 256
  int channels = 1;        // 1 (grayscale) or 3 (RGB); images are converted to it
  int nz = 100;            // latent vector length
  int ngf = 64;            // generator width (channels of its last hidden layer)
  int ndf = 64;            // discriminator width (channels of its first layer)
  int max_mult = 8;        // channel multiplier cap for sizes above 64 (64x64 reaches exactly 8)
};

struct TrainConfig {
  std::string device = "auto";  // auto | cpu | cuda | cuda:N (auto = CUDA when available)
  int threads = 0;               // CPU threads for torch (0 = all cores)
  int batch_size = 128;          // images per step
  int epochs = 5;                // passes over the data (ignored when steps > 0)
  std::int64_t steps = 0;        // total training steps; when > 0 it replaces epochs
  double lr = 2e-4;              // Adam learning rate (G and D)
  double beta1 = 0.5;            // Adam beta1
  double beta2 = 0.999;          // Adam beta2
  std::int64_t seed = 1;         // seeds weights, noise and shuffling
  std::string max_time = "";     // stop cleanly after this long, e.g. 90m, 6h, 1d12h ("" = no limit)
  std::string on_nan = "stop";   // non-finite loss or gradient: stop | rollback (to the last checkpoint)
  int max_rollbacks = 3;         // with on_nan: rollback, give up after this many rollbacks
  std::string upconv = "auto";   // G's transposed convs: auto | phase | gemm | transposed (same function, see README)
  std::string channels_last = "auto";  // activations in channels_last: auto (on for CUDA) | on | off
  std::string amp = "off";       // mixed precision on CUDA: off | bf16 (autocast) | fp16 (autocast + loss scaling)
  bool cudnn_benchmark = true;   // CUDA: let cuDNN time its algorithms for the fixed shapes
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

struct Config {
  DataConfig data;
  ModelConfig model;
  TrainConfig train;
  OutputConfig output;
  std::string origin = "default";  // where it came from (file path), for messages; not a key
  std::string name = "run";        // config file stem, used for run folder names; not a key
};

// Loads and validates a .cfg file. Throws UserError(kExitUsage) naming file, line and key.
Config load_config(const std::string& path);
// Parses YAML text (`origin` is used in messages). Missing keys keep their defaults.
Config parse_config(const std::string& yaml_text, const std::string& origin);
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

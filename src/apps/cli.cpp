#include "gan/cli.h"

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>
#include <spdlog/sinks/sink.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <sstream>

#include "gan/checkpoint.h"
#include "gan/config.h"
#include "gan/distributed.h"
#include "gan/datasets.h"
#include "gan/errors.h"
#include "gan/eval.h"
#include "gan/files.h"
#include "gan/launcher.h"
#include "gan/platform.h"
#include "gan/progress.h"
#include "gan/sampler.h"
#include "gan/self_check.h"
#include "gan/trainer.h"

namespace gan {

namespace {
std::string g_rank_tag;  // " (rank N)" in a distributed run's workers other than rank 0
}

int guarded(const char* prog, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UserError& e) {
    ProgressBar::clear();  // the error on a line of its own, not after the bar
    std::fprintf(stderr, "%s%s: error: %s\n", prog, g_rank_tag.c_str(), e.what());
    return e.code();
  } catch (const c10::OutOfMemoryError& e) {  // the CPU allocator's or CUDA's: not a bug
    ProgressBar::clear();
    std::fprintf(stderr, "%s%s: error: out of memory: %s\n", prog, g_rank_tag.c_str(), e.what_without_backtrace());
    return kExitMemory;
  } catch (const c10::Error& e) {
    ProgressBar::clear();
    std::fprintf(stderr, "%s: internal error: %s\n", prog, e.what_without_backtrace());
    return kExitInternal;
  } catch (const std::exception& e) {
    ProgressBar::clear();
    std::fprintf(stderr, "%s: internal error: %s\n", prog, e.what());
    return kExitInternal;
  }
}

int parse_command_line(CLI::App& app, int argc, char** argv, const char* prog) {
  app.set_version_flag("--version", version_line(prog), "print the version (and the LibTorch it was built with) and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "%s: error: %s (see %s --help)\n", prog, e.what(), prog);
    return kExitUsage;
  }
  return -1;
}

namespace {

std::atomic<int> g_signals{0};
std::atomic<long long> g_first_signal_ms{0};
bool g_worker = false;  // one worker of a distributed run
// Written by the signal handler (prepared beforehand: a handler may not format).
char g_stop_message[160] = "\nstopping after this step (saving a checkpoint); press Ctrl-C again to quit at once\n";

long long now_ms() {  // async-signal-safe
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

extern "C" void on_signal(int sig) {
  // A worker may get a terminal's Ctrl-C and its launcher's copy of it (torchrun passes it on) within moments: that
  // is one request to stop, not two.
  if (g_worker && g_signals.load() > 0 && now_ms() - g_first_signal_ms.load() < 1000) return;
  if (g_signals.fetch_add(1) > 0) _exit(sig == SIGTERM ? kExitTerminated : kExitInterrupted);  // second: at once
  g_first_signal_ms.store(now_ms());
  request_stop(sig);
  ssize_t ignored = write(STDERR_FILENO, g_stop_message, std::strlen(g_stop_message));
  (void)ignored;
}

void setup_logging() { spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v"); }

// Workers other than rank 0 log only their own warnings and errors, tagged with their rank.
void setup_worker_logging(int rank) {
  if (rank == 0) return;
  g_rank_tag = " (rank " + std::to_string(rank) + ")";
  std::snprintf(g_stop_message, sizeof g_stop_message, "rank %d: stopping after this step\n", rank);
  spdlog::set_pattern("[%H:%M:%S] rank " + std::to_string(rank) + " %^%l%$ %v");
  spdlog::set_level(spdlog::level::warn);
}

// What rank 0 decided for the run (the checkpoint to resume, the final config), sent to the other ranks, which may
// not see the checkpoint files. An error on rank 0 travels too, so every rank ends with its code.
struct RunPlan {
  std::string checkpoint;
  Config cfg;
};
std::string encode_plan(const RunPlan& p) {
  return "ok\n" + p.checkpoint + "\n" + p.cfg.name + "\n" + p.cfg.origin + "\n" + to_yaml(p.cfg);
}
RunPlan share_plan(DistContext& dist, const std::function<RunPlan()>& decide) {
  std::string text;
  if (dist.is_main()) {
    try {
      RunPlan p = decide();
      text = encode_plan(p);
    } catch (const UserError& e) {
      dist.broadcast_bytes("E" + std::to_string(static_cast<int>(e.code())) + "\n" + e.what());
      throw;
    }
  }
  text = dist.broadcast_bytes(text);
  if (!dist.is_main() && !text.empty() && text[0] == 'E') {
    const auto nl = text.find('\n');
    throw UserError(static_cast<ExitCode>(std::atoi(text.substr(1, nl - 1).c_str())),
                    "stopping because rank 0 failed: " + text.substr(nl + 1));
  }
  std::istringstream in(text);
  std::string ok, checkpoint, name, origin;
  std::getline(in, ok);
  std::getline(in, checkpoint);
  std::getline(in, name);
  std::getline(in, origin);
  RunPlan p;
  p.checkpoint = checkpoint;
  p.cfg = parse_config(text.substr(static_cast<size_t>(in.tellg())), origin);
  p.cfg.name = name;
  return p;
}

// Model keys whose values differ between two configs, as "model.ngf: 64 -> 32".
std::string model_differences(const Config& a, const Config& b) {
  std::string diff;
  auto add = [&](const char* key, int x, int y) {
    if (x != y) diff += std::string(diff.empty() ? "" : ", ") + key + ": " + std::to_string(x) + " vs " + std::to_string(y);
  };
  add("model.image_size", a.model.image_size, b.model.image_size);
  add("model.channels", a.model.channels, b.model.channels);
  add("model.nz", a.model.nz, b.model.nz);
  add("model.ngf", a.model.ngf, b.model.ngf);
  add("model.ndf", a.model.ndf, b.model.ndf);
  add("model.max_mult", a.model.max_mult, b.model.max_mult);
  return diff;
}

}  // namespace

int train_main(int argc, char** argv) {
  std::string blas = ensure_fast_blas(argv);
  keep_freed_memory();
  setup_logging();
  return guarded("gan-train", [&]() -> int {
    CLI::App app{"gan-train: train a DCGAN from a YAML config"};
    std::string config_path, resume, out, name, device;
    std::vector<std::string> sets;
    std::int64_t steps = -1, seed = -1;
    int epochs = -1, nproc = 0;
    bool dry_run = false, help_config = false, quiet = false, verbose = false;
    app.add_option("-c,--config", config_path, "config file (.cfg, YAML); default: built-in defaults")
        ->check(CLI::ExistingFile);
    app.add_option("--set", sets, "override a key: section.key=value (repeatable)")->take_all();
    app.add_option("--out", out, "parent folder of run folders (output.dir)");
    app.add_option("--name", name, "run folder name (output.name)");
    app.add_option("--device", device, "auto | cpu | cuda | cuda:N (train.device)");
    app.add_option("--steps", steps, "total training steps (train.steps; clears train.kimg)");
    app.add_option("--epochs", epochs, "epochs (train.epochs; clears train.steps and train.kimg)");
    app.add_option("--seed", seed, "random seed (train.seed)");
    app.add_option("--resume", resume,
                   "continue from a checkpoint: PATH, a run folder (its newest) or auto (newest run of this config)");
    std::vector<std::string> init_from;
    app.add_option("--init-from", init_from,
                   "start a new run from weights (.pt or .safetensors: gan-export, python/gan_models.py, the PyTorch "
                   "DCGAN example): FILE or g=FILE for G, d=FILE for D (repeatable)");
    app.add_option("--nproc-per-node", nproc,
                   "data-parallel training: start N workers on this machine (no torchrun needed; train.batch_size "
                   "stays the global batch)")
        ->check(CLI::Range(1, 4096));
    app.add_flag("--dry-run", dry_run, "print the resolved config and exit");
    app.add_flag("-q,--quiet", quiet, "print only warnings and errors (no progress bar); train.log keeps everything");
    app.add_flag("-v,--verbose", verbose, "print debug messages too");
    app.add_flag("--help-config", help_config, "print every config key with its default and exit");
    if (int code = parse_command_line(app, argc, argv, "gan-train"); code >= 0) return code;
    if (help_config) {
      std::cout << to_yaml(Config{});
      return kExitOk;
    }
    auto apply_cli = [&](Config& cfg) {
      for (const auto& s : sets) apply_override(cfg, s);
      if (!out.empty()) apply_override(cfg, "output.dir=" + out);
      if (!name.empty()) apply_override(cfg, "output.name=" + name);
      if (!device.empty()) apply_override(cfg, "train.device=" + device);
      if (epochs >= 0) {
        apply_override(cfg, "train.epochs=" + std::to_string(epochs));
        apply_override(cfg, "train.steps=0");
        apply_override(cfg, "train.kimg=0");
      }
      if (steps >= 0) {
        apply_override(cfg, "train.steps=" + std::to_string(steps));
        apply_override(cfg, "train.kimg=0");
      }
      if (seed >= 0) apply_override(cfg, "train.seed=" + std::to_string(seed));
      validate_config(cfg);
    };
    const LaunchEnv launch = read_launch_env();
    if (launch.present) setup_worker_logging(launch.rank);
    Config cfg = config_path.empty() ? Config{} : load_config(config_path, /*validate=*/false);  // after --set
    apply_cli(cfg);
    const int world = nproc > 0 ? nproc : launch.world_size;
    if (cfg.train.batch_size % world != 0)
      throw UserError(kExitUsage, "train.batch_size = " + std::to_string(cfg.train.batch_size) + " cannot be split " +
                                      "evenly over " + std::to_string(world) + " processes (" +
                                      (nproc > 0 ? "--nproc-per-node" : "WORLD_SIZE") + "); use a multiple of " +
                                      std::to_string(world));
    if (nproc > 0) {
      if (launch.present)
        throw UserError(kExitUsage, "--nproc-per-node is for starting workers yourself; under torchrun (RANK is set) "
                                    "torchrun starts them: drop --nproc-per-node");
      if (!dry_run) {
        std::vector<std::string> args(argv, argv + argc);
        args = without_launcher_options(args);
        return launch_local_workers(nproc, args, parse_duration(cfg.dist.timeout) + 30);
      }
    }
    // The run's plan: which checkpoint, which config. Rank 0 of a distributed run decides and tells the others.
    auto decide = [&]() -> RunPlan {
      RunPlan p{"", cfg};
      if (resume.empty()) return p;
      p.checkpoint = find_resume_checkpoint(cfg, resume);
      if (p.checkpoint.empty()) {
        spdlog::info("--resume auto: no earlier run of '{}' under {}; starting a new run", cfg.name, cfg.output.dir);
        return p;
      }
      Config stored = read_checkpoint_config(p.checkpoint);
      if (config_path.empty()) {
        p.cfg = stored;
        apply_cli(p.cfg);
      }
      std::string diff = model_differences(stored, p.cfg);
      if (!diff.empty())
        throw UserError(kExitCheckpoint, "checkpoint " + p.checkpoint + " was trained with a different model (" +
                                             diff + "); resume without --config or with the same model section");
      return p;
    };
    if (dry_run) {
      if (launch.rank == 0) {
        RunPlan p = decide();
        std::cout << "# resolved config (" << p.cfg.origin << ")\n" << to_yaml(p.cfg);
      }
      return kExitOk;
    }
    if (quiet && verbose) throw UserError(kExitUsage, "--quiet and --verbose contradict each other: give one");
    if (verbose) spdlog::set_level(spdlog::level::debug);
    // Quiet: the console (the only sink so far) shows warnings and errors; train.log, added later, keeps everything.
    if (quiet)
      for (auto& sink : spdlog::default_logger()->sinks()) sink->set_level(spdlog::level::warn);
    // The progress bar on a terminal, for the process that logs (rank 0 of a distributed run).
    if (launch.rank == 0) ProgressBar::enable(!quiet);
    ensure_sound_cpu_maths(argv);  // may restart the program; the trainer logs what it found (cpu_maths_note)
    spdlog::info("{}", blas);
    g_worker = launch.present;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit then fails the write (exit 5) instead of killing us
    std::unique_ptr<DistContext> dist;
    if (launch.present && launch.world_size > 1) {
      dist = std::make_unique<DistContext>(launch, cfg.dist, worker_device(cfg.train.device, launch));
      spdlog::info("distributed: {}", dist->describe());
    }
    RunPlan plan = dist ? share_plan(*dist, decide) : decide();
    InitWeights init;
    for (const auto& f : init_from) {
      if (f.rfind("d=", 0) == 0) init.d = f.substr(2);
      else init.g = f.rfind("g=", 0) == 0 ? f.substr(2) : f;
    }
    if ((!init.g.empty() || !init.d.empty()) && !plan.checkpoint.empty())
      spdlog::warn("--init-from is for new runs: resuming {} keeps its own weights", plan.checkpoint);
    TrainSummary s = train(plan.cfg, plan.checkpoint, {}, dist.get(), init);
    return s.exit_code;
  });
}

int sample_main(int argc, char** argv) {
  ensure_fast_blas(argv);
  setup_logging();
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit fails the write (exit 5) instead of killing us
  return guarded("gan-sample", [&]() -> int {
    CLI::App app{"gan-sample: generate images from a gan-train checkpoint"};
    SampleOptions o;
    std::string info;
    app.add_option("--checkpoint", o.checkpoint, "checkpoint .pt, a run folder (its latest) or RUN/best");
    app.add_option("--info", info,
                   "print what a checkpoint holds (step, model, parameter counts, EMA, last scores, format, versions, "
                   "config) and exit");
    app.add_option("--config", o.config,
                   "with --checkpoint G.pt / G.safetensors (exported or PyTorch weights): the config they were "
                   "trained with")->check(CLI::ExistingFile);
    app.add_option("-n,--n", o.n,
                   "number of images in all (drawn from --seed); a conditional model spreads them over its classes")
        ->check(CLI::Range(1, 100000));
    app.add_option("--n-per-class", o.n_per_class,
                   "conditional models: this many latents, each drawn in every class (one grid row per class)")
        ->check(CLI::Range(1, 100000));
    app.add_option("--latents", o.latents, "latent vectors [N, nz] to use, .npy or PyTorch file (classes of a "
                                           "conditional model from STEM_labels.npy beside a .npy)");
    app.add_option("--save-latents", o.save_latents, "write the latents used to this .npy (and STEM_labels.npy)");
    app.add_option("--save-images", o.save_images, "write the images to this .npy, float32 [N, C, S, S] in [-1, 1]");
    app.add_option("--out", o.out, "PNG to write: the grid, the --interpolate strip or the --arithmetic row");
    app.add_option("--individual", o.individual, "folder to write one PNG per grid image into");
    app.add_option("--seed", o.seed, "noise seed for the --n images");
    app.add_option("--nrow", o.nrow, "images per grid row")->check(CLI::Range(1, 100000));
    app.add_option("--device", o.device, "auto | cpu | cuda | cuda:N");
    app.add_option("--threads", o.threads, "CPU threads (0 = all cores)")->check(CLI::Range(0, 4096));
    app.add_option("--seeds", o.seeds, "one image per seed, e.g. 0-63 or 1,5,9-12 (replaces --n/--seed)");
    app.add_option("--truncation", o.truncation,
                   "PSI: normal latents redraw components with |z| > PSI (BigGAN); uniform ones are scaled by PSI "
                   "(0 = off)");
    app.add_option("--class", o.class_spec, "conditional models: class index or name (default: one grid row per class)");
    app.add_option("--interpolate", o.interpolate, "walk through the latents of seeds A,B[,C...]");
    app.add_option("--steps", o.steps, "images per interpolated pair, both ends included (default 8)")
        ->check(CLI::Range(2, 10000));
    app.add_option("--mode", o.mode, "interpolation: slerp | lerp (default slerp for normal latents, lerp for uniform)")
        ->check(CLI::IsMember({"slerp", "lerp"}));
    app.add_option("--frames", o.frames, "folder for the interpolation's PNG frames (frame_000000.png ...)");
    app.add_option("--gif", o.gif, "animated GIF of the interpolation");
    app.add_option("--fps", o.fps, "GIF frames per second (default 10)")->check(CLI::Range(0.1, 50.0));
    app.add_option("--arithmetic", o.arithmetic, "latent arithmetic on seeds, e.g. \"[1,2,3]-[4,5,6]+[7,8,9]\"");
    if (int code = parse_command_line(app, argc, argv, "gan-sample"); code >= 0) return code;
    // Sampling computes no gradients, where the faults seen so far are: the note is a debug line, so that an
    // error stays one line.
    if (const std::string note = ensure_sound_cpu_maths(argv); !note.empty()) spdlog::debug("{}", note);
    if (!info.empty()) {
      std::cout << describe_checkpoint(resolve_checkpoint_arg(info)) << std::flush;
      return kExitOk;
    }
    if (o.checkpoint.empty())
      throw UserError(kExitUsage, "--checkpoint is required (a .pt written by gan-train, e.g. "
                                  "runs/<run>/checkpoints/latest.pt; see gan-sample --help)");
    o.checkpoint = resolve_checkpoint_arg(o.checkpoint);
    sample(o);
    return kExitOk;
  });
}

// gan-eval --images: a folder needs at least eval.samples' minimum (src/core/config.cpp) of images.
constexpr std::int64_t kMinImagesScored = 100;

int eval_main(int argc, char** argv) {
  ensure_fast_blas(argv);
  setup_logging();
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit fails the write (exit 5) instead of killing us
  return guarded("gan-eval", [&]() -> int {
    CLI::App app{"gan-eval: score a gan-train checkpoint (FD, KID, precision/recall, class coverage) against its data"};
    std::string checkpoint, images, config_path, extractor, cache, device = "auto", json;
    std::vector<std::string> sets;
    std::int64_t samples = 0, seed = 0;
    bool real_only = false;
    app.add_option("--checkpoint", checkpoint, "checkpoint .pt, a run folder (its latest) or RUN/best");
    app.add_option("--images", images, "score a folder of images (another tool's samples) instead of a checkpoint")
        ->check(CLI::ExistingDirectory);
    app.add_flag("--real-only", real_only, "print the real-vs-real floors of the data only (no checkpoint needed)");
    app.add_option("-c,--config", config_path, "with --real-only or --images: config naming the data and model size")
        ->check(CLI::ExistingFile);
    app.add_option("--samples", samples, "generated images (eval.samples)");
    app.add_option("--extractor", extractor,
                   "classifier | PATH of a TorchScript feature model or of pytorch-fid's Inception weights "
                   "(eval.extractor)");
    app.add_option("--cache", cache, "folder for the classifier and real features (eval.cache)");
    app.add_option("--device", device, "auto | cpu | cuda | cuda:N");
    app.add_option("--seed", seed, "latent noise seed");
    app.add_option("--json", json, "write the scores as one JSON object to this file");
    app.add_option("--set", sets, "override a key, e.g. eval.max_time=2m or data.path=DIR (repeatable)")->take_all();
    if (int code = parse_command_line(app, argc, argv, "gan-eval"); code >= 0) return code;
    if (!checkpoint.empty() + !images.empty() + real_only != 1)
      throw UserError(kExitUsage, "give one of --checkpoint RUN/checkpoints/latest.pt, --images DIR [--config CFG] or "
                                  "--real-only [--config CFG] (see gan-eval --help)");
    if (!config_path.empty() && !checkpoint.empty())
      throw UserError(kExitUsage, "--config is for --real-only and --images; with --checkpoint the stored config is "
                                  "used (change it with --set)");
    if (const std::string note = ensure_sound_cpu_maths(argv); !note.empty()) spdlog::warn("{}", note);
    const c10::Device dev = resolve_device(device);
    if (const std::string note = ensure_sound_device_maths(dev); !note.empty()) spdlog::warn("{}", note);
    Config cfg = config_path.empty() ? Config{} : load_config(config_path, /*validate=*/false);  // after --set
    SamplingModel model;
    if (!checkpoint.empty()) {
      model = load_generator(resolve_checkpoint_arg(checkpoint), dev);
      cfg = model.cfg;
    }
    for (const auto& s : sets) apply_override(cfg, s);
    if (samples > 0) apply_override(cfg, "eval.samples=" + std::to_string(samples));
    if (!extractor.empty()) apply_override(cfg, "eval.extractor=" + extractor);
    if (!cache.empty()) apply_override(cfg, "eval.cache=" + cache);
    validate_config(cfg);
    configure_threads(cfg.train.threads);
    GenerateFn generate;
    if (!images.empty()) {  // the folder's images at the config's size and channels, as the trainer would read them
      DataConfig d;
      d.source = "folder";
      d.path = images;
      d.cache = "off";
      d.background = cfg.data.background;
      if (list_image_files(images).empty())  // before open_dataset, whose line would name data.path
        throw UserError(kExitData, "--images " + images + " holds no .jpg/.jpeg/.png/.bmp/.tga/.gif files (searched "
                                   "recursively); give the folder that holds the samples to score");
      std::shared_ptr<ImageSource> src = open_dataset(d, cfg.model.image_size, cfg.model.channels);
      if (src->size() < kMinImagesScored)
        throw UserError(kExitData, "--images " + images + ": " + std::to_string(src->size()) +
                                       " image files; scores need at least " + std::to_string(kMinImagesScored));
      if (src->size() < cfg.eval.samples) {
        spdlog::warn("--images {}: {} image files, fewer than eval.samples {}; scoring all of them", images,
                     src->size(), cfg.eval.samples);
        cfg.eval.samples = src->size();
      }
      generate = image_sampler(std::move(src));
    } else if (!real_only) {
      generate = generator_sampler(model.g, cfg.model, dev, static_cast<std::uint64_t>(seed));
    }
    Evaluator evaluator(cfg, dev);
    EvalResult r = real_only ? evaluator.real_floor() : evaluator.evaluate(generate);
    std::cout << eval_table(r) << std::flush;
    if (!json.empty()) {
      write_file_atomic(json, eval_json(r) + "\n");
      spdlog::info("wrote {}", json);
    }
    return kExitOk;
  });
}

}  // namespace gan

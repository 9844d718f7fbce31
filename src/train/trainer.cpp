#include "gan/trainer.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "gan/checkpoint.h"
#include "gan/datasets.h"
#include "gan/errors.h"
#include "gan/eval.h"
#include "gan/files.h"
#include "gan/health.h"
#include "gan/image.h"
#include "gan/loader.h"
#include "gan/models.h"
#include "gan/platform.h"
#include "gan/step.h"

namespace gan {
namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_signal{0};

std::string timestamp() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&t));
  return buf;
}

std::string step_name(std::int64_t step, const char* ext) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "step_%07lld%s", static_cast<long long>(step), ext);
  return buf;
}

std::string duration(double seconds) {
  long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

// Points `link` at `target` atomically (hard link + rename); falls back to copying.
void publish_as(const std::string& target, const std::string& link) {
  std::string tmp = link + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  if (::link(target.c_str(), tmp.c_str()) == 0) {
    if (::rename(tmp.c_str(), link.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      throw_io_error("update", link, err);
    }
    return;
  }
  write_file_atomic(link, read_file(target));
}

// Interval sums of per-step scalars, kept on the device so that steps never wait for the host.
struct Meter {
  at::Tensor sums;  // [loss_d, loss_g, d_real, d_fake, d_fake_after]
  int count = 0;
  void add(const at::Tensor& values) {
    sums = sums.defined() ? sums + values : values.clone();
    ++count;
  }
  std::vector<double> mean_and_reset() {
    auto v = (sums / std::max(count, 1)).cpu();
    std::vector<double> out(v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
    sums = at::Tensor();
    count = 0;
    return out;
  }
};

// Deletes "*.tmp.<pid>" files that a killed process left next to the files it was replacing.
void remove_stale_temporaries(const std::string& run) {
  for (const std::string& dir : {run, run + "/samples", checkpoint_dir(run)}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(e.path(), ec);
  }
}

// Keeps the metrics rows up to `step`, atomically (a resumed run re-does the steps after its checkpoint).
void truncate_metrics(const std::string& path, std::int64_t step) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  std::istringstream in(read_file(path));
  std::string kept, line;
  while (std::getline(in, line)) {
    long long s = -1;
    if (std::sscanf(line.c_str(), "{\"step\": %lld", &s) == 1 && s <= step) kept += line + "\n";
  }
  write_file_atomic(path, kept);
}

std::string json_string(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

// <run>/summary.json: where the run ended and its last numbers, for scripts and comparisons.
void write_summary(const std::string& path, const TrainSummary& s, double wall, const std::string& last_row,
                   const std::string& last_eval, const HealthMonitor& health) {
  char head[256];
  std::snprintf(head, sizeof head, "\"steps\": %lld, \"exit_code\": %d, \"wall_s\": %.2f, \"img_per_s\": %.2f, "
                                   "\"rollbacks\": %d",
                static_cast<long long>(s.steps), s.exit_code, wall, s.images_per_sec, s.rollbacks);
  char h[160];
  std::snprintf(h, sizeof h, "{\"warnings\": %d, \"sample_diversity\": %.5f}", health.warnings(),
                health.last_diversity());
  std::string json = "{\"run_dir\": " + json_string(s.run_dir) + ", " + head +
                     ", \"checkpoint\": " + json_string(s.checkpoint) + ", \"grid\": " + json_string(s.grid) +
                     ", \"last_metrics\": " + (last_row.empty() ? "null" : last_row) +
                     ", \"eval\": " + (last_eval.empty() ? "null" : last_eval) + ", \"health\": " + h + "}\n";
  write_file_atomic(path, json);
}

}  // namespace

void request_stop(int signal_number) { g_stop_signal.store(signal_number); }

std::string run_dir_of_checkpoint(const std::string& checkpoint) {
  fs::path p = fs::absolute(checkpoint).lexically_normal();
  fs::path dir = p.parent_path();
  if (dir.filename() == "checkpoints") dir = dir.parent_path();
  return dir.string();
}

std::vector<std::string> step_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<long long, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(checkpoint_dir(run_dir), ec)) {
    long long step;
    char tail;
    const std::string name = e.path().filename().string();
    if (std::sscanf(name.c_str(), "step_%lld.p%c", &step, &tail) == 2 && name.size() > 3 &&
        name.compare(name.size() - 3, 3, ".pt") == 0)
      found.emplace_back(step, e.path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::string find_resume_checkpoint(const Config& cfg, const std::string& resume) {
  if (resume != "auto") {
    if (!fs::is_regular_file(resume))
      throw UserError(kExitCheckpoint, "--resume " + resume + ": no such checkpoint file (use --resume auto to pick "
                                                              "the newest valid checkpoint of this config's runs)");
    return resume;
  }
  // Candidate runs: output.name when set, else every <config name>-* folder; newest checkpoint first.
  std::vector<fs::path> runs;
  std::error_code ec;
  if (!cfg.output.name.empty()) {
    runs.push_back(fs::path(cfg.output.dir) / cfg.output.name);
  } else if (fs::is_directory(cfg.output.dir, ec)) {
    for (const auto& entry : fs::directory_iterator(cfg.output.dir, ec))
      if (entry.is_directory() && entry.path().filename().string().rfind(cfg.name + "-", 0) == 0)
        runs.push_back(entry.path());
  }
  std::vector<std::pair<fs::file_time_type, std::string>> candidates;
  for (const auto& run : runs)
    for (const auto& ckpt : step_checkpoints(run.string())) {
      auto t = fs::last_write_time(ckpt, ec);
      if (!ec) candidates.emplace_back(t, ckpt);
    }
  std::stable_sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& c : candidates) {
    try {
      read_checkpoint_config(c.second);  // opens the archive and checks header, format and config
      return c.second;
    } catch (const UserError& e) {
      spdlog::warn("--resume auto: skipping {}", e.what());
    }
  }
  return "";
}

TrainSummary train(const Config& cfg_in, const std::string& resume_from, const TrainHooks& hooks) {
  using clock = std::chrono::steady_clock;
  Config cfg = cfg_in;
  const ModelConfig& mc = cfg.model;
  const c10::Device device = resolve_device(cfg.train.device);
  const int threads = configure_threads(cfg.train.threads);
  const double max_seconds = parse_duration(cfg.train.max_time);
  g_stop_signal.store(0);

  // Data, models, checkpoint and loader first: a bad dataset or checkpoint fails before any file is written.
  auto source = open_dataset(cfg.data, mc.image_size, mc.channels);
  if (mc.conditional) {
    if (source->num_classes() < 2)
      throw UserError(kExitData, "model.conditional needs class labels, but " + source->description() +
                                     " has none: use IDX data with its labels file (data.labels) or a folder with "
                                     "one sub-folder per class");
    if (cfg.model.num_classes == 0) cfg.model.num_classes = source->num_classes();
    if (cfg.model.num_classes != source->num_classes())
      throw UserError(kExitUsage, "model.num_classes = " + std::to_string(cfg.model.num_classes) + " but the data has " +
                                      std::to_string(source->num_classes()) + " classes; set it to 0 (from the data)");
  }

  // Models and optimizers, seeded.
  torch::manual_seed(static_cast<std::uint64_t>(cfg.train.seed));
  Generator g(mc);
  Discriminator d(mc);
  dcgan_init(*g);
  dcgan_init(*d);
  g->to(device);
  d->to(device);
  StepOptions step_opts = step_options(cfg.train, device);
  if (hooks.deferred_divergence_check) step_opts.check_every_step = false;
  prepare_models(g, d, step_opts);
  const TrainConfig& tc = cfg.train;
  auto adam = [&](torch::nn::Module& m, double lr, double b1, double b2) {
    return torch::optim::Adam(m.parameters(), torch::optim::AdamOptions(lr > 0 ? lr : tc.lr)
                                                  .betas({b1 >= 0 ? b1 : tc.beta1, b2 >= 0 ? b2 : tc.beta2}));
  };
  torch::optim::Adam opt_g = adam(*g, tc.lr_g, tc.beta1_g, tc.beta2_g), opt_d = adam(*d, tc.lr_d, tc.beta1_d, tc.beta2_d);
  // Generator EMA: a copy that follows G's weights; grids, evaluation and sampling use it.
  const bool use_ema = tc.ema_decay > 0;
  Generator g_ema{nullptr};
  if (use_ema) {
    g_ema = Generator(mc);
    g_ema->to(device);
    g_ema->set_upconv_mode(step_opts.upconv);  // a module setting: loading weights into it keeps it
    copy_weights(*g, *g_ema);
    g_ema->eval();
    for (auto& p : g_ema->parameters()) p.requires_grad_(false);
  }
  TrainingState state;
  // Fixed grid noise; a conditional grid has one row per class.
  const int grid_n = mc.conditional ? mc.num_classes * cfg.output.grid_rows : cfg.output.samples;
  state.fixed_noise = sample_latent(mc, grid_n);
  if (mc.conditional) state.fixed_labels = torch::arange(grid_n, torch::kLong).div(cfg.output.grid_rows, "floor");
  state.class_names = source->class_names();
  auto cpu_gen = at::detail::getDefaultCPUGenerator();
  // Restores everything a checkpoint holds; the RNG is reseeded with `reseed` > 0 (divergence rollbacks).
  auto restore = [&](const std::string& path, std::uint64_t reseed) {
    load_checkpoint(path, device, g, &d, &opt_g, &opt_d, &state, use_ema ? &g_ema : nullptr);
    prepare_models(g, d, step_opts);  // loaded tensors keep the layout they were saved in
    std::lock_guard<std::mutex> lock(cpu_gen.mutex());
    cpu_gen.set_state(state.rng_state);
    if (reseed) cpu_gen.set_current_seed(reseed);
  };
  if (!resume_from.empty()) restore(resume_from, 0);
  // Periodic evaluation: the extractor and the real statistics are prepared (or read from the cache) now, so that a
  // bad eval.extractor fails before training starts.
  std::unique_ptr<Evaluator> evaluator;
  if (cfg.eval.every > 0) evaluator = std::make_unique<Evaluator>(cfg, device, source.get());
  const at::Tensor fixed_noise = state.fixed_noise.to(device);
  const at::Tensor fixed_labels = state.fixed_labels.defined() ? state.fixed_labels.to(device) : at::Tensor();
  Generator& g_show = use_ema ? g_ema : g;  // what grids and evaluation show
  auto make_loader = [&] {
    return std::make_unique<BatchLoader>(*source, cfg.train.batch_size, static_cast<std::uint64_t>(cfg.train.seed),
                                         state.data, cfg.data.workers, /*prefetch=*/3,
                                         /*pin_memory=*/device.is_cuda());
  };
  auto loader = make_loader();

  // Run folder: created only once everything above has been checked.
  TrainSummary summary;
  if (!resume_from.empty()) {
    summary.run_dir = run_dir_of_checkpoint(resume_from);
  } else {
    summary.run_dir = cfg.output.dir + "/" + (cfg.output.name.empty() ? cfg.name + "-" + timestamp() : cfg.output.name);
    if (!step_checkpoints(summary.run_dir).empty())
      throw UserError(kExitUsage, "run folder " + summary.run_dir +
                                      " already holds a run; continue it with --resume auto or pick another --name");
  }
  const std::string& run = summary.run_dir;
  make_dirs(run + "/samples");
  make_dirs(checkpoint_dir(run));
  remove_stale_temporaries(run);
  auto file_sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(run + "/train.log");
  auto logger = spdlog::default_logger();
  logger->sinks().push_back(file_sink);
  struct SinkGuard {
    std::shared_ptr<spdlog::logger> l;
    ~SinkGuard() { l->sinks().pop_back(); }
  } sink_guard{logger};
  write_file_atomic(run + "/config.yaml", to_yaml(cfg));
  const std::string metrics_path = run + "/metrics.jsonl";
  // Rows a killed process wrote after its last checkpoint, or before its first one (a new run in that folder).
  truncate_metrics(metrics_path, state.step);
  if (!resume_from.empty()) {
    summary.checkpoint = resume_from;
    spdlog::info("resumed {} at step {} (epoch {}, image {} of its order)", resume_from, state.step,
                 state.data.epoch + 1, state.data.cursor);
  }

  const std::int64_t per_epoch = loader->batches_per_epoch();
  const std::int64_t total = cfg.train.steps > 0 ? cfg.train.steps : cfg.train.epochs * per_epoch;
  spdlog::info("run folder {}", run);
  spdlog::info("data: {}", source->description());
  const std::string downconv = step_opts.downconv == DownconvMode::kDirect && cfg.train.downconv != "direct"
                                   ? "direct (gradient penalty)"
                                   : cfg.train.downconv;
  spdlog::info("step: upconv {}, downconv {}, channels_last {}, amp {}{}", cfg.train.upconv, downconv,
               step_opts.channels_last ? "on" : "off",
               step_opts.amp, device.is_cuda() ? (cfg.train.cudnn_benchmark ? ", cuDNN benchmark" : "") : "");
  spdlog::info("objective: loss {}{}{}{}{}{}{} | D: norm {}{}{} | latent {}{}", tc.loss,
               tc.loss == "wgan-gp" ? fmt::format(" (gp {})", tc.gp_weight) : "",
               tc.r1_gamma > 0 ? fmt::format(", R1 gamma {}", tc.r1_gamma) : "",
               tc.label_smoothing > 0 ? fmt::format(", real label {}", 1 - tc.label_smoothing) : "",
               tc.instance_noise > 0 ? fmt::format(", instance noise {} annealed", tc.instance_noise) : "",
               tc.d_steps > 1 ? fmt::format(", {} D steps per G step", tc.d_steps) : "",
               use_ema ? fmt::format(", G EMA {}{}", tc.ema_decay, tc.ema_rampup ? " (ramp-up)" : "") : "",
               mc.d_norm, mc.spectral_norm ? ", spectral norm" : "", mc.minibatch_std ? ", minibatch std" : "",
               mc.latent,
               mc.conditional ? fmt::format(" | conditional on {} classes ({} D)", mc.num_classes, mc.d_conditioning)
                              : "");
  spdlog::info("device {} | {} CPU threads | G {} params, D {} params | {} steps of {} images ({} per epoch)",
               device.str(), threads, parameter_count(*g), parameter_count(*d), total, cfg.train.batch_size,
               per_epoch);

  HealthMonitor health(cfg.health, tc.loss);
  bool data_diversity_known = false;
  std::string last_row;   // the newest metrics.jsonl row, for summary.json
  std::string last_eval;  // the newest evaluation as JSON
  auto save_grid = [&](std::int64_t step) {
    torch::NoGradGuard no_grad;
    g_show->eval();
    at::Tensor images = g_show->forward(fixed_noise, fixed_labels);  // [n, C, S, S]
    if (!use_ema) g->train();
    health.check_diversity(step, images);
    Image grid = make_grid(images, cfg.output.grid_rows);
    summary.grid = run + "/samples/" + step_name(step, ".png");
    write_png(summary.grid, grid);
    publish_as(summary.grid, run + "/samples/latest.png");
  };
  auto run_eval = [&](std::int64_t step) {
    g_show->eval();
    EvalResult r = evaluator->evaluate(generator_sampler(g_show, mc, device, /*seed=*/0));
    if (!use_ema) g->train();
    last_eval = eval_json(r);
    append_line(metrics_path, "{\"step\": " + std::to_string(step) + ", \"eval\": " + last_eval + "}");
    spdlog::info("eval at step {} ({}{}):\n{}", step, use_ema ? "EMA generator" : "generator",
                 r.capped ? ", capped by eval.max_time" : "", eval_table(r));
    health.check_eval(step, r.fd);
  };
  auto save_ckpt = [&](std::int64_t step, const LoaderPosition& pos) {
    state.step = step;
    state.data = pos;
    {
      std::lock_guard<std::mutex> lock(cpu_gen.mutex());
      state.rng_state = cpu_gen.get_state();
    }
    const std::string path = checkpoint_dir(run) + "/" + step_name(step, ".pt");
    save_checkpoint(path, cfg, g, d, opt_g, opt_d, state, use_ema ? &g_ema : nullptr);
    publish_as(path, checkpoint_dir(run) + "/latest.pt");
    summary.checkpoint = path;
    if (cfg.output.keep_last > 0) {  // only now that the new one is safe
      auto all = step_checkpoints(run);
      for (size_t i = static_cast<size_t>(cfg.output.keep_last); i < all.size(); ++i) ::unlink(all[i].c_str());
    }
  };

  std::int64_t step = state.step;
  LoaderPosition pos = state.data;
  Meter meter;
  const auto start = clock::now();
  auto interval_start = start;
  std::int64_t interval_images = 0, images_done = 0;
  double train_seconds = 0;
  GanStep stepper(g, d, opt_g, opt_d, step_opts);
  if (use_ema) stepper.set_ema(g_ema, tc.ema_decay, tc.ema_rampup);

  // Divergence: a non-finite loss or gradient is caught before the optimizer applies it (on CUDA, where a per-step
  // check would stall the GPU, at the next point where statistics are read; no checkpoint is written before that).
  auto diverged = [&](char net, std::int64_t at_step) {
    std::string where = "training diverged at step " + std::to_string(at_step) + " (non-finite " +
                        std::string(1, net) + " loss or gradient)";
    std::string last = summary.checkpoint.empty() ? std::string("none yet") : summary.checkpoint;
    if (cfg.train.on_nan == "stop")
      throw UserError(kExitDiverged, where + "; last good checkpoint: " + last +
                                         " (resume from it with a lower train.lr, or set train.on_nan: rollback)");
    if (summary.checkpoint.empty())
      throw UserError(kExitDiverged, where + " before the first checkpoint; lower train.lr");
    if (summary.rollbacks >= cfg.train.max_rollbacks)
      throw UserError(kExitDiverged, where + " again after " + std::to_string(summary.rollbacks) +
                                         " rollbacks (train.max_rollbacks); last good checkpoint: " + last +
                                         "; lower train.lr");
    ++summary.rollbacks;
    loader.reset();  // stop its thread before restoring the position
    restore(summary.checkpoint, static_cast<std::uint64_t>(cfg.train.seed) * 1000003u + 7919u * summary.rollbacks +
                                    static_cast<std::uint64_t>(at_step - 1));
    spdlog::warn("{}; rolled back to {} (step {}) with a new noise seed, rollback {} of {}", where, summary.checkpoint,
                 state.step, summary.rollbacks, cfg.train.max_rollbacks);
    step = state.step;
    pos = state.data;
    meter = Meter();
    loader = make_loader();
  };

  if (step >= total) spdlog::info("the checkpoint is already at step {} of {}; nothing to train", step, total);
  while (step < total) {
    StepInput in;
    Batch batch;
    auto t0 = clock::now();
    for (int k = 0; k < tc.d_steps; ++k) {  // one real batch and noise per D update
      batch = loader->next();
      if (k == 0) t0 = clock::now();
      if (!data_diversity_known) {  // the reference for the sample-diversity check
        health.set_data_diversity(batch_diversity(batch.images.narrow(0, 0, std::min<std::int64_t>(64, batch.images.size(0)))));
        data_diversity_known = true;
      }
      const std::int64_t bk = batch.images.size(0);
      in.real.push_back(batch.images.to(device, /*non_blocking=*/true));  // [B, C, S, S]
      in.z.push_back(sample_latent(mc, bk).to(device, true));  // [B, nz], CPU generator: same on every device
      if (mc.conditional) {
        in.real_labels.push_back(batch.labels.to(device, true));          // [B]
        in.fake_labels.push_back(sample_labels(mc, bk).to(device, true));  // [B]
      }
    }
    in.noise_std = instance_noise_std(tc, step, total);
    const std::int64_t b = in.real.front().size(0);
    const bool poison = hooks.poison_d_loss && hooks.poison_d_loss(step + 1);
    StepResult r = stepper.run(in, step + 1, poison);
    if (r.status == StepResult::kDivergedD || r.status == StepResult::kDivergedG) {
      diverged(r.status == StepResult::kDivergedD ? 'D' : 'G', step + 1);
      continue;
    }
    if (r.status == StepResult::kSkipped) {  // fp16 overflow: same batch position, next noise, lower loss scale
      spdlog::debug("step {}: fp16 gradient overflow, loss scale now {}", step + 1, stepper.loss_scale());
      pos = batch.after;
      continue;
    }
    ++step;
    pos = batch.after;
    images_done += b * tc.d_steps;
    interval_images += b * tc.d_steps;
    meter.add(r.stats);
    health.add_step(r.stats);
    train_seconds += std::chrono::duration<double>(clock::now() - t0).count();

    const bool last = step == total;
    const int stop_signal = g_stop_signal.load();
    const bool out_of_time =
        max_seconds > 0 && std::chrono::duration<double>(clock::now() - start).count() >= max_seconds;
    const bool stopping = (stop_signal || out_of_time) && !last;
    const bool log_now = step % cfg.output.log_every == 0 || last || stopping;
    const bool metrics_now = step % cfg.output.metrics_every == 0 || log_now;
    const bool grid_now = step % cfg.output.sample_every == 0 || last || stopping;
    const bool ckpt_now = step % cfg.output.checkpoint_every == 0 || last || stopping;
    if (!step_opts.check_every_step && (metrics_now || grid_now || ckpt_now)) {
      auto bad = stepper.take_deferred_divergence();  // before anything is read, saved or drawn
      if (bad.first) {
        diverged(bad.second, bad.first);
        continue;
      }
    }
    if (metrics_now) {
      const auto now = clock::now();
      const double dt = std::chrono::duration<double>(now - interval_start).count();
      const double ips = dt > 0 ? interval_images / dt : 0;
      auto m = meter.mean_and_reset();
      char row[640];
      std::snprintf(row, sizeof row,
                    "{\"step\": %lld, \"epoch\": %lld, \"loss_d\": %.5f, \"loss_g\": %.5f, \"d_real\": %.5f, "
                    "\"d_fake\": %.5f, \"d_fake_g\": %.5f, \"penalty\": %.5f, \"noise_std\": %.4f, "
                    "\"img_per_s\": %.2f, \"elapsed_s\": %.2f}",
                    static_cast<long long>(step), static_cast<long long>(pos.epoch + 1), m[0], m[1], m[2], m[3],
                    m[4], m[5], in.noise_std, ips, std::chrono::duration<double>(now - start).count());
      append_line(metrics_path, row);
      last_row = row;
      if (log_now) {
        const double overall = images_done / std::max(1e-9, std::chrono::duration<double>(now - start).count());
        const double eta = (total - step) * static_cast<double>(cfg.train.batch_size) / std::max(1e-9, overall);
        spdlog::info("step {}/{} ({:.0f}%) epoch {} | loss D {:.3f} G {:.3f} | D(x) {:.2f} D(G(z)) {:.2f}/{:.2f} | "
                     "{:.0f} img/s | ETA {}",
                     step, total, 100.0 * step / total, pos.epoch + 1, m[0], m[1], m[2], m[3], m[4], ips,
                     duration(eta));
      }
      interval_start = clock::now();
      interval_images = 0;
    }
    if (grid_now) save_grid(step);
    if (ckpt_now) save_ckpt(step, pos);
    if (evaluator && (step % cfg.eval.every == 0 || last)) {
      run_eval(step);
      interval_start = clock::now();  // evaluation time is not training speed
      interval_images = 0;
    }
    if (stopping) {
      summary.exit_code = stop_signal == SIGTERM ? kExitTerminated : stop_signal ? kExitInterrupted : kExitTimeLimit;
      spdlog::warn("{} at step {}; saved checkpoint {} and grid {}; continue with --resume auto (or --resume {})",
                   stop_signal ? "stopped by signal" : "reached train.max_time = " + cfg.train.max_time, step,
                   summary.checkpoint, summary.grid, summary.checkpoint);
      break;
    }
  }
  summary.steps = step;
  summary.images_per_sec = images_done / std::max(1e-9, train_seconds);
  const double wall = std::chrono::duration<double>(clock::now() - start).count();
  summary.health_warnings = health.warnings();
  write_summary(run + "/summary.json", summary, wall, last_row, last_eval, health);
  if (source->bad_count() > 0)
    spdlog::warn("{} image files could not be decoded and were skipped", source->bad_count());
  if (summary.exit_code == 0)
    spdlog::info("done: step {} in {} ({:.1f} img/s in training steps); grid {}; checkpoint {}", step, duration(wall),
                 summary.images_per_sec, summary.grid.empty() ? "-" : summary.grid,
                 summary.checkpoint.empty() ? "-" : summary.checkpoint);
  return summary;
}

}  // namespace gan

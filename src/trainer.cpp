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
#include "gan/files.h"
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

TrainSummary train(const Config& cfg, const std::string& resume_from, const TrainHooks& hooks) {
  using clock = std::chrono::steady_clock;
  const ModelConfig& mc = cfg.model;
  const c10::Device device = resolve_device(cfg.train.device);
  const int threads = configure_threads(cfg.train.threads);
  const double max_seconds = parse_duration(cfg.train.max_time);
  g_stop_signal.store(0);

  // Data, models, checkpoint and loader first: a bad dataset or checkpoint fails before any file is written.
  auto source = open_dataset(cfg.data, mc.image_size, mc.channels);

  // Models and optimizers, seeded.
  torch::manual_seed(static_cast<std::uint64_t>(cfg.train.seed));
  Generator g(mc);
  Discriminator d(mc);
  dcgan_init(*g);
  dcgan_init(*d);
  g->to(device);
  d->to(device);
  const StepOptions step_opts = step_options(cfg.train, device);
  prepare_models(g, d, step_opts);
  auto adam = [&](torch::nn::Module& m) {
    return torch::optim::Adam(m.parameters(),
                              torch::optim::AdamOptions(cfg.train.lr).betas({cfg.train.beta1, cfg.train.beta2}));
  };
  torch::optim::Adam opt_g = adam(*g), opt_d = adam(*d);
  TrainingState state;
  state.fixed_noise = torch::randn({cfg.output.samples, mc.nz});
  auto cpu_gen = at::detail::getDefaultCPUGenerator();
  // Restores everything a checkpoint holds; the RNG is reseeded with `reseed` > 0 (divergence rollbacks).
  auto restore = [&](const std::string& path, std::uint64_t reseed) {
    load_checkpoint(path, device, g, &d, &opt_g, &opt_d, &state);
    prepare_models(g, d, step_opts);  // loaded tensors keep the layout they were saved in
    std::lock_guard<std::mutex> lock(cpu_gen.mutex());
    cpu_gen.set_state(state.rng_state);
    if (reseed) cpu_gen.set_current_seed(reseed);
  };
  if (!resume_from.empty()) restore(resume_from, 0);
  const at::Tensor fixed_noise = state.fixed_noise.to(device);
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
  if (!resume_from.empty()) {
    truncate_metrics(metrics_path, state.step);  // rows a killed process wrote after its last checkpoint
    summary.checkpoint = resume_from;
    spdlog::info("resumed {} at step {} (epoch {}, image {} of its order)", resume_from, state.step,
                 state.data.epoch + 1, state.data.cursor);
  }

  const std::int64_t per_epoch = loader->batches_per_epoch();
  const std::int64_t total = cfg.train.steps > 0 ? cfg.train.steps : cfg.train.epochs * per_epoch;
  spdlog::info("run folder {}", run);
  spdlog::info("data: {}", source->description());
  spdlog::info("step: upconv {}, channels_last {}, amp {}{}", cfg.train.upconv, step_opts.channels_last ? "on" : "off",
               step_opts.amp, device.is_cuda() ? (cfg.train.cudnn_benchmark ? ", cuDNN benchmark" : "") : "");
  spdlog::info("device {} | {} CPU threads | G {} params, D {} params | {} steps of {} images ({} per epoch)",
               device.str(), threads, parameter_count(*g), parameter_count(*d), total, cfg.train.batch_size,
               per_epoch);

  auto save_grid = [&](std::int64_t step) {
    torch::NoGradGuard no_grad;
    g->eval();
    at::Tensor images = g->forward(fixed_noise);
    g->train();
    Image grid = make_grid(images, cfg.output.grid_rows);
    summary.grid = run + "/samples/" + step_name(step, ".png");
    write_png(summary.grid, grid);
    publish_as(summary.grid, run + "/samples/latest.png");
  };
  auto save_ckpt = [&](std::int64_t step, const LoaderPosition& pos) {
    state.step = step;
    state.data = pos;
    {
      std::lock_guard<std::mutex> lock(cpu_gen.mutex());
      state.rng_state = cpu_gen.get_state();
    }
    const std::string path = checkpoint_dir(run) + "/" + step_name(step, ".pt");
    save_checkpoint(path, cfg, g, d, opt_g, opt_d, state);
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
    Batch batch = loader->next();
    const auto t0 = clock::now();
    at::Tensor real = batch.images.to(device, /*non_blocking=*/true);  // [B, C, S, S]
    const std::int64_t b = real.size(0);
    at::Tensor z = torch::randn({b, mc.nz}).to(device, true);  // [B, nz], CPU generator: same on every device
    const bool poison = hooks.poison_d_loss && hooks.poison_d_loss(step + 1);
    StepResult r = stepper.run(real, z, step + 1, poison);
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
    images_done += b;
    interval_images += b;
    meter.add(r.stats);
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
      char row[512];
      std::snprintf(row, sizeof row,
                    "{\"step\": %lld, \"epoch\": %lld, \"loss_d\": %.5f, \"loss_g\": %.5f, \"d_real\": %.5f, "
                    "\"d_fake\": %.5f, \"d_fake_g\": %.5f, \"img_per_s\": %.2f, \"elapsed_s\": %.2f}",
                    static_cast<long long>(step), static_cast<long long>(pos.epoch + 1), m[0], m[1], m[2], m[3],
                    m[4], ips, std::chrono::duration<double>(now - start).count());
      append_line(metrics_path, row);
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
  if (source->bad_count() > 0)
    spdlog::warn("{} image files could not be decoded and were skipped", source->bad_count());
  if (summary.exit_code == 0)
    spdlog::info("done: step {} in {} ({:.1f} img/s in training steps); grid {}; checkpoint {}", step, duration(wall),
                 summary.images_per_sec, summary.grid.empty() ? "-" : summary.grid,
                 summary.checkpoint.empty() ? "-" : summary.checkpoint);
  return summary;
}

}  // namespace gan

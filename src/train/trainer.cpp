// The training loop. Its parts live elsewhere, one concern per file: the run folder and what is written into it
// (run_folder.cpp), checkpoints of the trainable state (snapshot.cpp), the step itself (step.cpp). This file sets
// them up and runs the loop, which reads top to bottom in Trainer::run().
#include "gan/trainer.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>

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
#include "gan/run_folder.h"
#include "gan/snapshot.h"
#include "gan/step.h"

namespace gan {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> g_stop_signal{0};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string duration(double seconds) {
  long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

// Interval sums of per-step scalars, kept on the device so that steps never wait for the host.
struct Meter {
  at::Tensor sums;  // [loss_d, loss_g, d_real, d_fake, d_fake_after, penalty]
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

std::string health_json(const HealthMonitor& health) {
  char h[160];
  std::snprintf(h, sizeof h, "{\"warnings\": %d, \"sample_diversity\": %.5f}", health.warnings(),
                health.last_diversity());
  return h;
}

class Trainer {
 public:
  Trainer(const Config& cfg, const std::string& resume_from, const TrainHooks& hooks);
  TrainSummary run();

 private:
  std::unique_ptr<BatchLoader> make_loader();
  void log_setup();
  StepInput next_input(LoaderPosition& after, Clock::time_point& t0);
  void write_metrics(bool log_now, double noise_std);
  void write_grid();
  void write_checkpoint();
  void evaluate();
  void roll_back(char net, std::int64_t at_step);

  // What the run is.
  Config cfg_;
  const TrainHooks& hooks_;
  const c10::Device device_;
  const int threads_;
  const double max_seconds_;
  std::unique_ptr<ImageSource> source_;
  StepOptions step_opts_;
  Networks nets_;
  TrainingState state_;
  at::Tensor fixed_noise_, fixed_labels_;  // on the device
  std::unique_ptr<Evaluator> evaluator_;
  std::unique_ptr<BatchLoader> loader_;
  std::unique_ptr<RunFolder> folder_;
  std::int64_t total_ = 0, per_epoch_ = 0;

  // Where it is.
  std::int64_t step_ = 0;
  LoaderPosition pos_;
  TrainSummary summary_;
  HealthMonitor health_;
  bool data_diversity_known_ = false;
  std::string last_row_, last_eval_;  // the newest metrics row and evaluation, for summary.json
  Meter meter_;
  Clock::time_point start_, interval_start_;
  std::int64_t interval_images_ = 0, images_done_ = 0;
  double train_seconds_ = 0;
};

Trainer::Trainer(const Config& cfg_in, const std::string& resume_from, const TrainHooks& hooks)
    : cfg_(cfg_in), hooks_(hooks), device_(resolve_device(cfg_in.train.device)),
      threads_(configure_threads(cfg_in.train.threads)), max_seconds_(parse_duration(cfg_in.train.max_time)),
      health_(cfg_in.health, cfg_in.train.loss) {
  const ModelConfig& mc = cfg_.model;
  // Data, models, checkpoint and loader first: a bad dataset or checkpoint fails before any file is written.
  source_ = open_dataset(cfg_.data, mc.image_size, mc.channels);
  if (mc.conditional) {
    if (source_->num_classes() < 2)
      throw UserError(kExitData, "model.conditional needs class labels, but " + source_->description() +
                                     " has none: use IDX data with its labels file (data.labels) or a folder with "
                                     "one sub-folder per class");
    if (cfg_.model.num_classes == 0) cfg_.model.num_classes = source_->num_classes();
    if (cfg_.model.num_classes != source_->num_classes())
      throw UserError(kExitUsage, "model.num_classes = " + std::to_string(cfg_.model.num_classes) +
                                      " but the data has " + std::to_string(source_->num_classes()) +
                                      " classes; set it to 0 (from the data)");
  }
  step_opts_ = step_options(cfg_.train, device_);
  if (hooks_.deferred_divergence_check) step_opts_.check_every_step = false;
  nets_ = build_networks(cfg_, device_, step_opts_);
  // Fixed grid noise; a conditional grid has one row per class.
  const int grid_n = mc.conditional ? mc.num_classes * cfg_.output.grid_rows : cfg_.output.samples;
  state_.fixed_noise = sample_latent(mc, grid_n);
  if (mc.conditional) state_.fixed_labels = torch::arange(grid_n, torch::kLong).div(cfg_.output.grid_rows, "floor");
  state_.class_names = source_->class_names();
  if (!resume_from.empty()) {
    restore_snapshot(nullptr, resume_from, device_, step_opts_, nets_, state_);
    summary_.checkpoint = resume_from;
  }
  // Periodic evaluation: the extractor and the real statistics are prepared (or read from the cache) now, so that a
  // bad eval.extractor fails before training starts.
  if (cfg_.eval.every > 0) evaluator_ = std::make_unique<Evaluator>(cfg_, device_, source_.get());
  fixed_noise_ = state_.fixed_noise.to(device_);
  if (state_.fixed_labels.defined()) fixed_labels_ = state_.fixed_labels.to(device_);
  step_ = state_.step;
  pos_ = state_.data;
  loader_ = make_loader();
  per_epoch_ = loader_->batches_per_epoch();
  total_ = cfg_.train.steps > 0 ? cfg_.train.steps : cfg_.train.epochs * per_epoch_;

  // The run folder: created only once everything above has been checked.
  const std::string run = resume_from.empty() ? new_run_dir(cfg_) : run_dir_of_checkpoint(resume_from);
  folder_ = std::make_unique<RunFolder>(run, /*writer=*/true, cfg_, resume_from.empty() ? -1 : state_.step);
  summary_.run_dir = run;
  if (!resume_from.empty())
    spdlog::info("resumed {} at step {} (epoch {}, image {} of its order)", resume_from, state_.step,
                 state_.data.epoch + 1, state_.data.cursor);
  log_setup();
}

std::unique_ptr<BatchLoader> Trainer::make_loader() {
  return std::make_unique<BatchLoader>(*source_, cfg_.train.batch_size, static_cast<std::uint64_t>(cfg_.train.seed),
                                       pos_, cfg_.data.workers, /*prefetch=*/3, /*pin_memory=*/device_.is_cuda());
}

void Trainer::log_setup() {
  const ModelConfig& mc = cfg_.model;
  const TrainConfig& tc = cfg_.train;
  spdlog::info("run folder {}", folder_->path());
  spdlog::info("data: {}", source_->description());
  const std::string downconv = step_opts_.downconv == DownconvMode::kDirect && tc.downconv != "direct"
                                   ? "direct (gradient penalty)"
                                   : tc.downconv;
  spdlog::info("step: upconv {}, downconv {}, channels_last {}, amp {}{}", tc.upconv, downconv,
               step_opts_.channels_last ? "on" : "off", step_opts_.amp,
               device_.is_cuda() ? (tc.cudnn_benchmark ? ", cuDNN benchmark" : "") : "");
  spdlog::info("objective: loss {}{}{}{}{}{}{} | D: norm {}{}{} | latent {}{}", tc.loss,
               tc.loss == "wgan-gp" ? fmt::format(" (gp {})", tc.gp_weight) : "",
               tc.r1_gamma > 0 ? fmt::format(", R1 gamma {}", tc.r1_gamma) : "",
               tc.label_smoothing > 0 ? fmt::format(", real label {}", 1 - tc.label_smoothing) : "",
               tc.instance_noise > 0 ? fmt::format(", instance noise {} annealed", tc.instance_noise) : "",
               tc.d_steps > 1 ? fmt::format(", {} D steps per G step", tc.d_steps) : "",
               nets_.g_ema ? fmt::format(", G EMA {}{}", tc.ema_decay, tc.ema_rampup ? " (ramp-up)" : "") : "",
               mc.d_norm, mc.spectral_norm ? ", spectral norm" : "", mc.minibatch_std ? ", minibatch std" : "",
               mc.latent,
               mc.conditional ? fmt::format(" | conditional on {} classes ({} D)", mc.num_classes, mc.d_conditioning)
                              : "");
  spdlog::info("device {} | {} CPU threads | G {} params, D {} params | {} steps of {} images ({} per epoch)",
               device_.str(), threads_, parameter_count(*nets_.g), parameter_count(*nets_.d), total_,
               tc.batch_size, per_epoch_);
}

// The next step's input: one real batch and its noise per D update. `after` is the data position once consumed; `t0`
// is when the first batch was there (the step's time does not count waiting for data).
StepInput Trainer::next_input(LoaderPosition& after, Clock::time_point& t0) {
  const ModelConfig& mc = cfg_.model;
  StepInput in;
  for (int k = 0; k < cfg_.train.d_steps; ++k) {
    Batch batch = loader_->next();
    if (k == 0) t0 = Clock::now();
    if (!data_diversity_known_) {  // the reference for the sample-diversity check
      health_.set_data_diversity(
          batch_diversity(batch.images.narrow(0, 0, std::min<std::int64_t>(64, batch.images.size(0)))));
      data_diversity_known_ = true;
    }
    const std::int64_t b = batch.images.size(0);
    in.real.push_back(batch.images.to(device_, /*non_blocking=*/true));  // [B, C, S, S]
    in.z.push_back(sample_latent(mc, b).to(device_, true));  // [B, nz], CPU generator: same on every device
    if (mc.conditional) {
      in.real_labels.push_back(batch.labels.to(device_, true));          // [B]
      in.fake_labels.push_back(sample_labels(mc, b).to(device_, true));  // [B]
    }
    after = batch.after;
  }
  in.noise_std = instance_noise_std(cfg_.train, step_, total_);
  return in;
}

TrainSummary Trainer::run() {
  const TrainConfig& tc = cfg_.train;
  const OutputConfig& out = cfg_.output;
  GanStep stepper(nets_.g, nets_.d, *nets_.opt_g, *nets_.opt_d, step_opts_);
  if (nets_.g_ema) stepper.set_ema(nets_.g_ema, tc.ema_decay, tc.ema_rampup);
  start_ = interval_start_ = Clock::now();
  if (step_ >= total_) spdlog::info("the checkpoint is already at step {} of {}; nothing to train", step_, total_);

  while (step_ < total_) {
    // One step: D update(s), then the G update.
    Clock::time_point t0;
    LoaderPosition after;
    StepInput in = next_input(after, t0);
    const bool poison = hooks_.poison_d_loss && hooks_.poison_d_loss(step_ + 1);
    StepResult r = stepper.run(in, step_ + 1, poison);
    if (r.status == StepResult::kDivergedD || r.status == StepResult::kDivergedG) {
      roll_back(r.status == StepResult::kDivergedD ? 'D' : 'G', step_ + 1);  // or throws
      continue;
    }
    if (r.status == StepResult::kSkipped) {  // fp16 overflow: same batch position, next noise, lower loss scale
      spdlog::debug("step {}: fp16 gradient overflow, loss scale now {}", step_ + 1, stepper.loss_scale());
      pos_ = after;
      continue;
    }
    ++step_;
    pos_ = after;
    const std::int64_t images = in.real.front().size(0) * tc.d_steps;
    images_done_ += images;
    interval_images_ += images;
    meter_.add(r.stats);
    health_.add_step(r.stats);
    train_seconds_ += seconds_since(t0);

    // What to write after it.
    const bool last = step_ == total_;
    const int stop_signal = g_stop_signal.load();
    const bool out_of_time = max_seconds_ > 0 && seconds_since(start_) >= max_seconds_;
    const bool stopping = (stop_signal || out_of_time) && !last;
    const bool log_now = step_ % out.log_every == 0 || last || stopping;
    const bool metrics_now = step_ % out.metrics_every == 0 || log_now;
    const bool grid_now = step_ % out.sample_every == 0 || last || stopping;
    const bool ckpt_now = step_ % out.checkpoint_every == 0 || last || stopping;
    const bool eval_now = evaluator_ && (step_ % cfg_.eval.every == 0 || last);
    if (!step_opts_.check_every_step && (metrics_now || grid_now || ckpt_now)) {
      auto bad = stepper.take_deferred_divergence();  // before anything is read, saved or drawn
      if (bad.first) {
        roll_back(bad.second, bad.first);  // or throws
        continue;
      }
    }
    if (metrics_now) write_metrics(log_now, in.noise_std);
    if (grid_now) write_grid();
    if (ckpt_now) write_checkpoint();
    if (eval_now) evaluate();
    if (stopping) {
      summary_.exit_code = stop_signal == SIGTERM ? kExitTerminated : stop_signal ? kExitInterrupted : kExitTimeLimit;
      spdlog::warn("{} at step {}; saved checkpoint {} and grid {}; continue with --resume auto (or --resume {})",
                   stop_signal ? "stopped by signal" : "reached train.max_time = " + tc.max_time, step_,
                   summary_.checkpoint, summary_.grid, summary_.checkpoint);
      break;
    }
  }

  // The end: summary.json and the last line.
  summary_.steps = step_;
  summary_.images_per_sec = images_done_ / std::max(1e-9, train_seconds_);
  summary_.health_warnings = health_.warnings();
  summary_.eval_json = last_eval_;
  RunSummary rs;
  rs.checkpoint = summary_.checkpoint;
  rs.grid = summary_.grid;
  rs.steps = step_;
  rs.exit_code = summary_.exit_code;
  rs.rollbacks = summary_.rollbacks;
  rs.wall_s = seconds_since(start_);
  rs.images_per_sec = summary_.images_per_sec;
  rs.last_metrics = last_row_;
  rs.last_eval = last_eval_;
  rs.health = health_json(health_);
  folder_->write_summary(rs);
  if (source_->bad_count() > 0)
    spdlog::warn("{} image files could not be decoded and were skipped", source_->bad_count());
  if (summary_.exit_code == 0)
    spdlog::info("done: step {} in {} ({:.1f} img/s in training steps); grid {}; checkpoint {}", step_,
                 duration(rs.wall_s), summary_.images_per_sec, summary_.grid.empty() ? "-" : summary_.grid,
                 summary_.checkpoint.empty() ? "-" : summary_.checkpoint);
  return summary_;
}

void Trainer::write_metrics(bool log_now, double noise_std) {
  const double dt = seconds_since(interval_start_);
  const double ips = dt > 0 ? interval_images_ / dt : 0;
  const double elapsed = seconds_since(start_);
  auto m = meter_.mean_and_reset();
  char row[640];
  std::snprintf(row, sizeof row,
                "{\"step\": %lld, \"epoch\": %lld, \"loss_d\": %.5f, \"loss_g\": %.5f, \"d_real\": %.5f, "
                "\"d_fake\": %.5f, \"d_fake_g\": %.5f, \"penalty\": %.5f, \"noise_std\": %.4f, "
                "\"img_per_s\": %.2f, \"elapsed_s\": %.2f}",
                static_cast<long long>(step_), static_cast<long long>(pos_.epoch + 1), m[0], m[1], m[2], m[3], m[4],
                m[5], noise_std, ips, elapsed);
  folder_->append_metrics(row);
  last_row_ = row;
  if (log_now) {
    const double overall = images_done_ / std::max(1e-9, elapsed);
    const double eta = (total_ - step_) * static_cast<double>(cfg_.train.batch_size) / std::max(1e-9, overall);
    spdlog::info("step {}/{} ({:.0f}%) epoch {} | loss D {:.3f} G {:.3f} | D(x) {:.2f} D(G(z)) {:.2f}/{:.2f} | "
                 "{:.0f} img/s | ETA {}",
                 step_, total_, 100.0 * step_ / total_, pos_.epoch + 1, m[0], m[1], m[2], m[3], m[4], ips,
                 duration(eta));
  }
  interval_start_ = Clock::now();
  interval_images_ = 0;
}

void Trainer::write_grid() {
  torch::NoGradGuard no_grad;
  Generator& shown = nets_.shown();
  shown->eval();
  at::Tensor images = shown->forward(fixed_noise_, fixed_labels_);  // [n, C, S, S]
  if (!nets_.g_ema) nets_.g->train();
  health_.check_diversity(step_, images);
  summary_.grid = folder_->write_grid(step_, make_grid(images, cfg_.output.grid_rows));
}

void Trainer::write_checkpoint() {
  const std::string path = folder_->checkpoint_path(step_);
  save_snapshot(path, cfg_, nets_, state_, step_, pos_);
  folder_->publish_checkpoint(path, cfg_.output.keep_last);
  summary_.checkpoint = path;
}

void Trainer::evaluate() {
  Generator& shown = nets_.shown();
  shown->eval();
  EvalResult r = evaluator_->evaluate(generator_sampler(shown, cfg_.model, device_, /*seed=*/0));
  if (!nets_.g_ema) nets_.g->train();
  last_eval_ = eval_json(r);
  folder_->append_metrics("{\"step\": " + std::to_string(step_) + ", \"eval\": " + last_eval_ + "}");
  spdlog::info("eval at step {} ({}{}):\n{}", step_, nets_.g_ema ? "EMA generator" : "generator",
               r.capped ? ", capped by eval.max_time" : "", eval_table(r));
  health_.check_eval(step_, r.fd);
  interval_start_ = Clock::now();  // evaluation time is not training speed
  interval_images_ = 0;
}

// Divergence: a non-finite loss or gradient is caught before the optimizer applies it (on CUDA, where a per-step
// check would stall the GPU, at the next point where statistics are read; no checkpoint is written before that).
// Stops (train.on_nan: stop) or goes back to the last checkpoint with new noise (rollback).
void Trainer::roll_back(char net, std::int64_t at_step) {
  const std::string where = "training diverged at step " + std::to_string(at_step) + " (non-finite " +
                            std::string(1, net) + " loss or gradient)";
  const std::string last = summary_.checkpoint.empty() ? std::string("none yet") : summary_.checkpoint;
  if (cfg_.train.on_nan == "stop")
    throw UserError(kExitDiverged, where + "; last good checkpoint: " + last +
                                       " (resume from it with a lower train.lr, or set train.on_nan: rollback)");
  if (summary_.checkpoint.empty())
    throw UserError(kExitDiverged, where + " before the first checkpoint; lower train.lr");
  if (summary_.rollbacks >= cfg_.train.max_rollbacks)
    throw UserError(kExitDiverged, where + " again after " + std::to_string(summary_.rollbacks) +
                                       " rollbacks (train.max_rollbacks); last good checkpoint: " + last +
                                       "; lower train.lr");
  ++summary_.rollbacks;
  loader_.reset();  // stop its thread before restoring the position
  const std::uint64_t reseed = static_cast<std::uint64_t>(cfg_.train.seed) * 1000003u + 7919u * summary_.rollbacks +
                               static_cast<std::uint64_t>(at_step - 1);
  restore_snapshot(nullptr, summary_.checkpoint, device_, step_opts_, nets_, state_, reseed);
  spdlog::warn("{}; rolled back to {} (step {}) with a new noise seed, rollback {} of {}", where, summary_.checkpoint,
               state_.step, summary_.rollbacks, cfg_.train.max_rollbacks);
  step_ = state_.step;
  pos_ = state_.data;
  meter_ = Meter();
  loader_ = make_loader();
}

}  // namespace

void request_stop(int signal_number) { g_stop_signal.store(signal_number); }

TrainSummary train(const Config& cfg, const std::string& resume_from, const TrainHooks& hooks) {
  g_stop_signal.store(0);
  Trainer trainer(cfg, resume_from, hooks);
  return trainer.run();
}

}  // namespace gan

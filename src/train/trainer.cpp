// The training loop. Its parts live elsewhere, one concern per file: the run folder and what is written into it
// (run_folder.cpp), checkpoints of the trainable state (snapshot.cpp), the step itself (step.cpp), the processes of a
// distributed run (distributed.cpp), evaluation during training and what it decides (trainer_eval.cpp; the Trainer
// class is declared in trainer_impl.h). This file sets them up and runs the loop, which reads top to bottom in
// Trainer::run(). In a distributed run every rank runs this same loop on its slice of each global batch; rank 0 alone
// writes the run folder, draws grids and evaluates.
#include "gan/trainer.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <functional>
#include <thread>
#include <tuple>

#include "gan/augment.h"
#include "gan/checkpoint.h"
#include "gan/cpu_allocator.h"
#include "gan/datasets.h"
#include "gan/distributed.h"
#include "gan/errors.h"
#include "gan/eval.h"
#include "gan/files.h"
#include "gan/health.h"
#include "gan/image.h"
#include "gan/json.h"
#include "gan/loader.h"
#include "gan/models.h"
#include "gan/platform.h"
#include "gan/progress.h"
#include "gan/report.h"
#include "gan/run_folder.h"
#include "gan/self_check.h"
#include "gan/snapshot.h"
#include "gan/step.h"
#include "gan/weights.h"
#include "trainer_impl.h"

namespace gan {
namespace {

using detail::Clock;

std::atomic<int> g_stop_signal{0};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string duration(double seconds) {
  long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

std::string health_json(const HealthMonitor& health) {
  char h[160];
  std::snprintf(h, sizeof h, "{\"warnings\": %d, \"sample_diversity\": %.5f}", health.warnings(),
                health.last_diversity());
  return h;
}

// Torch's CPU threads and the data loader's: all cores by default, shared by the processes on this machine.
int default_threads(int configured, DistContext* dist) {
  if (configured > 0) return configured;
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  return std::max(1, cores / (dist ? dist->local_world_size() : 1));
}

}  // namespace

namespace detail {

Trainer::Trainer(const Config& cfg_in, const std::string& resume_from, const TrainHooks& hooks, DistContext* dist,
                 const InitWeights& init)
    : cfg_(cfg_in), hooks_(hooks), dist_(dist), main_(!dist || dist->is_main()), rank_(dist ? dist->rank() : 0),
      world_(dist ? dist->world_size() : 1), device_(dist ? dist->device() : resolve_device(cfg_in.train.device)),
      threads_(configure_threads(default_threads(cfg_in.train.threads, dist))),
      max_seconds_(parse_duration(cfg_in.train.max_time)), health_(cfg_in.health, cfg_in.train.loss, cfg_in.train.augment) {
  const ModelConfig& mc = cfg_.model;
  if (cfg_.train.batch_size % world_ != 0)
    throw UserError(kExitUsage, "train.batch_size = " + std::to_string(cfg_.train.batch_size) +
                                    " cannot be split evenly over the " + std::to_string(world_) +
                                    " processes of this run; use a multiple of " + std::to_string(world_));
  // Data, models, checkpoint and loader first: a bad dataset or checkpoint fails before any file is written.
  open_data();
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
  step_opts_ = step_options(cfg_.train, device_, world_);
  device_maths_note_ = ensure_sound_device_maths(device_);  // CUDA; the CPU was checked at start (cli.cpp)
  if (hooks_.deferred_divergence_check) step_opts_.check_every_step = false;
  nets_ = build_networks(cfg_, device_, step_opts_);
  if (dist_ && mc.sync_bn) {  // BatchNorm over the global batch
    nets_.g->set_batch_stats_reducer(dist_->sum_function());
    nets_.d->set_batch_stats_reducer(dist_->sum_function());
  }
  // Fixed grid noise; a conditional grid has one row per class.
  const int grid_n = mc.conditional ? mc.num_classes * cfg_.output.grid_rows : cfg_.output.samples;
  state_.fixed_noise = sample_latent(mc, grid_n);
  if (mc.conditional) state_.fixed_labels = torch::arange(grid_n, torch::kLong).div(cfg_.output.grid_rows, "floor");
  state_.class_names = source_->class_names();
  state_.world_size = world_;
  if (resume_from.empty() && main_) {  // --init-from: another tool's weights instead of the DCGAN init
    if (!init.g.empty()) {
      load_state_dict(*nets_.g, load_weights_file(init.g), "--init-from " + init.g + " (generator)");
      if (nets_.g_ema) copy_weights(*nets_.g, *nets_.g_ema);
      spdlog::info("generator initialised from {}", init.g);
    }
    if (!init.d.empty()) {
      load_state_dict(*nets_.d, load_weights_file(init.d), "--init-from " + init.d + " (discriminator)");
      spdlog::info("discriminator initialised from {}", init.d);
    }
  }
  if (!resume_from.empty()) {
    restore(resume_from, 0);
    last_eval_ = state_.last_eval;
    summary_.checkpoint = resume_from;
    if (dist_) dist_->set_last_checkpoint(resume_from);
  }
  share_weights();
  choose_upconv_forms();
  // Periodic evaluation: the extractor and the real statistics are prepared (or read from the cache) now, so that a
  // bad eval.extractor fails before training starts. Rank 0 evaluates; the others wait for it.
  // A dataset without classes cannot train the default extractor (the classifier): such a run trains without
  // periodic evaluation and says so, rather than refusing, since configs like folder-64.cfg serve folders of either
  // kind; an extractor given by path is used on any dataset.
  const bool no_classifier = cfg_.eval.extractor == "classifier" && source_->num_classes() < 2;
  evaluates_ = cfg_.eval.every > 0 && !no_classifier;
  if (evaluates_) {
    auto prepare = [&] { evaluator_ = std::make_unique<Evaluator>(cfg_, device_, source_.get()); };
    if (dist_) dist_->run_on_main("preparing the evaluation", prepare);
    else prepare();
  }
  fixed_noise_ = state_.fixed_noise.to(device_);
  if (state_.fixed_labels.defined()) fixed_labels_ = state_.fixed_labels.to(device_);
  step_ = state_.step;
  pos_ = state_.data;
  loader_ = make_loader();
  per_epoch_ = loader_->batches_per_epoch();
  per_step_ = static_cast<std::int64_t>(cfg_.train.batch_size) * cfg_.train.d_steps;
  total_ = cfg_.train.steps > 0  ? cfg_.train.steps
           : cfg_.train.kimg > 0 ? static_cast<std::int64_t>(std::ceil(cfg_.train.kimg * 1000.0 / per_step_ - 1e-9))
                                 : cfg_.train.epochs * per_epoch_;
  const TrainConfig& tc = cfg_.train;
  lr_g0_ = tc.lr_g > 0 ? tc.lr_g : tc.lr;
  lr_d0_ = tc.lr_d > 0 ? tc.lr_d : tc.lr;
  beta2_g0_ = tc.beta2_g >= 0 ? tc.beta2_g : tc.beta2;
  beta2_d0_ = tc.beta2_d >= 0 ? tc.beta2_d : tc.beta2;
  load_augment_state();
  if (tc.augment == "auto" && ada_on() && step_opts_.cuda_graph) {  // augmenting from the start: nothing to capture
    step_opts_.cuda_graph = false;
    graph_blocker_ = fmt::format("train.augment auto runs ADA from step {}", ada_from_);
  }

  // The run folder: created only once everything above has been checked. Rank 0 names it (a new run's name has the
  // time in it) and alone writes into it.
  std::string run = resume_from.empty() ? new_run_dir(cfg_) : run_dir_of_checkpoint(resume_from);
  if (dist_) run = dist_->broadcast_bytes(run);
  folder_ = std::make_unique<RunFolder>(run, main_, cfg_, resume_from.empty() ? -1 : state_.step);
  summary_.run_dir = run;
  if (cfg_.eval.every > 0 && no_classifier && main_)  // after the folder is made, so that train.log has it too
    spdlog::warn("eval.every {} but the data ({}) has no classes (sub-folders or labels) to train the FD classifier "
                 "on: no periodic evaluation and no best.pt; to score it, set eval.extractor to pytorch-fid's weights "
                 "file pt_inception-2015-12-05-6726825d.pth (the standard FID) or to a TorchScript feature extractor",
                 cfg_.eval.every, cfg_.data.path.empty() ? cfg_.data.source : cfg_.data.path);
  const std::string best = checkpoint_dir(run) + "/best.pt";
  std::error_code ec;
  if (!resume_from.empty() && main_ && std::filesystem::exists(best, ec)) {  // what a new evaluation must beat
    std::int64_t best_step = 0;
    std::string scores;
    double fd = NAN;
    try {  // a damaged best.pt must not stop the run: the next evaluation writes a new one
      scores = read_checkpoint_eval(best, &best_step);
      fd = parse_json(scores).num("fd", NAN);
    } catch (const std::exception& e) {
      spdlog::warn("ignoring {} ({}); the next evaluation replaces it", best, e.what());
    }
    if (std::isfinite(fd)) {
      best_fd_ = fd;
      best_eval_ = "{\"step\": " + std::to_string(best_step) + ", \"checkpoint\": " + json_quote(best) +
                   ", \"scores\": " + scores + "}";
      health_.check_eval(best_step, fd);
    }
  }
  if (dist_) {
    reducer_ = std::make_unique<GradientReducer>(*dist_, nets_.d->parameters(), nets_.g->parameters(),
                                                 cfg_.dist.bucket_mb, cfg_.dist.overlap);
    vote_ = std::make_unique<StepVote>(*dist_, /*lag_one_step=*/device_.is_cuda());
  }
  if (!resume_from.empty())
    spdlog::info("resumed {} at step {} (epoch {}, image {} of its order){}", resume_from, state_.step,
                 state_.data.epoch + 1, state_.data.cursor,
                 state_.world_size != world_ ? fmt::format("; it was saved by {} process{}, this run has {}",
                                                           state_.world_size, state_.world_size == 1 ? "" : "es",
                                                           world_)
                                             : "");
  log_setup();
}

// train.upconv / train.downconv auto on the CPU in float32: each stride-2 layer of G and D takes the form measured
// fastest for this batch (rank 0 measures, the others take its choice), or the forms in the checkpoint a resumed run
// continues, so that it computes as the run that saved it did. bf16 runs G's and D's convolutions through oneDNN,
// where the fixed rules stay.
void Trainer::choose_upconv_forms() {
  if (device_.is_cuda() || step_opts_.amp != "off") return;
  auto choose = [&](std::string* kept, const char* what, const std::function<std::string()>& measure,
                    const std::function<void(const std::string&)>& set) {
    std::string forms = *kept;
    if (!forms.empty()) {
      try {
        set(forms);
        forms_report_.push_back(fmt::format("{} as measured by the run that saved the checkpoint: {}", what, forms));
      } catch (const std::invalid_argument&) {
        forms.clear();  // a checkpoint of another shape of network: measure
      }
    }
    if (forms.empty()) {
      if (main_) forms = measure();
      if (dist_) forms = dist_->broadcast_bytes(forms);
      set(forms);
    }
    *kept = forms;
  };
  const std::int64_t batch = cfg_.train.batch_size / world_;
  if (step_opts_.upconv == UpconvMode::kAuto)
    choose(
        &state_.upconv_forms, "upconv",
        [&] {
          std::vector<std::string> lines;
          const std::string f = tune_upconv(*nets_.g, batch, step_opts_.channels_last, &lines);
          std::string all;
          for (const auto& l : lines) all += (all.empty() ? "" : " | ") + l;
          forms_report_.push_back("upconv auto, per generator layer (input side, form; forward + backward): " + all);
          return f;
        },
        [&](const std::string& f) { set_upconv_forms(*nets_.g, f); });
  if (step_opts_.downconv == DownconvMode::kAuto)
    choose(
        &state_.downconv_forms, "downconv",
        [&] {
          std::vector<std::string> lines;
          const std::string f = tune_downconv(*nets_.d, batch, &lines);
          std::string all;
          for (const auto& l : lines) all += (all.empty() ? "" : " | ") + l;
          forms_report_.push_back("downconv auto, per discriminator layer (input side, form; forward + backward): " +
                                  all);
          return f;
        },
        [&](const std::string& f) { set_downconv_forms(*nets_.d, f); });
  release_freed_memory();
}

// Rank 0 opens the data first (building a folder's cache when needed), then the others, which find it built.
void Trainer::open_data() {
  auto open = [&] { source_ = open_dataset(cfg_.data, cfg_.model.image_size, cfg_.model.channels); };
  if (dist_) dist_->run_on_main("opening the data", open);
  if (!source_) open();
}

// The running step's fp16 loss scale into state_, for the checkpoint.
void Trainer::store_step_state() {
  state_.loss_scale = 0;
  state_.loss_scale_good_steps = 0;
  if (stepper_ && step_opts_.amp == "fp16")
    std::tie(state_.loss_scale, state_.loss_scale_good_steps) = stepper_->loss_scale_state();
}

// Restores the run from a checkpoint: rank 0 reads the file and sends its bytes to the others, which need not see it.
void Trainer::restore(const std::string& path, std::uint64_t reseed) {
  auto restore_from = [&](const std::string* bytes) {
    restore_snapshot(bytes, path, device_, step_opts_, nets_, state_, reseed);
    if (stepper_) stepper_->set_loss_scale_state(state_.loss_scale, state_.loss_scale_good_steps);
  };
  if (!dist_) return restore_from(nullptr);
  std::string bytes;
  if (main_) {
    try {
      bytes = read_file(path);
    } catch (const UserError& e) {
      bytes.clear();  // the others learn of it from the empty file and stop too
      dist_->broadcast_bytes(bytes);
      throw;
    }
  }
  bytes = dist_->broadcast_bytes(bytes);
  if (bytes.empty()) throw UserError(kExitCheckpoint, "rank 0 could not read the checkpoint " + path);
  restore_from(&bytes);
}

// Every rank starts from rank 0's weights (they are equal already when all are seeded alike: this makes sure).
void Trainer::share_weights() {
  if (!dist_) return;
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> all;
  for (auto* m : {static_cast<torch::nn::Module*>(nets_.g.get()), static_cast<torch::nn::Module*>(nets_.d.get())}) {
    for (auto& p : m->parameters()) all.push_back(p);
    for (auto& b : m->buffers()) all.push_back(b);
  }
  if (nets_.g_ema) {
    for (auto& p : nets_.g_ema->parameters()) all.push_back(p);
    for (auto& b : nets_.g_ema->buffers()) all.push_back(b);
  }
  dist_->broadcast(all);
}

std::unique_ptr<BatchLoader> Trainer::make_loader() {
  return std::make_unique<BatchLoader>(*source_, cfg_.train.batch_size, static_cast<std::uint64_t>(cfg_.train.seed),
                                       pos_, default_threads(cfg_.data.workers, dist_), /*prefetch=*/3,
                                       /*pin_memory=*/device_.is_cuda(), rank_, world_, cfg_.data.xflip);
}

void Trainer::log_setup() {
  const ModelConfig& mc = cfg_.model;
  const TrainConfig& tc = cfg_.train;
  spdlog::info("run folder {}", folder_->path());
  spdlog::info("data: {}", source_->description());
  const bool cpu_bf16 = step_opts_.amp == "bf16" && !device_.is_cuda();
  const bool penalty = tc.loss == "wgan-gp" || tc.r1_gamma > 0 || tc.r2_gamma > 0;
  const std::string downconv = step_opts_.downconv != DownconvMode::kDirect || tc.downconv == "direct" ? tc.downconv
                               : penalty ? "direct (gradient penalty)"
                                         : "direct (bf16 through oneDNN)";
  std::string graphs;  // train.cuda_graphs on CUDA: captured after the warm-up steps, or why not
  const std::string blocker = graph_blocker_.empty() ? cuda_graph_blocker(tc, world_) : graph_blocker_;
  if (device_.is_cuda())
    graphs = step_opts_.cuda_graph        ? fmt::format(", CUDA graph captured after {} eager steps", kGraphWarmup)
             : tc.cuda_graphs == "off"   ? ", CUDA graphs off (train.cuda_graphs)"
                                         : ", CUDA graphs off: " + blocker;
  // Every process finds the same on one machine: rank 0 says it (the others' warnings would reach the console too).
  for (const std::string& note : {cpu_maths_note(), device_maths_note_})
    if (!note.empty()) main_ ? spdlog::warn("{}", note) : spdlog::debug("{}", note);
  if (!step_opts_.amp_note.empty()) spdlog::warn("{}", step_opts_.amp_note);
  for (const auto& line : forms_report_) spdlog::info("{}", line);
  spdlog::info("step: upconv {}, downconv {}, channels_last {}, amp {}{}{}{}", tc.upconv, downconv,
               step_opts_.channels_last ? "on" : "off", step_opts_.amp,
               cpu_bf16 ? fmt::format(" (CPU: {})", cpu_bf16_features()) : "",
               device_.is_cuda() ? (tc.cudnn_benchmark ? ", cuDNN benchmark" : "") : "", graphs);
  spdlog::info("objective: loss {}{}{}{}{}{}{}{} | D: norm {}{}{} | latent {}{}", tc.loss,
               tc.loss == "wgan-gp" ? fmt::format(" (gp {})", tc.gp_weight) : "",
               tc.r1_gamma > 0 ? fmt::format(", R1 gamma {}", tc.r1_gamma) : "",
               tc.r2_gamma > 0 ? fmt::format(", R2 gamma {}", tc.r2_gamma) : "",
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
  if (!device_.is_cuda() && !dist_)  // (the ranks of a local run start together: the load says nothing yet)
    if (const std::string w = oversubscription_warning(threads_); !w.empty()) spdlog::warn("{}", w);
  const double images = static_cast<double>(total_) * static_cast<double>(per_step_);
  spdlog::info("length: {} steps = {:.1f} epochs of the {} images = {:.1f} kimg (from train.{}){}", total_,
               images / static_cast<double>(std::max<std::int64_t>(1, source_->size())), source_->size(),
               images / 1000.0, tc.steps > 0 ? "steps" : tc.kimg > 0 ? "kimg" : "epochs",
               state_.step > 0 ? fmt::format("; {} done", state_.step) : "");
  const std::string adapting = fmt::format("p {:.3f} adapting towards E[sign(D(x))] = {} (moves by 1 in {} kimg)",
                                           ada_p_, tc.ada_target, tc.ada_kimg);
  if (tc.augment == "diffaug" || tc.augment == "ada")
    spdlog::info("augmentation: {} ({}){}", tc.augment, augment_policy_text(step_opts_.augment),
                 tc.augment == "ada" ? ", " + adapting : "");
  else if (tc.augment == "auto" && ada_from_ >= 0 && evaluates_)
    spdlog::info("augmentation: auto, ADA ({}) since step {}, where an FD regression took the run back to best.pt; "
                 "{}", augment_policy_text(step_opts_.augment), ada_from_, adapting);
  else if (tc.augment == "auto" && ada_from_ >= 0)
    spdlog::info("augmentation: auto, but this run does not evaluate (eval.every 0, or no classes and no "
                 "eval.extractor), so nothing can tell when D starts to memorise: ADA ({}) from step {}; {}",
                 augment_policy_text(step_opts_.augment), ada_from_, adapting);
  else if (tc.augment == "auto")
    spdlog::info("augmentation: auto, none until {} evaluation{} in a row ha{} an FD above {}x the best so far "
                 "(train.augment_patience, health.eval_regress); then the run goes back to checkpoints/best.pt and "
                 "continues from there with ADA ({}) towards E[sign(D(x))] = {}", tc.augment_patience,
                 tc.augment_patience == 1 ? "" : "s", tc.augment_patience == 1 ? "s" : "ve", cfg_.health.eval_regress,
                 augment_policy_text(step_opts_.augment), tc.ada_target);
  if (scheduled())
    spdlog::info("cosine schedules over {:g} kimg: learning rates to {} of their start{}{}",
                 tc.schedule_kimg > 0 ? tc.schedule_kimg : images / 1000.0, tc.lr_final,
                 tc.gamma_final < 1 ? fmt::format(", R1/R2 gamma to {}", tc.gamma_final) : "",
                 tc.beta2_final >= 0 ? fmt::format(", beta2 to {}", tc.beta2_final) : "");
  spdlog::debug("seed {} | {} data threads, 3 batches prefetched | metrics every {}, grid every {}, checkpoint every {} "
                "steps{}",
                tc.seed, default_threads(cfg_.data.workers, dist_), cfg_.output.metrics_every,
                cfg_.output.sample_every, cfg_.output.checkpoint_every,
                cfg_.output.keep_last > 0 ? fmt::format(" (keeping the newest {})", cfg_.output.keep_last) : "");
  if (dist_)
    spdlog::info("distributed: {} processes ({} backend), {} images each per step; gradients averaged in {} + {} "
                 "buckets of up to {} MB{}; BatchNorm {}",
                 world_, dist_->backend(), tc.batch_size / world_, reducer_->figures().buckets_d,
                 reducer_->figures().buckets_g, cfg_.dist.bucket_mb,
                 cfg_.dist.overlap ? ", overlapped with the backward pass" : "",
                 mc.sync_bn ? "over the global batch (model.sync_bn)" : "per process");
}

// The next step's input: one real batch and its noise per D update. `after` is the data position once consumed; `t0`
// is when the first batch was there (the step's time does not count waiting for data).
StepInput Trainer::next_input(LoaderPosition& after, Clock::time_point& t0) {
  const ModelConfig& mc = cfg_.model;
  StepInput in;
  for (int k = 0; k < cfg_.train.d_steps; ++k) {
    Batch batch = loader_->next();
    if (k == 0) t0 = Clock::now();
    if (!data_diversity_known_ && main_) {  // the reference for the sample-diversity check
      health_.set_data_diversity(
          batch_diversity(batch.images.narrow(0, 0, std::min<std::int64_t>(64, batch.images.size(0)))));
      data_diversity_known_ = true;
    }
    // Noise and labels are drawn for the whole global batch on every rank, which keeps its rows.
    const std::int64_t b = batch.images.size(0), global = cfg_.train.batch_size, first = rank_ * b;
    auto mine = [&](const at::Tensor& t) { return global == b ? t : t.narrow(0, first, b); };
    in.real.push_back(batch.images.to(device_, /*non_blocking=*/true));  // [B, C, S, S]
    in.z.push_back(mine(sample_latent(mc, global)).to(device_, true));  // [B, nz], CPU generator: same on every device
    if (mc.conditional) {
      in.real_labels.push_back(batch.labels.to(device_, true));                      // [B]
      in.fake_labels.push_back(mine(sample_labels(mc, global)).to(device_, true));  // [B]
    }
    after = batch.after;
    in.row_begin = first;
    in.global_batch = global;
  }
  in.noise_std = instance_noise_std(cfg_.train, step_, total_);
  in.augment_p = ada_p_;
  return in;
}

// The run: the loop, then summary.json however it ended (finished, signal, time budget, divergence, an error).
TrainSummary Trainer::run() {
  start_ = interval_start_ = Clock::now();
  first_step_ = step_;
  try {
    loop();
  } catch (const UserError& e) {
    end(e.code(), e.what());
    throw;
  } catch (const c10::OutOfMemoryError& e) {  // exit code 8 (gan/cli.cpp), not a bug
    end(kExitMemory, std::string("out of memory: ") + e.what_without_backtrace());
    throw;
  } catch (const std::exception& e) {
    end(kExitInternal, e.what());
    throw;
  }
  end(summary_.exit_code, "");
  return summary_;
}

void Trainer::loop() {
  const TrainConfig& tc = cfg_.train;
  const OutputConfig& out = cfg_.output;
  GanStep stepper(nets_.g, nets_.d, *nets_.opt_g, *nets_.opt_d, step_opts_);
  if (nets_.g_ema) stepper.set_ema(nets_.g_ema, tc.ema_decay, tc.ema_rampup);
  stepper.set_gradient_sync(reducer_.get());
  stepper.set_loss_scale_state(state_.loss_scale, state_.loss_scale_good_steps);  // a resumed fp16 run's
  struct Current {  // stepper_ names the step while this loop runs
    GanStep*& p;
    Current(GanStep*& ptr, GanStep* s) : p(ptr) { p = s; }
    ~Current() { p = nullptr; }
  } current(stepper_, &stepper);
  if (step_ >= total_) spdlog::info("the checkpoint is already at step {} of {}; nothing to train", step_, total_);

  while (step_ < total_) {
    // One step: D update(s), then the G update.
    if (dist_) dist_->set_activity("step " + std::to_string(step_ + 1));
    Clock::time_point t0;
    LoaderPosition after;
    StepInput in = next_input(after, t0);
    apply_schedule(stepper);
    const bool poison = hooks_.poison_d_loss && hooks_.poison_d_loss(step_ + 1);
    StepResult r = stepper.run(in, step_ + 1, poison);
    if (step_opts_.cuda_graph && !graph_reported_) report_graph(stepper);  // until captured or off
    if (r.status == StepResult::kDivergedD || r.status == StepResult::kDivergedG) {
      roll_back(r.status == StepResult::kDivergedD ? 'D' : 'G', step_ + 1);  // or throws
      stepper.reset_graph();  // the graph would replay on the tensors the rollback replaced
      graph_reported_ = stepper.graph_state() != "warming up";  // a recapture is logged again
      continue;
    }
    if (r.status == StepResult::kSkipped) {  // fp16 overflow: same batch position, next noise, lower loss scale
      spdlog::debug("step {}: fp16 gradient overflow, loss scale now {}", step_ + 1, stepper.loss_scale());
      pos_ = after;
      continue;
    }
    ++step_;
    pos_ = after;
    int stop_signal = g_stop_signal.load();
    bool out_of_time = max_seconds_ > 0 && seconds_since(start_) >= max_seconds_;
    if (vote_) {  // every rank: the global batch's statistics, and whether any rank wants to stop
      const StepVote::Verdict v = vote_->cast(r.stats, stop_signal, out_of_time);
      stop_signal = v.sigterm ? SIGTERM : v.sigint ? SIGINT : 0;
      out_of_time = v.out_of_time > 0;
    }
    const std::int64_t images = static_cast<std::int64_t>(tc.batch_size) * tc.d_steps;  // the global batch
    images_done_ += images;
    interval_images_ += images;
    if (main_) {
      meter_.add(r.stats);
      health_.add_step(step_, r.stats);
    }
    if (ada_on()) update_ada(r.stats);
    train_seconds_ += seconds_since(t0);
    if (main_ && ProgressBar::due()) draw_progress();

    // What to write after it.
    const bool last = step_ == total_;
    const bool stopping = (stop_signal || out_of_time) && !last;
    const bool log_now = step_ % out.log_every == 0 || last || stopping;
    const bool metrics_now = step_ % out.metrics_every == 0 || log_now;
    const bool grid_now = step_ % out.sample_every == 0 || last || stopping;
    const bool ckpt_now = step_ % out.checkpoint_every == 0 || last || stopping;
    const bool eval_now = evaluates_ && (step_ % cfg_.eval.every == 0 || last);
    if (!step_opts_.check_every_step && (metrics_now || grid_now || ckpt_now || eval_now)) {
      auto bad = stepper.take_deferred_divergence();  // before anything is read, saved, drawn or scored (best.pt)
      if (bad.first) {
        roll_back(bad.second, bad.first);  // or throws
        stepper.reset_graph();
        graph_reported_ = stepper.graph_state() != "warming up";
        continue;
      }
    }
    if (metrics_now && main_) write_metrics(log_now, in.noise_std, stepper.loss_scale());
    if (log_now && main_ && spdlog::should_log(spdlog::level::debug)) {
      const CpuAllocatorStats cs = cpu_allocator_stats();
      if (cs.installed) spdlog::debug("CPU allocator at step {}: {}", step_, describe(cs));
    }
    if (grid_now && main_) write_grid();
    // Evaluation before the checkpoint, so that the checkpoint of a step holds that step's scores (and auto's count).
    const bool switched = eval_now && evaluate();
    if (switched) {  // train.augment auto switched ADA on: the run is back at best.pt's step (and checkpointed)
      stepper.stop_graph(fmt::format("train.augment auto switched ADA on at step {}", step_));
      graph_reported_ = false;  // the log says so (on CUDA with graphs)
      if (!stopping) continue;
    }
    if (ckpt_now && !switched) write_checkpoint();
    if (stopping) {
      summary_.exit_code = stop_signal == SIGTERM ? kExitTerminated : stop_signal ? kExitInterrupted : kExitTimeLimit;
      if (main_)
        spdlog::warn("{} at step {}; saved checkpoint {} and grid {}; continue with --resume auto (or --resume {})",
                   stop_signal ? "stopped by signal" : "reached train.max_time = " + tc.max_time, step_,
                   summary_.checkpoint, summary_.grid, summary_.checkpoint);
      break;
    }
  }
}

// The terminal's bar: where the run is, its last losses, its speed and the time left.
void Trainer::draw_progress() {
  const double elapsed = seconds_since(start_);
  const double rate = images_done_ / std::max(1e-9, elapsed);
  const double eta = (total_ - step_) * static_cast<double>(cfg_.train.batch_size) / std::max(1e-9, rate);
  std::string losses = last_losses_.first == last_losses_.first  // not NaN: a metrics row has been read
                           ? fmt::format(" | loss D {:.3f} G {:.3f}", last_losses_.first, last_losses_.second)
                           : "";
  ProgressBar::draw(fmt::format("step {}/{} ({:.0f}%) epoch {}{} | {:.0f} img/s | ETA {}", step_, total_,
                                100.0 * step_ / std::max<std::int64_t>(total_, 1), pos_.epoch + 1, losses, rate,
                                duration(eta)));
}

// summary.json (rank 0) and the last lines, whatever ended the run: `code` is its exit code, `message` the error's.
void Trainer::end(int code, const std::string& message) {
  ProgressBar::clear();
  summary_.exit_code = code;
  summary_.steps = step_;
  summary_.images_per_sec = images_done_ / std::max(1e-9, train_seconds_);
  summary_.health_warnings = health_.warnings();
  summary_.eval_json = last_eval_;
  summary_.ada_from = ada_from_;
  RunSummary rs;
  rs.exit_code = code;
  rs.exit_reason = code == kExitOk                                        ? "finished"
                   : code == kExitInterrupted || code == kExitTerminated ? "signal"
                   : code == kExitTimeLimit                              ? "time_limit"
                   : code == kExitDiverged                               ? "diverged"
                   : code == kExitDistributed                            ? "peer_lost"
                   : code == kExitMemory                                 ? "out_of_memory"
                                                                         : "error";
  rs.message = message;
  rs.checkpoint = summary_.checkpoint;
  rs.grid = summary_.grid;
  rs.steps = step_;
  rs.rollbacks = summary_.rollbacks;
  rs.augment = augment_json();
  rs.wall_s = seconds_since(start_);
  rs.images_per_sec = summary_.images_per_sec;
  rs.last_metrics = last_row_;
  rs.last_eval = last_eval_;
  rs.best_eval = best_eval_;
  rs.health = health_json(health_);
  rs.world_size = world_;
  rs.distributed = distributed_json();
  rs.versions = versions_json();
  try {
    folder_->write_summary(rs);
  } catch (const UserError& e) {
    if (message.empty()) throw;
    spdlog::warn("could not write summary.json: {}", e.what());  // keep the error that ended the run
  }
  if (main_) {
    try {
      write_report(folder_->path());
    } catch (const UserError& e) {
      spdlog::warn("could not write report.html: {}", e.what());
    }
  }
  if (!message.empty()) return;
  if (source_->bad_count() > 0 && main_)
    spdlog::warn("{} image files could not be decoded and were skipped", source_->bad_count());
  if (code == kExitOk)
    spdlog::info("done: step {} in {} ({:.1f} img/s in training steps); grid {}; checkpoint {}", step_,
                 duration(rs.wall_s), summary_.images_per_sec, summary_.grid.empty() ? "-" : summary_.grid,
                 summary_.checkpoint.empty() ? "-" : summary_.checkpoint);
  if (reducer_ && step_ > first_step_) {
    const auto& f = reducer_->figures();
    const double steps = static_cast<double>(step_ - first_step_);
    spdlog::info("all-reduce: {:.2f} MB of gradients per step in {} buckets; {:.1f} ms per step spent waiting for "
                 "them after the backward pass",
                 f.bytes / steps / 1e6, f.reductions / steps, 1000 * f.wait_s / steps);
  }
}

// The distributed run's figures for summary.json ("" for one process).
std::string Trainer::distributed_json() const {
  if (!dist_) return "";
  const auto& f = reducer_->figures();
  const double steps = std::max<double>(1, static_cast<double>(step_ - first_step_));
  char buf[400];
  std::snprintf(buf, sizeof buf,
                "{\"world_size\": %d, \"backend\": \"%s\", \"sync_bn\": %s, \"bucket_mb\": %g, \"overlap\": %s, "
                "\"buckets_d\": %d, \"buckets_g\": %d, \"allreduce_bytes_per_step\": %.0f, "
                "\"allreduce_wait_ms_per_step\": %.3f}",
                world_, dist_->backend().c_str(), cfg_.model.sync_bn ? "true" : "false", cfg_.dist.bucket_mb,
                cfg_.dist.overlap ? "true" : "false", f.buckets_d, f.buckets_g, f.bytes / steps,
                1000 * f.wait_s / steps);
  return buf;
}

void Trainer::write_metrics(bool log_now, double noise_std, double loss_scale) {
  const double dt = seconds_since(interval_start_);
  const double ips = dt > 0 ? interval_images_ / dt : 0;
  const double elapsed = seconds_since(start_);
  auto m = meter_.mean_and_reset();
  char row[1024];
  std::snprintf(row, sizeof row,
                "{\"step\": %lld, \"epoch\": %lld, \"loss_d\": %.5f, \"loss_g\": %.5f, \"d_real\": %.5f, "
                "\"d_fake\": %.5f, \"d_fake_g\": %.5f, \"penalty\": %.5f, \"noise_std\": %.4f, "
                "\"img_per_s\": %.2f, \"elapsed_s\": %.2f%s%s}",
                static_cast<long long>(step_), static_cast<long long>(pos_.epoch + 1), m[0], m[1], m[2], m[3], m[4],
                m[5], noise_std, ips, elapsed,
                ada_on() ? fmt::format(", \"augment_p\": {:.5f}, \"ada_rt\": {:.4f}", ada_p_, ada_rt_).c_str()
                                           : "",
                scheduled() ? schedule_json().c_str() : "");
  folder_->append_metrics(row);
  last_row_ = row;
  const TrainConfig& tc = cfg_.train;
  std::vector<std::pair<std::string, double>> scalars{
      {"loss/d", m[0]}, {"loss/g", m[1]}, {"d_output/real", m[2]}, {"d_output/fake", m[3]},
      {"d_output/fake_after_d_update", m[4]}, {"train/img_per_s", ips},
      {"train/lr_g", nets_.opt_g->param_groups()[0].options().get_lr()},
      {"train/lr_d", nets_.opt_d->param_groups()[0].options().get_lr()}};
  if (tc.loss == "wgan-gp" || tc.r1_gamma > 0 || tc.r2_gamma > 0) scalars.emplace_back("loss/penalty", m[5]);
  if (ada_on()) {
    scalars.emplace_back("augment/p", ada_p_);
    scalars.emplace_back("augment/rt", ada_rt_);
  }
  if (tc.instance_noise > 0) scalars.emplace_back("train/instance_noise_std", noise_std);
  if (step_opts_.amp == "fp16") scalars.emplace_back("train/loss_scale", loss_scale);
  folder_->add_scalars(step_, scalars);
  last_losses_ = {m[0], m[1]};
  if (log_now) {
    const double overall = images_done_ / std::max(1e-9, elapsed);
    const double eta = (total_ - step_) * static_cast<double>(cfg_.train.batch_size) / std::max(1e-9, overall);
    const std::string line =
        fmt::format("step {}/{} ({:.0f}%) epoch {} | loss D {:.3f} G {:.3f} | D(x) {:.2f} D(G(z)) {:.2f}/{:.2f} | "
                    "{:.0f} img/s | ETA {}",
                    step_, total_, 100.0 * step_ / total_, pos_.epoch + 1, m[0], m[1], m[2], m[3], m[4], ips,
                    duration(eta));
    if (ProgressBar::active()) folder_->log_to_file(line);  // the terminal has the bar
    else spdlog::info("{}", line);
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
  spdlog::debug("step {}: grid {} ({} images)", step_, summary_.grid, images.size(0));
}

void Trainer::write_checkpoint() {
  const std::string path = folder_->checkpoint_path(step_);
  if (dist_) check_replicas();
  store_augment_state(regressions_);
  store_step_state();
  if (main_) {
    const auto t0 = Clock::now();
    save_snapshot(path, cfg_, nets_, state_, step_, pos_);
    folder_->publish_checkpoint(path, cfg_.output.keep_last);
    spdlog::debug("step {}: checkpoint {} written in {:.0f} ms", step_, path, 1000 * seconds_since(t0));
  }
  summary_.checkpoint = path;
  if (dist_) dist_->set_last_checkpoint(path);
}

// Every rank must hold the same weights: their fingerprints are compared at each checkpoint (min = max).
void Trainer::check_replicas() {
  std::vector<at::Tensor> params = nets_.g->parameters();
  for (const auto& p : nets_.d->parameters()) params.push_back(p);
  const std::uint64_t h = fingerprint(params);
  const auto hi = static_cast<std::int64_t>(h >> 32), lo = static_cast<std::int64_t>(h & 0xffffffffu);
  at::Tensor v = torch::tensor({hi, lo, -hi, -lo}, torch::kLong);  // max of x and of -x: max and min
  dist_->all_reduce_max(v, "the weight check");
  const auto* m = v.data_ptr<std::int64_t>();
  if (m[0] != -m[2] || m[1] != -m[3])
    throw UserError(kExitInternal, "the ranks' weights differ at step " + std::to_string(step_) +
                                       " (they must stay equal; a bug: please report it with the config)");
}

// Cosine schedules (R3GAN): learning rates, R1/R2 gamma and beta2 go from their start to their final value over
// train.schedule_kimg (or the run), as a function of the step alone, so that a resumed run follows the same curve.
void Trainer::apply_schedule(GanStep& stepper) {
  const TrainConfig& tc = cfg_.train;
  if (!scheduled()) return;
  const double span = tc.schedule_kimg > 0 ? tc.schedule_kimg * 1000.0 : static_cast<double>(total_ * per_step_);
  const double t = static_cast<double>(step_ * per_step_) / std::max(1.0, span);
  auto set = [&](torch::optim::Optimizer& opt, double lr0, double beta2_0) {
    auto& o = static_cast<torch::optim::AdamOptions&>(opt.param_groups()[0].options());
    o.lr(cosine_schedule(lr0, lr0 * tc.lr_final, t));
    if (tc.beta2_final >= 0) o.betas({std::get<0>(o.betas()), cosine_schedule(beta2_0, tc.beta2_final, t)});
  };
  set(*nets_.opt_g, lr_g0_, beta2_g0_);
  set(*nets_.opt_d, lr_d0_, beta2_d0_);
  gamma_scale_ = cosine_schedule(1.0, tc.gamma_final, t);
  stepper.set_gamma_scale(gamma_scale_);
}

// train.cuda_graphs: one line when the step is captured, one warning when a capture failed or differed.
void Trainer::report_graph(const GanStep& stepper) {
  const std::string state = stepper.graph_state();
  if (state == "warming up") return;
  graph_reported_ = true;
  if (!main_) return;
  if (state == "captured")
    spdlog::info("CUDA graphs: step {} captured the D and G updates and its replay matched the eager step; the "
                 "following steps replay it", step_ + 1);
  else if (state.rfind("off: ", 0) == 0)
    spdlog::warn("CUDA graphs are off for this run ({}); the step runs eagerly", state.substr(5));
}

// The values of the schedules at the last step, for the metrics row.
std::string Trainer::schedule_json() const {
  const auto& g = static_cast<const torch::optim::AdamOptions&>(nets_.opt_g->param_groups()[0].options());
  const auto& d = static_cast<const torch::optim::AdamOptions&>(nets_.opt_d->param_groups()[0].options());
  char buf[160];
  std::snprintf(buf, sizeof buf, ", \"lr_g\": %.6g, \"lr_d\": %.6g, \"beta2\": %.6g, \"gamma_scale\": %.6g", g.lr(),
                d.lr(), std::get<1>(g.betas()), gamma_scale_);
  return buf;
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
  restore(summary_.checkpoint, reseed);
  if (main_)
    spdlog::warn("{}; rolled back to {} (step {}) with a new noise seed, rollback {} of {}", where, summary_.checkpoint,
               state_.step, summary_.rollbacks, cfg_.train.max_rollbacks);
  step_ = state_.step;
  pos_ = state_.data;
  meter_ = Meter();
  health_.restart_window();
  load_augment_state();
  loader_ = make_loader();
}

}  // namespace detail

void request_stop(int signal_number) { g_stop_signal.store(signal_number); }

TrainSummary train(const Config& cfg, const std::string& resume_from, const TrainHooks& hooks, DistContext* dist,
                   const InitWeights& init) {
  g_stop_signal.store(0);
  detail::Trainer trainer(cfg, resume_from, hooks, dist, init);
  return trainer.run();
}

}  // namespace gan

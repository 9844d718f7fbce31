// The trainer's state and its steps, shared by the files that implement them: trainer.cpp (setup, the loop, what it
// writes, rollback) and trainer_eval.cpp (evaluation during training and what it decides: best.pt, train.augment
// auto's switch to ADA, ADA's p). Internal to the library: programs call gan::train (gan/trainer.h).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gan/checkpoint.h"
#include "gan/config.h"
#include "gan/distributed.h"
#include "gan/eval.h"
#include "gan/health.h"
#include "gan/image_source.h"
#include "gan/loader.h"
#include "gan/loader_position.h"
#include "gan/run_folder.h"
#include "gan/snapshot.h"
#include "gan/step.h"
#include "gan/trainer.h"

namespace gan {
namespace detail {

using Clock = std::chrono::steady_clock;

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

class Trainer {
 public:
  Trainer(const Config& cfg, const std::string& resume_from, const TrainHooks& hooks, DistContext* dist,
          const InitWeights& init);
  TrainSummary run();

 private:
  void loop();
  void end(int code, const std::string& message);
  void draw_progress();
  void open_data();
  void restore(const std::string& path, std::uint64_t reseed);
  void share_weights();
  void choose_upconv_forms();
  std::unique_ptr<BatchLoader> make_loader();
  void log_setup();
  StepInput next_input(LoaderPosition& after, Clock::time_point& t0);
  void write_metrics(bool log_now, double noise_std, double loss_scale);
  void write_grid();
  void write_checkpoint();
  bool evaluate();
  void roll_back(char net, std::int64_t at_step);
  void check_replicas();
  std::string distributed_json() const;
  void apply_schedule(GanStep& stepper);
  void report_graph(const GanStep& stepper);
  bool scheduled() const {
    return cfg_.train.lr_final < 1 || cfg_.train.gamma_final < 1 || cfg_.train.beta2_final >= 0;
  }
  std::string schedule_json() const;
  void update_ada(const at::Tensor& stats);
  bool ada_on() const { return cfg_.train.augment == "ada" || (cfg_.train.augment == "auto" && ada_from_ >= 0); }
  void start_ada_from_best(std::int64_t regressed_step, double fd);
  void load_augment_state();
  void store_augment_state(int regressions);
  void store_step_state();  // the running step's fp16 loss scale into state_ (for the checkpoint)
  std::string augment_json() const;
  void save_best(const std::string& scores);

  // What the run is.
  Config cfg_;
  const TrainHooks& hooks_;
  DistContext* dist_;  // null for one process
  const bool main_;    // this process writes the run folder, logs, draws grids and evaluates
  const int rank_, world_;
  const c10::Device device_;
  const int threads_;
  const double max_seconds_;
  std::unique_ptr<ImageSource> source_;
  StepOptions step_opts_;
  Networks nets_;
  TrainingState state_;
  at::Tensor fixed_noise_, fixed_labels_;  // on the device
  std::unique_ptr<Evaluator> evaluator_;  // rank 0's (the others wait while it evaluates)
  bool evaluates_ = false;                 // the run evaluates every eval.every steps (every rank knows)
  std::unique_ptr<BatchLoader> loader_;
  std::unique_ptr<RunFolder> folder_;
  std::unique_ptr<GradientReducer> reducer_;  // distributed: averages the gradients
  std::unique_ptr<StepVote> vote_;             // distributed: averages the statistics, agrees on stopping
  std::int64_t total_ = 0, per_epoch_ = 0;
  std::int64_t per_step_ = 0;  // real images per step (the global batch times train.d_steps)
  // The learning rates and beta2 at the start of the cosine schedules (train.lr_final, beta2_final).
  double lr_g0_ = 0, lr_d0_ = 0, beta2_g0_ = 0, beta2_d0_ = 0;
  GanStep* stepper_ = nullptr;   // loop()'s step while it runs (its fp16 loss scale is saved and restored)
  bool graph_reported_ = false;  // train.cuda_graphs: the capture (or why not) has been logged
  std::string graph_blocker_;    // why the step is not captured when cuda_graph_blocker() does not say it
  std::string device_maths_note_;  // ensure_sound_device_maths: "" or what was wrong on the device, for the log
  std::vector<std::string> forms_report_;  // train.upconv/downconv auto: the forms as measured (or resumed), for the log

  // Where it is.
  std::int64_t step_ = 0;
  LoaderPosition pos_;
  TrainSummary summary_;
  HealthMonitor health_;
  bool data_diversity_known_ = false;
  std::string last_row_, last_eval_;  // the newest metrics row and evaluation, for summary.json
  std::string best_eval_;             // the evaluation with the lowest FD so far, with its step
  std::pair<double, double> last_losses_{NAN, NAN};  // D and G loss of the newest metrics row, for the bar
  double best_fd_ = 0;
  Meter meter_;
  double ada_p_ = 0;     // train.augment ada: the probability of each op; 1 for diffaug
  at::Tensor ada_sum_;   // ada: sum of E[sign(D(real))] since p last moved, on the device
  double ada_rt_ = 0;    // ada: the last r_t (for metrics)
  std::int64_t ada_from_ = -1;  // train.augment auto: the step from which ADA runs (-1: not yet)
  int regressions_ = 0;         // auto: evaluations in a row whose FD regressed (up to train.augment_patience)
  std::string ada_switch_;      // auto: why and where it switched, for summary.json ("" when it has not)
  double gamma_scale_ = 1;  // the cosine schedule's factor on the R1/R2 gammas at the last step
  Clock::time_point start_, interval_start_;
  std::int64_t interval_images_ = 0, images_done_ = 0, first_step_ = 0;
  double train_seconds_ = 0;
};

}  // namespace detail
}  // namespace gan

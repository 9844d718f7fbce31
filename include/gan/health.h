// Training health: numbers and warnings for the failure modes users meet first, a discriminator that wins outright
// (saturation), a generator that collapses onto few modes (sample diversity), and scores that get worse.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "gan/config.h"

namespace gan {

// Mean pairwise distance between the images of a batch [N, C, S, S], as RMS per value (0 = all identical; two
// independent uniform images in [-1, 1] are ~0.82 apart).
double batch_diversity(const at::Tensor& images);

class HealthMonitor {
 public:
  // `augment` is train.augment: the saturation warning's advice depends on it.
  HealthMonitor(const HealthConfig& cfg, const std::string& loss, const std::string& augment = "off");
  // Per-step statistics from GanStep ([loss_d, loss_g, D(x), D(G(z)), ...], on the device) of run step `step` (the
  // global count, so a resumed run names the same steps as an uninterrupted one). Reads them back at every multiple of
  // health.window and warns when D saturated over that window (after a resume, its part since the resume).
  void add_step(std::int64_t step, const at::Tensor& stats);
  // The data's diversity (batch_diversity of a real batch), the reference for check_diversity.
  void set_data_diversity(double d) { data_diversity_ = d; }
  // Drops the open window's sums (the run went back to a checkpoint: its steps are done again).
  void restart_window() {
    sums_ = at::Tensor();
    count_ = 0;
  }
  // Diversity of the fixed-noise samples at `step`; logs it and warns below health.min_diversity x the data's.
  double check_diversity(std::int64_t step, const at::Tensor& images);
  // An evaluation's Frechet distance at `step`; warns when it exceeds the best so far by health.eval_regress.
  void check_eval(std::int64_t step, double fd);
  // True when the window just judged was saturated (tests).
  bool saturated() const { return saturated_; }
  std::int64_t judged_at() const { return judged_at_; }  // the step whose window was judged last (tests)
  int warnings() const { return warnings_; }
  double last_diversity() const { return last_diversity_; }

 private:
  HealthConfig cfg_;
  std::string loss_, augment_;
  at::Tensor sums_;
  int count_ = 0;
  std::int64_t judged_at_ = 0;
  bool saturated_ = false, collapsed_ = false;
  int warnings_ = 0;
  double data_diversity_ = 0, last_diversity_ = 0;
  double best_fd_ = 0;
  std::int64_t best_fd_step_ = 0;
};

}  // namespace gan

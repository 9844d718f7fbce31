// Evaluation during training and what it decides: the periodic evaluation (rank 0; the others wait), checkpoints/
// best.pt, train.augment auto's switch to ADA from the best checkpoint when the FD regresses, ADA's p, and the
// augmentation state that checkpoints carry. The rest of the trainer is in trainer.cpp.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "gan/augment.h"
#include "gan/eval.h"
#include "gan/json.h"
#include "gan/run_folder.h"
#include "gan/snapshot.h"
#include "trainer_impl.h"

namespace gan {
namespace detail {

// Evaluates (rank 0; the others wait). Returns true when train.augment auto took the run back to best.pt with ADA on.
bool Trainer::evaluate() {
  const bool watching = cfg_.train.augment == "auto" && ada_from_ < 0;
  bool regressed = false;
  double fd = NAN;
  auto work = [&] {
    Generator& shown = nets_.shown();
    shown->eval();
    EvalResult r = evaluator_->evaluate(generator_sampler(shown, cfg_.model, device_, /*seed=*/0));
    if (!nets_.g_ema) nets_.g->train();
    if (hooks_.eval_fd) r.fd = hooks_.eval_fd(step_, r.fd);
    fd = r.fd;
    regressed = watching && !best_eval_.empty() && r.fd > best_fd_ * cfg_.health.eval_regress;
    last_eval_ = eval_json(r);
    state_.last_eval = last_eval_;  // into the next checkpoint
    if (best_eval_.empty() || r.fd < best_fd_) {
      best_fd_ = r.fd;
      save_best(last_eval_);
    }
    folder_->append_metrics("{\"step\": " + std::to_string(step_) + ", \"eval\": " + last_eval_ + "}");
    std::vector<std::pair<std::string, double>> scores{{"eval/fd", r.fd},       {"eval/fd_floor", r.fd_floor},
                                                       {"eval/kid", r.kid},     {"eval/kid_floor", r.kid_floor},
                                                       {"eval/precision", r.precision}, {"eval/recall", r.recall}};
    if (!r.class_hist.empty()) {
      scores.emplace_back("eval/classes_covered", r.classes_covered);
      scores.emplace_back("eval/class_entropy", r.class_entropy);
    }
    folder_->add_scalars(step_, scores);
    spdlog::info("eval at step {} ({}{}):\n{}", step_, nets_.g_ema ? "EMA generator" : "generator",
                 r.capped ? ", capped by eval.max_time" : "", eval_table(r));
    health_.check_eval(step_, r.fd);
  };
  if (dist_) dist_->run_on_main("evaluating at step " + std::to_string(step_), work);  // the others wait
  else work();
  interval_start_ = Clock::now();  // evaluation time is not training speed
  interval_images_ = 0;
  if (!watching) return false;
  if (dist_) regressed = dist_->broadcast_bytes(regressed ? "1" : "0") == "1";
  regressions_ = regressed ? regressions_ + 1 : 0;
  if (regressions_ < cfg_.train.augment_patience) {
    if (regressed && main_)
      spdlog::info("train.augment auto: evaluation {} of {} in a row with a regressed FD", regressions_,
                   cfg_.train.augment_patience);
    return false;
  }
  start_ada_from_best(step_, fd);
  return true;
}

// train.augment auto, on an FD regression: D has begun to memorise the data (on 3,786 emoji the unaugmented run went
// from FD 0.235 to 49.1 and one category). Every rank goes back to checkpoints/best.pt (rank 0 reads it) and goes on
// from there with ADA; the run folder forgets the steps after it, and a step checkpoint there keeps ADA for a resume.
void Trainer::start_ada_from_best(std::int64_t regressed_step, double fd) {
  const std::string best = checkpoint_dir(folder_->path()) + "/best.pt";
  const double best_fd = best_fd_;
  loader_.reset();  // stop its thread before restoring the position
  restore(best, 0);
  step_ = state_.step;
  pos_ = state_.data;
  meter_ = Meter();
  health_.restart_window();
  ada_from_ = step_;
  regressions_ = 0;
  ada_p_ = 0;
  ada_sum_ = at::Tensor();
  ada_rt_ = 0;
  loader_ = make_loader();
  if (main_) {
    folder_->rewind(step_);
    spdlog::warn("train.augment auto: eval FD {:.3f} at step {} is {:.2f}x the best, {:.3f} at step {} (health."
                 "eval_regress {}; {} evaluation{} in a row): D is likely memorising the data. Back to {} and on from "
                 "step {} with ADA ({}, towards E[sign(D(x))] = {}); the {} steps after it are trained again",
                 fd, regressed_step, fd / best_fd, best_fd, step_, cfg_.health.eval_regress,
                 cfg_.train.augment_patience, cfg_.train.augment_patience == 1 ? "" : "s", best, step_,
                 augment_policy_text(step_opts_.augment), cfg_.train.ada_target, regressed_step - step_);
  }
  char buf[200];
  std::snprintf(buf, sizeof buf, "{\"regressed_step\": %lld, \"fd\": %.6g, \"best_step\": %lld, \"best_fd\": %.6g}",
                static_cast<long long>(regressed_step), fd, static_cast<long long>(step_), best_fd);
  ada_switch_ = buf;
  write_checkpoint();
}

// summary.json's "augment": the mode, ADA's p at the end, and for auto where ADA started ("" when off).
std::string Trainer::augment_json() const {
  const std::string& mode = cfg_.train.augment;
  if (mode == "off") return "";
  std::string json = "{\"mode\": " + json_quote(mode) + ", \"policy\": " +
                     json_quote(augment_policy_text(step_opts_.augment));
  if (ada_on()) json += fmt::format(", \"p\": {:.5f}", ada_p_);
  if (mode == "auto")
    json += ", \"ada_from_step\": " + (ada_from_ >= 0 ? std::to_string(ada_from_) : std::string("null")) +
            ", \"switch\": " + (ada_switch_.empty() ? std::string("null") : ada_switch_);
  return json + "}";
}

// checkpoints/best.pt: the run at its lowest FD so far (a full checkpoint: it samples, exports and resumes). Not a
// step checkpoint, so output.keep_last never deletes it.
void Trainer::save_best(const std::string& scores) {
  const std::string path = checkpoint_dir(folder_->path()) + "/best.pt";
  best_eval_ = "{\"step\": " + std::to_string(step_) + ", \"checkpoint\": " + json_quote(path) +
               ", \"scores\": " + scores + "}";
  store_augment_state(/*regressions=*/0);  // a new best ends any streak of regressed evaluations
  store_step_state();
  save_snapshot(path, cfg_, nets_, state_, step_, pos_);
  spdlog::info("step {}: best FD so far, saved {}", step_, path);
}

// ADA: every 4 steps p moves towards the point where D's sign on the reals averages train.ada_target (the statistics
// are the global batch's: the step vote averaged them). Reads one value from the device every 4 steps.
void Trainer::update_ada(const at::Tensor& stats) {
  constexpr int kInterval = 4;
  const at::Tensor r = stats.narrow(0, 6, 1).squeeze();
  ada_sum_ = ada_sum_.defined() ? ada_sum_ + r : r.clone();
  if (step_ % kInterval != 0) return;
  ada_rt_ = ada_sum_.item<double>() / kInterval;
  ada_p_ = ada_update(ada_p_, ada_rt_, cfg_.train.ada_target, kInterval * per_step_, cfg_.train.ada_kimg);
  ada_sum_ = at::Tensor();
}

// The augmentation state from the checkpoint just restored (state_), and back into state_ before one is saved.
void Trainer::load_augment_state() {
  const std::string& mode = cfg_.train.augment;
  ada_from_ = mode == "auto" ? state_.ada_from : -1;
  if (mode == "auto" && ada_from_ < 0 && !evaluates_) ada_from_ = state_.step;  // nothing to watch: ADA now
  regressions_ = state_.ada_regressions;
  ada_p_ = mode == "diffaug" ? 1.0 : ada_on() ? state_.augment_p : 0.0;
  ada_sum_ = state_.ada_sum != 0 ? torch::tensor(static_cast<float>(state_.ada_sum)).to(device_) : at::Tensor();
}

void Trainer::store_augment_state(int regressions) {
  state_.augment_p = ada_on() ? ada_p_ : 0.0;
  state_.ada_sum = ada_sum_.defined() ? ada_sum_.item<double>() : 0.0;
  state_.ada_from = ada_from_;
  state_.ada_regressions = regressions;
}

}  // namespace detail
}  // namespace gan

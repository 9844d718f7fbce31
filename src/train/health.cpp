#include "gan/health.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace gan {

double batch_diversity(const at::Tensor& images) {
  const std::int64_t n = images.size(0);
  if (n < 2) return 0;
  torch::NoGradGuard no_grad;
  auto x = images.detach().to(torch::kCPU, torch::kDouble).reshape({n, -1});  // [N, D]
  auto dist = torch::cdist(x, x);                                            // [N, N]
  const double mean = dist.sum().item<double>() / static_cast<double>(n * (n - 1));
  return mean / std::sqrt(static_cast<double>(x.size(1)));
}

HealthMonitor::HealthMonitor(const HealthConfig& cfg, const std::string& loss, const std::string& augment)
    : cfg_(cfg), loss_(loss), augment_(augment) {}

void HealthMonitor::add_step(std::int64_t step, const at::Tensor& stats) {
  if (loss_ == "wgan-gp") return;  // a critic's output has no saturation point
  auto s = stats.detach().narrow(0, 2, 2);  // [D(x), D(G(z))]
  sums_ = sums_.defined() ? sums_ + s : s.clone();
  ++count_;
  const std::int64_t window = std::max(1, cfg_.window);
  if (step % window != 0) return;
  const int n = count_;
  auto sums = std::move(sums_);
  sums_ = at::Tensor();
  count_ = 0;
  if (2 * n < window) return;  // the short first window after a resume: too few steps to judge
  judged_at_ = step;
  auto m = (sums / n).cpu();
  const double real = m[0].item<double>(), fake = m[1].item<double>();
  // bce/minimax report probabilities, lsgan targets 1/0; hinge is saturated when both margins hold on average.
  // rpgan's outputs only mean something relative to each other: saturated when sigmoid(D(x) - D(G(z))) > threshold.
  const bool now = loss_ == "hinge"   ? real > 1.0 && fake < -1.0
                   : loss_ == "rpgan" ? 1.0 / (1.0 + std::exp(fake - real)) > cfg_.saturation
                                      : real > cfg_.saturation && fake < 1.0 - cfg_.saturation;
  if (now && !saturated_) {
    ++warnings_;
    // The advice is what measured best on 3,786 images (README "Training quality"), where a lower train.lr_d and
    // train.label_smoothing made the collapse come sooner.
    const std::string advice =
        augment_ == "auto"  ? "train.augment auto switches ADA on from best.pt if an evaluation's FD regresses"
        : augment_ == "ada" ? "train.augment ada raises p while D stays this sure of the reals; if it lasts, add "
                              "train.r1_gamma"
        : augment_ == "diffaug"
            ? "train.augment diffaug is on; try train.r1_gamma, or ada / auto with train.ada_target 0.9"
            : "Try train.augment auto with train.ada_target 0.9 (ADA from best.pt once the evaluated FD regresses), "
              "ada or diffaug, or train.r1_gamma";
    spdlog::warn("health: D is saturating at step {}: mean D(x) {:.3f}, D(G(z)) {:.3f} over the last {} steps "
                 "(threshold {}); G gets little gradient, and on a small dataset it may collapse later. {}",
                 step, real, fake, n, loss_ == "hinge" ? 1.0 : cfg_.saturation, advice);
  } else if (!now && saturated_) {
    spdlog::info("health: D no longer saturated at step {}: D(x) {:.3f}, D(G(z)) {:.3f}", step, real, fake);
  }
  saturated_ = now;
}

double HealthMonitor::check_diversity(std::int64_t step, const at::Tensor& images) {
  last_diversity_ = batch_diversity(images);
  const double ratio = data_diversity_ > 0 ? last_diversity_ / data_diversity_ : 1.0;
  spdlog::info("health: sample diversity {:.4f} at step {} ({:.0f}% of the data's {:.4f})", last_diversity_, step,
               100 * ratio, data_diversity_);
  // Not before health.grace_steps: G at its initialisation draws near-equal images, which is no collapse.
  const bool now = data_diversity_ > 0 && ratio < cfg_.min_diversity && step >= cfg_.grace_steps;
  if (now && !collapsed_) {
    ++warnings_;
    spdlog::warn("health: sample diversity collapsed at step {}: {:.4f}, {:.0f}% of the data's {:.4f} (health."
                 "min_diversity {:.0f}%); the generator is covering few modes. Keep an earlier checkpoint "
                 "(eval.every keeps checkpoints/best.pt); try train.augment auto if D was saturating, "
                 "model.minibatch_std or train.ema_decay 0.999",
                 step, last_diversity_, 100 * ratio, data_diversity_, 100 * cfg_.min_diversity);
  }
  collapsed_ = now;
  return last_diversity_;
}

void HealthMonitor::check_eval(std::int64_t step, double fd) {
  if (!std::isfinite(fd)) return;
  if (best_fd_step_ == 0 || fd < best_fd_) {
    best_fd_ = fd;
    best_fd_step_ = step;
    return;
  }
  if (fd > best_fd_ * cfg_.eval_regress) {
    ++warnings_;
    spdlog::warn("health: eval FD regressed at step {}: {:.3f} vs best {:.3f} at step {} ({:.2f}x, health."
                 "eval_regress {}); the checkpoint of step {} may be the one to keep",
                 step, fd, best_fd_, best_fd_step_, fd / best_fd_, cfg_.eval_regress, best_fd_step_);
  }
}

}  // namespace gan

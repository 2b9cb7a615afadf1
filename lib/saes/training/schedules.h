// Training schedules (spec §5.1, §5.3–5.5): step-count resolution against the total steps, the
// learning-rate multipliers of every `lr_scheduler_name`, the sparsity-coefficient warm-up and
// TopK k annealing. Pure functions of the step; no torch.
#pragma once

#include <cstdint>
#include <optional>

#include "saes/training/config.h"

namespace saes::training {

/// T_steps = total_training_tokens // tokens_per_batch. Throws ConfigError when it is 0.
std::int64_t total_training_steps(std::int64_t total_training_tokens,
                                  std::int64_t tokens_per_batch);

/// Every StepsOrFraction of TrainerConfig resolved against `total` (fractions: int(f·T)).
/// Stored in checkpoints, so a resumed run keeps them even if the batch size changed.
struct ScheduleSteps {
  std::int64_t total = 0;
  std::int64_t lr_warm_up = 0;
  std::int64_t lr_cool_down = 0;
  std::int64_t l1_warm_up = 0;
  std::int64_t k_warm_up = 0;
  std::int64_t k_cold_boot = 0;
  bool operator==(const ScheduleSteps&) const = default;
};

/// Throws ConfigError (naming the trainer key) for negative steps or fractions outside [0, 1].
ScheduleSteps resolve_schedule_steps(const TrainerConfig& config, std::int64_t total_steps);

/// LR multiplier λ(s) of LambdaLR, s = scheduler steps taken (0 at the first optimizer step).
/// With W warm-up, C cool-down, T total steps and r = lr_end_ratio:
///   constant               1
///   constantwithwarmup     min(1, (s+1)/W, r + (1-r)/C·max(T-s, 1))
///   linearwarmupdecay      s<W: (s+1)/W, else r + (1-r)·(T-s)/(T-W)
///   cosineannealing        r + (1-r)·½(1 + cos(π·s/T))
///   cosineannealingwarmup  s<W: (s+1)/W, else r + (1-r)·½(1 + cos(π(s-W)/(T-W)))
///   exponentialwarmup      s<W: (s+1)/W, else r^((s-W)/(T-W))
/// W = 0 means no warm-up and C = 0 no cool-down (upstream divides by zero); s is clamped to T, so
/// the decay ends at r. Unlike upstream, r applies to every decaying schedule (upstream's cosine
/// and exponential branches ignore it; exponentialwarmup with the default r = 1/32 is unchanged).
class LrSchedule {
 public:
  LrSchedule(LrScheduler kind, std::int64_t total, std::int64_t warm_up, std::int64_t cool_down,
             double end_ratio);
  LrSchedule(const TrainerConfig& config, const ScheduleSteps& steps);
  double factor(std::int64_t s) const;

 private:
  LrScheduler kind_;
  std::int64_t total_;
  std::int64_t warm_up_;
  std::int64_t cool_down_;
  double end_ratio_;
};

/// λ(t) = l1_coefficient · min(1, t / warm_up) (spec §5.3); warm_up = 0 ⇒ no warm-up;
/// an unset coefficient ⇒ 1.0 (no warm-up either, as upstream).
double l1_coefficient_at(std::optional<double> l1_coefficient, std::int64_t step,
                         std::int64_t warm_up);

/// TopK k annealing (spec §5.4): t < cold_boot ⇒ initial_k; else p = min(1, (t-cold_boot)/W),
/// linear k̃ = k0 + (kT-k0)·p, exponential k̃ = k0 - (k0-kT)(1-e^{-ap})/(1-e^{-a});
/// k = max(top_k, ceil(k̃)). Same floating-point order as upstream, so k matches step for step.
class KSchedule {
 public:
  /// Fixed k = top_k (no annealing).
  explicit KSchedule(std::int64_t top_k);
  /// Throws ConfigError unless initial_k >= top_k >= 1 and warm_up >= 1.
  KSchedule(std::int64_t top_k, std::int64_t initial_k, std::int64_t warm_up,
            std::int64_t cold_boot, KScheduleType type, double exponential_factor);
  /// Annealing from the config when `initial_k` is set and k_warm_up > 0, else fixed top_k.
  static KSchedule from_config(const TrainerConfig& config, const ScheduleSteps& steps,
                               std::int64_t top_k);
  std::int64_t k_at(std::int64_t step) const;
  /// Mean of k_at over steps [first, last] (what a window-averaged L0 of a TopK run equals).
  double mean_k(std::int64_t first, std::int64_t last) const;
  bool annealing() const { return warm_up_ > 0; }

 private:
  std::int64_t top_k_;
  std::int64_t initial_k_;
  std::int64_t warm_up_ = 0;
  std::int64_t cold_boot_ = 0;
  KScheduleType type_ = KScheduleType::kLinear;
  double exponential_factor_ = 3.0;
};

}  // namespace saes::training

// Training schedules: lr multipliers, λ warm-up, k annealing, step resolution (spec §5.1–5.5).
#include "saes/training/schedules.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string_view>

#include "saes/core/error.h"

namespace saes::training {
namespace {

std::int64_t resolve_key(std::string_view key, const StepsOrFraction& value, std::int64_t total) {
  if (value.is_fraction) {
    SAES_CHECK(value.fraction >= 0.0 && value.fraction <= 1.0, ConfigError,
               "trainer.{}: expected a fraction in [0, 1], got {}", key, value.fraction);
  } else {
    SAES_CHECK(value.steps >= 0, ConfigError, "trainer.{}: expected >= 0 steps, got {}", key,
               value.steps);
  }
  return value.resolve(total);
}

}  // namespace

std::int64_t total_training_steps(std::int64_t total_training_tokens,
                                  std::int64_t tokens_per_batch) {
  SAES_CHECK(tokens_per_batch > 0, ConfigError, "batch size: expected > 0 tokens, got {}",
             tokens_per_batch);
  const std::int64_t steps = total_training_tokens / tokens_per_batch;
  SAES_CHECK(steps > 0, ConfigError,
             "trainer.total_training_tokens: {} is less than one batch of {} tokens",
             total_training_tokens, tokens_per_batch);
  return steps;
}

ScheduleSteps resolve_schedule_steps(const TrainerConfig& config, std::int64_t total_steps) {
  ScheduleSteps s;
  s.total = total_steps;
  s.lr_warm_up = resolve_key("lr_warm_up_steps", config.lr_warm_up_steps, total_steps);
  s.lr_cool_down = resolve_key("lr_cool_down_steps", config.lr_cool_down_steps, total_steps);
  s.l1_warm_up =
      resolve_key("l1_coefficient_warmup_steps", config.l1_coefficient_warmup_steps, total_steps);
  s.k_warm_up = resolve_key("k_warmup_steps", config.k_warmup_steps, total_steps);
  s.k_cold_boot = resolve_key("k_cold_booting_steps", config.k_cold_booting_steps, total_steps);
  return s;
}

LrSchedule::LrSchedule(LrScheduler kind, std::int64_t total, std::int64_t warm_up,
                       std::int64_t cool_down, double end_ratio)
    : kind_(kind), total_(total), warm_up_(warm_up), cool_down_(cool_down), end_ratio_(end_ratio) {
  SAES_CHECK(total > 0, ConfigError, "lr schedule: expected > 0 total steps, got {}", total);
  SAES_CHECK(warm_up >= 0 && cool_down >= 0, ConfigError,
             "lr schedule: expected warm-up/cool-down >= 0, got {}/{}", warm_up, cool_down);
  SAES_CHECK(end_ratio >= 0.0 && end_ratio <= 1.0, ConfigError,
             "trainer.lr_end_ratio: expected in [0, 1], got {}", end_ratio);
}

LrSchedule::LrSchedule(const TrainerConfig& config, const ScheduleSteps& steps)
    : LrSchedule(config.lr_scheduler_name, steps.total, steps.lr_warm_up, steps.lr_cool_down,
                 config.lr_end_ratio) {}

double LrSchedule::factor(std::int64_t s) const {
  const double r = end_ratio_;
  const auto T = static_cast<double>(total_);
  const auto W = static_cast<double>(warm_up_);
  if (kind_ == LrScheduler::kConstant) return 1.0;
  if (kind_ == LrScheduler::kConstantWithWarmup) {
    double f = 1.0;
    if (warm_up_ > 0) f = std::min(f, static_cast<double>(s + 1) / W);
    if (cool_down_ > 0) {
      const auto remaining = static_cast<double>(std::max<std::int64_t>(total_ - s, 1));
      f = std::min(f, r + (1.0 - r) / static_cast<double>(cool_down_) * remaining);
    }
    return f;
  }
  if (kind_ == LrScheduler::kCosineAnnealing) {
    const auto t = static_cast<double>(std::clamp<std::int64_t>(s, 0, total_));
    return r + (1.0 - r) * 0.5 * (1.0 + std::cos(std::numbers::pi * t / T));
  }
  if (s < warm_up_) return static_cast<double>(s + 1) / W;
  // Decay phase over [W, T]: progress in [0, 1].
  const double span = std::max(T - W, 1.0);
  const double progress = std::clamp(
      static_cast<double>(std::min<std::int64_t>(s, total_) - warm_up_) / span, 0.0, 1.0);
  switch (kind_) {
    case LrScheduler::kLinearWarmupDecay:
      return r + (1.0 - r) * (1.0 - progress);
    case LrScheduler::kCosineAnnealingWarmup:
      return r + (1.0 - r) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    case LrScheduler::kExponentialWarmup:
      return std::pow(r, progress);
    default:
      SAES_ASSERT(false, "unhandled lr scheduler {}", static_cast<int>(kind_));
  }
  return 1.0;
}

double l1_coefficient_at(std::optional<double> l1_coefficient, std::int64_t step,
                         std::int64_t warm_up) {
  if (!l1_coefficient) return 1.0;
  if (warm_up <= 0) return *l1_coefficient;
  return std::min(1.0, static_cast<double>(step) / static_cast<double>(warm_up)) * *l1_coefficient;
}

KSchedule::KSchedule(std::int64_t top_k) : top_k_(top_k), initial_k_(top_k) {
  SAES_CHECK(top_k >= 1, ConfigError, "top_k: expected >= 1, got {}", top_k);
}

KSchedule::KSchedule(std::int64_t top_k, std::int64_t initial_k, std::int64_t warm_up,
                     std::int64_t cold_boot, KScheduleType type, double exponential_factor)
    : top_k_(top_k),
      initial_k_(initial_k),
      warm_up_(warm_up),
      cold_boot_(cold_boot),
      type_(type),
      exponential_factor_(exponential_factor) {
  SAES_CHECK(top_k >= 1, ConfigError, "top_k: expected >= 1, got {}", top_k);
  SAES_CHECK(initial_k >= top_k, ConfigError, "trainer.initial_k: expected >= top_k = {}, got {}",
             top_k, initial_k);
  SAES_CHECK(warm_up >= 1, ConfigError, "trainer.k_warmup_steps: expected >= 1 step, got {}",
             warm_up);
  SAES_CHECK(cold_boot >= 0, ConfigError,
             "trainer.k_cold_booting_steps: expected >= 0 steps, got {}", cold_boot);
  SAES_CHECK(type != KScheduleType::kExponential || exponential_factor != 0.0, ConfigError,
             "trainer.k_exponential_factor: expected != 0 for the exponential k schedule");
}

KSchedule KSchedule::from_config(const TrainerConfig& config, const ScheduleSteps& steps,
                                 std::int64_t top_k) {
  if (!config.initial_k || steps.k_warm_up <= 0) return KSchedule(top_k);
  return KSchedule(top_k, *config.initial_k, steps.k_warm_up, steps.k_cold_boot,
                   config.k_schedule_type, config.k_exponential_factor);
}

std::int64_t KSchedule::k_at(std::int64_t step) const {
  if (warm_up_ <= 0) return top_k_;
  if (step < cold_boot_) return initial_k_;
  const double p =
      std::min(1.0, static_cast<double>(step - cold_boot_) / static_cast<double>(warm_up_));
  const auto k0 = static_cast<double>(initial_k_);
  const auto kt = static_cast<double>(top_k_);
  double k = 0.0;
  if (type_ == KScheduleType::kLinear) {
    k = k0 + (kt - k0) * p;
  } else {
    const double a = exponential_factor_;
    k = k0 - (k0 - kt) * (1.0 - std::exp(-a * p)) / (1.0 - std::exp(-a));
  }
  return std::max(top_k_, static_cast<std::int64_t>(std::ceil(k)));
}

double KSchedule::mean_k(std::int64_t first, std::int64_t last) const {
  SAES_ASSERT(last >= first, "empty step range [{}, {}]", first, last);
  double sum = 0.0;
  for (std::int64_t s = first; s <= last; ++s) sum += static_cast<double>(k_at(s));
  return sum / static_cast<double>(last - first + 1);
}

}  // namespace saes::training

// Tests of the lr / λ / k schedules against spec §5.8's worked numbers and the formulas of
// §5.3–5.5.
#include "saes/training/schedules.h"

#include <cmath>

#include <catch2/catch.hpp>

#include "saes/core/error.h"

using saes::training::KSchedule;
using saes::training::LrSchedule;
using saes::training::LrScheduler;
using saes::training::StepsOrFraction;
using saes::training::TrainerConfig;

namespace {

// The tiny regression configuration of spec §5.8.
TrainerConfig tiny_regression_config() {
  TrainerConfig c;
  c.lr = 2e-2;
  c.lr_warm_up_steps = StepsOrFraction::of_steps(100);
  c.total_training_tokens = 2'000'000;
  c.initial_k = 64;
  c.k_warmup_steps = StepsOrFraction::of_steps(200);
  c.log_frequency = 10;
  return c;
}

}  // namespace

TEST_CASE("schedules reproduce the lr, l1 and k numbers of the tiny regression", "[training]") {
  const TrainerConfig c = tiny_regression_config();
  const std::int64_t T = saes::training::total_training_steps(c.total_training_tokens, 2048);
  REQUIRE(T == 976);
  const auto steps = saes::training::resolve_schedule_steps(c, T);
  CHECK(steps.lr_cool_down == 195);
  CHECK(steps.l1_warm_up == 97);
  CHECK(steps.lr_warm_up == 100);
  const LrSchedule lr(c, steps);
  // Logged step N reports the lr of cur_step N-1.
  CHECK(c.lr * lr.factor(199) == Approx(0.02).margin(1e-6));
  CHECK(c.lr * lr.factor(599) == Approx(0.02).margin(1e-6));
  CHECK(c.lr * lr.factor(799) == Approx(0.018212).margin(1e-6));
  CHECK(c.lr * lr.factor(969) == Approx(0.001321).margin(1e-6));
  CHECK(lr.factor(799) == Approx(1.0 / 32 + (31.0 / 32) / 195 * 177).epsilon(1e-15));
  CHECK(saes::training::l1_coefficient_at(c.l1_coefficient, 199, steps.l1_warm_up) == 8e-5);
  CHECK(saes::training::l1_coefficient_at(c.l1_coefficient, 0, steps.l1_warm_up) == 0.0);

  const KSchedule k = KSchedule::from_config(c, steps, 8);
  REQUIRE(k.annealing());
  CHECK(k.k_at(0) == 64);
  CHECK(k.k_at(190) == 11);
  CHECK(k.k_at(193) == 10);
  CHECK(k.k_at(197) == 9);
  CHECK(k.k_at(200) == 8);
  CHECK(k.mean_k(190, 199) == 10.0);
  CHECK(k.mean_k(390, 399) == 8.0);
}

TEST_CASE("lr schedules follow their formulas and all end at lr_end_ratio", "[training]") {
  const double r = 0.1;
  const std::int64_t T = 100;
  const std::int64_t W = 10;
  const LrSchedule constant(LrScheduler::kConstant, T, W, 20, r);
  CHECK(constant.factor(0) == 1.0);
  CHECK(constant.factor(99) == 1.0);

  const LrSchedule cww(LrScheduler::kConstantWithWarmup, T, W, 20, r);
  CHECK(cww.factor(0) == Approx(0.1));
  CHECK(cww.factor(4) == Approx(0.5));
  CHECK(cww.factor(50) == 1.0);
  CHECK(cww.factor(90) == Approx(r + (1 - r) / 20 * 10));
  CHECK(cww.factor(100) == Approx(r + (1 - r) / 20));

  const LrSchedule lin(LrScheduler::kLinearWarmupDecay, T, W, 0, r);
  CHECK(lin.factor(9) == Approx(1.0));
  CHECK(lin.factor(10) == Approx(1.0));
  CHECK(lin.factor(55) == Approx(r + (1 - r) * 0.5));
  CHECK(lin.factor(100) == Approx(r));

  const LrSchedule cos(LrScheduler::kCosineAnnealing, T, 0, 0, r);
  CHECK(cos.factor(0) == Approx(1.0));
  CHECK(cos.factor(50) == Approx(r + (1 - r) * 0.5));
  CHECK(cos.factor(100) == Approx(r));
  CHECK(cos.factor(150) == Approx(r));

  const LrSchedule cosw(LrScheduler::kCosineAnnealingWarmup, T, W, 0, r);
  CHECK(cosw.factor(4) == Approx(0.5));
  CHECK(cosw.factor(10) == Approx(1.0));
  CHECK(cosw.factor(55) == Approx(r + (1 - r) * 0.5));
  CHECK(cosw.factor(100) == Approx(r));

  const LrSchedule expw(LrScheduler::kExponentialWarmup, T, W, 0, 1.0 / 32);
  CHECK(expw.factor(10) == Approx(1.0));
  CHECK(expw.factor(55) == Approx(std::pow(1.0 / 32, 0.5)));
  CHECK(expw.factor(100) == Approx(1.0 / 32));
}

TEST_CASE("zero warm-up and cool-down do not divide by zero", "[training]") {
  for (auto kind : {LrScheduler::kConstantWithWarmup, LrScheduler::kLinearWarmupDecay,
                    LrScheduler::kCosineAnnealingWarmup, LrScheduler::kExponentialWarmup}) {
    const LrSchedule s(kind, 10, 0, 0, 0.5);
    CHECK(s.factor(0) == Approx(1.0));
    CHECK(std::isfinite(s.factor(10)));
  }
  CHECK(saes::training::l1_coefficient_at(0.3, 0, 0) == 0.3);
  CHECK(saes::training::l1_coefficient_at(std::nullopt, 0, 10) == 1.0);
  const LrSchedule whole_run_warmup(LrScheduler::kLinearWarmupDecay, 10, 10, 0, 0.0);
  CHECK(std::isfinite(whole_run_warmup.factor(10)));
}

TEST_CASE("k schedule honours cold boot and the exponential shape", "[training]") {
  const KSchedule lin(8, 64, 100, 10, saes::training::KScheduleType::kLinear, 3.0);
  CHECK(lin.k_at(9) == 64);
  CHECK(lin.k_at(10) == 64);
  CHECK(lin.k_at(60) == 36);
  CHECK(lin.k_at(500) == 8);
  const KSchedule ex(8, 64, 100, 0, saes::training::KScheduleType::kExponential, 3.0);
  const double a = 3.0;
  const double expected = 64 - 56 * (1 - std::exp(-a * 0.5)) / (1 - std::exp(-a));
  CHECK(ex.k_at(50) == static_cast<std::int64_t>(std::ceil(expected)));
  CHECK(ex.k_at(100) == 8);
  CHECK(KSchedule(8).k_at(0) == 8);
  CHECK_THROWS_AS(KSchedule(8, 4, 10, 0, saes::training::KScheduleType::kLinear, 3.0),
                  saes::ConfigError);
}

TEST_CASE("step fields resolve fractions by truncation and reject bad values", "[training]") {
  TrainerConfig c;
  c.lr_warm_up_steps = StepsOrFraction::of_fraction(0.25);
  const auto s = saes::training::resolve_schedule_steps(c, 10);
  CHECK(s.lr_warm_up == 2);
  CHECK(s.lr_cool_down == 2);
  c.k_warmup_steps = StepsOrFraction::of_fraction(1.5);
  CHECK_THROWS_AS(saes::training::resolve_schedule_steps(c, 10), saes::ConfigError);
  CHECK_THROWS_AS(saes::training::total_training_steps(100, 2048), saes::ConfigError);
}

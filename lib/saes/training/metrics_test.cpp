// Tests of batch statistics, window averaging, dead features and metrics.jsonl.
#include "saes/training/metrics.h"

#include <fstream>
#include <sstream>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

#include "support/temp_dir.h"

using saes::training::MetricsTracker;
using saes::training::MetricValues;
using saes::training::StepRecord;

namespace {

double value_of(const MetricValues& values, const std::string& key) {
  for (const auto& [k, v] : values) {
    if (k == key) return v;
  }
  FAIL("missing metric " << key);
  return 0.0;
}

StepRecord record(double loss, double l0, double tokens, at::Tensor fired, double grad) {
  StepRecord r;
  r.losses["overall_loss"] = loss;
  r.losses["mse_loss"] = loss / 2;
  saes::training::BatchStats s;
  s.l0_sum = l0 * tokens;
  s.n_tokens = tokens;
  s.fired = std::move(fired);
  s.explained_variance = loss;
  r.stats = s;
  r.grad_norm_before_clipping = grad;
  r.grad_norm_after_clipping = grad / 2;
  r.learning_rate = loss * 10;
  return r;
}

}  // namespace

TEST_CASE("batch statistics follow the spec's definitions", "[training]") {
  const at::Tensor y = at::tensor(std::vector<float>{1, 0, 0, 1, 5, 5}).reshape({3, 2});
  const at::Tensor x_hat = at::tensor(std::vector<float>{1, 0, 0, 0, 0, 0}).reshape({3, 2});
  const at::Tensor f = at::tensor(std::vector<float>{2, 0, 0, 4, 6, 0}).reshape({3, 2});
  const at::Tensor mask = at::tensor(std::vector<float>{1, 1, 0});
  const auto s = saes::training::compute_batch_stats(x_hat, y, f, mask);
  // Valid tokens: y = (1,0), (0,1); mean (0.5,0.5); var per token 0.5; errors 0 and 1.
  CHECK(s.n_tokens == 2.0);
  CHECK(s.explained_variance == Approx(1.0 - 1.0 / 1.0));
  CHECK(s.explained_variance_legacy == Approx((1.0 + (1.0 - 1.0 / 0.5)) / 2));
  CHECK(s.l2_norm_error == Approx(0.5));
  CHECK(s.l2_norm_error_ratio == Approx(0.5));
  CHECK(s.l0_sum == 2.0);
  CHECK(s.mean_feature_act == Approx(3.0));
  CHECK(s.fired[0].item<double>() == 1.0);
  CHECK(s.fired[1].item<double>() == 1.0);
}

TEST_CASE("metrics average over the log window and log at (step+1) % freq == 0", "[training]") {
  MetricsTracker t(2, 3, 5);
  CHECK_FALSE(t.should_log(0));
  CHECK(t.should_log(2));
  const at::Tensor fired = at::tensor(std::vector<double>{2.0, 0.0});
  t.update(record(1.0, 11, 2, fired, 1.0));
  t.track_firing(fired, 2);
  t.update(record(2.0, 10, 2, fired, 3.0));
  t.track_firing(fired, 2);
  CHECK_FALSE(t.dead_mask()[1].item<bool>());
  t.update(record(3.0, 9, 4, fired, 2.0));
  t.track_firing(fired, 4);
  CHECK(t.dead_mask()[1].item<bool>());
  CHECK_FALSE(t.dead_mask()[0].item<bool>());
  const MetricValues v = t.flush({{"metrics/decoder_norm", 0.7}});
  CHECK(value_of(v, "losses/overall_loss") == Approx(2.0));
  CHECK(value_of(v, "losses/mse_loss") == Approx(1.0));
  CHECK(value_of(v, "metrics/l0") == Approx((22.0 + 20.0 + 36.0) / 8.0));
  CHECK(value_of(v, "metrics/gradient_norm_before_clipping") == 3.0);
  CHECK(value_of(v, "metrics/gradient_norm_per_param") == 1.5);
  CHECK(value_of(v, "details/current_learning_rate") == 30.0);
  CHECK(value_of(v, "sparsity/above_1e-1") == 1.0);
  CHECK(value_of(v, "sparsity/below_1e-5") == 1.0);
  CHECK(value_of(v, "sparsity/dead_features") == 1.0);
  CHECK(value_of(v, "metrics/decoder_norm") == 0.7);
  CHECK(saes::training::console_summary(v) == "loss 2 | L0 9.75 | EV 2.0000");
  // The next window starts empty.
  t.update(record(5.0, 1, 1, fired, 0.0));
  CHECK(value_of(t.flush(), "losses/overall_loss") == 5.0);
}

TEST_CASE("window-averaged L0 of a TopK run equals the mean k of spec 5.8", "[training]") {
  MetricsTracker t(1, 10, 100);
  for (int k : {11, 11, 11, 10, 10, 10, 10, 9, 9, 9}) {
    t.update(record(0.0, k, 2048, at::ones({1}, at::kDouble), 0.0));
  }
  CHECK(value_of(t.flush(), "metrics/l0") == 10.0);
}

TEST_CASE("metrics state round-trips mid-window", "[training]") {
  MetricsTracker a(2, 4, 3);
  const at::Tensor fired = at::tensor(std::vector<double>{1.0, 0.0});
  a.update(record(1.0, 2, 2, fired, 1.0));
  std::map<std::string, at::Tensor> state;
  for (auto& [k, v] : a.state_tensors()) state[k] = v.clone();
  MetricsTracker b(2, 4, 3);
  b.load_state(state);
  a.update(record(2.0, 1, 2, fired, 4.0));
  b.update(record(2.0, 1, 2, fired, 4.0));
  CHECK(a.flush() == b.flush());
  MetricsTracker wrong(3, 4, 3);
  CHECK_THROWS_AS(wrong.load_state(state), saes::DataError);
}

TEST_CASE("metrics.jsonl gets one object per line and is truncated on resume", "[training]") {
  saes::testing::TempDir dir;
  const auto path = dir / "metrics.jsonl";
  {
    saes::training::MetricsLog log(path);
    for (int step : {10, 20, 30}) log.write(step, {{"metrics/l0", step / 10.0}});
  }
  {
    std::ofstream torn(path, std::ios::app);
    torn << "{\"step\": 40, \"metr";
  }
  {
    saes::training::MetricsLog log(path, 20);
    log.write(30, {{"metrics/l0", 33.0}});
  }
  std::istringstream in(saes::io::read_file(path));
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["step"] == 10);
  CHECK(lines[1]["metrics/l0"] == 2.0);
  CHECK(lines[2]["metrics/l0"] == 33.0);
}

TEST_CASE("batch stats from per-token activation sums equal those from the dense activations",
          "[training]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const at::Tensor f = at::relu(at::randn({6, 40}, gen) - 1.0);
  const at::Tensor y = at::randn({6, 8}, gen), x_hat = at::randn({6, 8}, gen);
  const at::Tensor mask = at::tensor({1, 0, 1, 1, 1, 0});
  const at::Tensor fired = (f.gt(0) * mask.unsqueeze(1)).sum(0);
  const auto dense = saes::training::compute_batch_stats(x_hat, y, f, mask);
  const auto sums = saes::training::compute_batch_stats(x_hat, y, f.sum(1, true), mask, fired);
  CHECK(sums.mean_feature_act == Approx(dense.mean_feature_act));
  CHECK(sums.l0_sum == Approx(dense.l0_sum));
  CHECK(at::equal(sums.fired, dense.fired));
  CHECK(sums.explained_variance == Approx(dense.explained_variance));
}

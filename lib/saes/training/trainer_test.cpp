// Tests of the training loop on a fake dictionary (affine map x -> xW + b with its exact gradient):
// resume equivalence, signals, NaN stop, stream exhaustion, several dictionaries on one stream.
#include "saes/training/trainer.h"

#include <cmath>
#include <csignal>
#include <filesystem>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/dictionaries/sae.h"
#include "saes/io/atomic_file.h"
#include "saes/io/safetensors.h"
#include "saes/training/checkpoint.h"
#include "saes/training/dictionary_module.h"
#include "saes/training/stop_signal.h"

#include "support/temp_dir.h"

namespace fs = std::filesystem;
using namespace saes::training;

namespace {

constexpr std::int64_t kDim = 4;
constexpr std::int64_t kRows = 8;

// Batch i is a deterministic function of i, so the state is just the next index.
class FakeStream : public BatchSource {
 public:
  explicit FakeStream(std::int64_t limit = 1'000'000) : limit_(limit) {}
  std::optional<TrainBatch> next() override {
    if (index_ >= limit_) return std::nullopt;
    ++calls;
    const auto i = static_cast<double>(index_++);
    TrainBatch b;
    b.acts["hook"] =
        at::arange(kRows * kDim, at::kFloat).mul(0.37).add(i).sin().reshape({kRows, kDim});
    b.n_tokens = kRows;
    return b;
  }
  std::string state() const override { return std::to_string(index_); }
  void restore(const std::string& state) override { index_ = std::stoll(state); }
  int calls = 0;

 private:
  std::int64_t index_ = 0;
  std::int64_t limit_;
};

// x̂ = x W + b, loss = mean_tokens Σ_d (x̂ - x)², features = relu(x W).
class FakeAffine : public TrainableModule {
 public:
  FakeAffine()
      : w_(at::eye(kDim, at::kFloat).mul(0.5)),
        b_(at::zeros({kDim}, at::kFloat)),
        gw_(at::zeros_like(w_)),
        gb_(at::zeros_like(b_)) {}
  std::vector<Parameter> parameters() override {
    return {{"W_E", w_, gw_, 1.0, true}, {"b_E", b_, gb_, 0.5, false}};
  }
  std::int64_t n_features() const override { return kDim; }
  std::optional<std::int64_t> top_k() const override { return 2; }
  StepOutput forward_backward(const TrainBatch& batch, const StepContext& ctx) override {
    if (raise_at && ctx.step == *raise_at) std::raise(SIGUSR1);
    const at::Tensor x = batch.acts.at("hook");
    const at::Tensor x_hat = x.matmul(w_).add(b_);
    const at::Tensor diff = x_hat.sub(x);
    const auto n = static_cast<double>(x.size(0));
    gw_.copy_(x.t().matmul(diff).mul(2.0 / n));
    gb_.copy_(diff.sum(0).mul(2.0 / n));
    StepOutput out;
    const double loss = diff.pow(2).sum().item<double>() / n;
    out.losses["overall_loss"] = (nan_at && ctx.step == *nan_at) ? std::nan("") : loss;
    out.losses["mse_loss"] = loss;
    out.reconstructed = x_hat;
    out.label = x;
    out.feature_acts = x.matmul(w_).relu();
    seen_k.push_back(ctx.k);
    return out;
  }
  std::map<std::string, double> statistics() const override {
    return {{"metrics/decoder_norm", w_.norm().item<double>()}};
  }
  void save(const fs::path& dir, bool write) const override {
    if (!write) return;
    saes::io::save_safetensors(dir / "sae_weights.safetensors",
                               std::map<std::string, at::Tensor>{{"W_E", w_}, {"b_E", b_}});
  }
  void load(const fs::path& dir) override {
    const auto file = saes::io::SafetensorsFile::open(dir / "sae_weights.safetensors");
    w_.copy_(file.tensor("W_E"));
    b_.copy_(file.tensor("b_E"));
  }
  const at::Tensor& weight() const { return w_; }

  std::optional<std::int64_t> raise_at;
  std::optional<std::int64_t> nan_at;
  std::vector<std::int64_t> seen_k;

 private:
  at::Tensor w_, b_, gw_, gb_;
};

TrainerConfig small_config(const fs::path& run_dir) {
  TrainerConfig c;
  c.lr = 0.05;
  c.total_training_tokens = 20 * kRows;
  c.lr_warm_up_steps = StepsOrFraction::of_steps(2);
  c.initial_k = 4;
  c.k_warmup_steps = StepsOrFraction::of_steps(4);
  c.log_frequency = 3;
  c.n_checkpoints = 4;
  c.check_point_save_mode = CheckpointSaveMode::kLinear;
  c.clip_grad_norm = 1.0;
  c.exp_result_path = run_dir;
  return c;
}

FitResult run(const TrainerConfig& c, FakeAffine& module, FakeStream& stream,
              const SignalGuard* signals = nullptr, const fs::path& resume_from = {}) {
  saes::Logger logger(saes::LogLevel::kWarn);
  TrainerOptions options;
  options.signals = signals;
  options.progress = saes::ProgressMode::kOff;
  Trainer trainer(c, {{"", &module, c}}, stream, logger, options);
  if (!resume_from.empty()) trainer.resume(resume_from);
  return trainer.fit();
}

}  // namespace

TEST_CASE("a resumed run logs the same metrics and ends with the same weights", "[training]") {
  saes::testing::TempDir dir;
  const TrainerConfig ca = small_config(dir / "a");
  FakeAffine a;
  FakeStream sa;
  const FitResult ra = run(ca, a, sa);
  CHECK(ra.outcome == FitOutcome::kCompleted);
  CHECK(ra.steps == 20);
  CHECK(list_checkpoints(dir / "a") == std::vector<std::int64_t>{5, 10, 15});
  CHECK(a.seen_k ==
        std::vector<std::int64_t>{4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2});

  // Run b is stopped by SIGUSR1 during step 7, then resumed from the (earlier) step-5 checkpoint:
  // metrics lines after step 5 are dropped and written again.
  const TrainerConfig cb = small_config(dir / "b");
  {
    SignalGuard guard;
    FakeAffine b;
    b.raise_at = 7;
    FakeStream sb;
    const FitResult rb = run(cb, b, sb, &guard);
    CHECK(rb.outcome == FitOutcome::kInterrupted);
    CHECK(rb.steps == 8);
    REQUIRE(rb.checkpoint == checkpoint_path(dir / "b", 8));
  }
  FakeAffine b2;
  FakeStream sb2;
  const FitResult rb2 = run(cb, b2, sb2, nullptr, checkpoint_path(dir / "b", 5));
  CHECK(rb2.outcome == FitOutcome::kCompleted);
  CHECK(sb2.calls == 15);
  CHECK(at::equal(a.weight(), b2.weight()));
  const std::string metrics_a = saes::io::read_file(dir / "a" / "metrics.jsonl");
  CHECK(metrics_a == saes::io::read_file(dir / "b" / "metrics.jsonl"));
  CHECK(std::count(metrics_a.begin(), metrics_a.end(), '\n') == 6);
  CHECK(metrics_a.find("\"step\":3,") != std::string::npos);
  CHECK(metrics_a.find("\"sparsity/k\":3.0") != std::string::npos);
  CHECK(fs::exists(dir / "a" / "sae_weights.safetensors"));
}

TEST_CASE("a non-finite loss stops training and keeps the last good checkpoint", "[training]") {
  saes::testing::TempDir dir;
  const TrainerConfig c = small_config(dir.path());
  FakeAffine m;
  m.nan_at = 7;
  FakeStream s;
  CHECK_THROWS_AS(run(c, m, s), saes::DataError);
  CHECK(list_checkpoints(dir.path()) == std::vector<std::int64_t>{5});
  FakeAffine m2;
  m2.nan_at = 7;
  FakeStream s2;
  saes::testing::TempDir dir2;
  const std::string message = [&] {
    try {
      run(small_config(dir2.path()), m2, s2);
    } catch (const saes::DataError& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  CHECK_THAT(message, Catch::Contains("non-finite loss") && Catch::Contains("at step 7") &&
                          !Catch::Contains("dictionary ''"));
  // Nothing was updated at the failing step: the weights are those after step 6.
  FakeAffine ref;
  FakeStream rs(7);
  CHECK(run(small_config(dir / "ref"), ref, rs).outcome == FitOutcome::kStreamExhausted);
  CHECK(at::equal(m.weight(), ref.weight()));
}

TEST_CASE("an exhausted stream ends the run with a resumable checkpoint", "[training]") {
  saes::testing::TempDir dir;
  TrainerConfig c = small_config(dir.path());
  c.n_checkpoints = 0;
  FakeAffine m;
  FakeStream s(6);
  const FitResult r = run(c, m, s);
  CHECK(r.outcome == FitOutcome::kStreamExhausted);
  CHECK(r.steps == 6);
  CHECK(r.checkpoint == checkpoint_path(dir.path(), 6));
  CHECK(load_trainer_state(*r.checkpoint).stream_state == "6");
  CHECK_FALSE(fs::exists(dir / "sae_weights.safetensors"));
}

TEST_CASE("several dictionaries share one stream with their own folders", "[training]") {
  saes::testing::TempDir dir;
  const TrainerConfig c = small_config(dir.path());
  TrainerConfig slow = c;
  slow.lr = 0.001;
  FakeAffine fast_module, slow_module;
  FakeStream s;
  saes::Logger logger(saes::LogLevel::kWarn);
  TrainerOptions options;
  options.progress = saes::ProgressMode::kOff;
  Trainer trainer(c, {{"fast", &fast_module, c}, {"slow", &slow_module, slow}}, s, logger, options);
  CHECK(trainer.fit().outcome == FitOutcome::kCompleted);
  CHECK(s.calls == 20);
  CHECK(fs::exists(dir / "fast" / "metrics.jsonl"));
  CHECK(fs::exists(dir / "slow" / "sae_weights.safetensors"));
  CHECK(fs::exists(checkpoint_path(dir.path(), 5) / "slow" / "optimizer.safetensors"));
  CHECK_FALSE(at::equal(fast_module.weight(), slow_module.weight()));
  CHECK_THROWS_AS(Trainer(c, {{"x", &fast_module, c}, {"x", &slow_module, c}}, s, logger),
                  saes::ConfigError);
}

TEST_CASE("skip_metrics_calculation trains without metric lines", "[training]") {
  saes::testing::TempDir dir;
  TrainerConfig c = small_config(dir.path());
  c.skip_metrics_calculation = true;
  FakeAffine m;
  FakeStream s;
  CHECK(run(c, m, s).outcome == FitOutcome::kCompleted);
  CHECK(saes::io::read_file(dir / "metrics.jsonl").empty());
}

TEST_CASE("trainer.auxk_detach_residual reaches the step's Aux-K", "[training]") {
  namespace sd = saes::dictionaries;
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 6;
  cfg.expansion_factor = 4;
  cfg.act_fn = sd::ActFn::kTopK;
  cfg.top_k = 2;
  cfg.hook_point_in = cfg.hook_point_out = "blocks.0.hook_resid_pre";
  cfg.norm_activation = sd::NormActivation::kInference;
  cfg.dtype = saes::DType::kFloat64;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const at::Tensor x = at::randn({16, 6}, gen, at::kDouble);
  saes::training::TrainBatch batch;
  batch.acts[cfg.hook_point_in] = x;
  batch.n_tokens = 16;
  saes::training::StepContext context;
  context.k = 2;
  context.dead = at::arange(24).ge(12);  // half the features dead
  std::map<bool, at::Tensor> grads;
  for (const bool detach : {false, true}) {
    sd::SparseAutoEncoder sae(cfg);
    auto g = at::make_generator<at::CPUGeneratorImpl>(9);
    sae.init_parameters({1.0, 1.0, std::nullopt}, g);
    saes::training::TrainerConfig t;
    t.auxk_coefficient = 0.5;
    t.k_aux = 4;
    t.auxk_detach_residual = detach;
    saes::training::DictionaryModule module(sae, t);
    const auto out = module.forward_backward(batch, context);
    CHECK(out.losses.at("aux_loss") > 0);
    // the same step through LossSettings directly
    sd::SparseAutoEncoder direct(cfg);
    auto g2 = at::make_generator<at::CPUGeneratorImpl>(9);
    direct.init_parameters({1.0, 1.0, std::nullopt}, g2);
    sd::LossSettings ls;
    ls.auxk_coefficient = 0.5;
    ls.k_aux = 4;
    ls.auxk_detach_residual = detach;
    ls.current_k = 2;
    sd::TrainBatch in;
    in.acts[cfg.hook_point_in] = x;
    in.dead = context.dead;
    direct.forward_backward(in, ls);
    CHECK(at::allclose(sae.parameters()[0].grad, direct.parameters()[0].grad));
    grads[detach] = sae.parameters()[0].grad.clone();
  }
  CHECK_FALSE(at::allclose(grads[false], grads[true]));  // the key changes the gradient
}

// Failure injection in data-parallel training for tests/mpi/abort_test.sh (hidden: runs only when
// selected with "[abort_train]"): rank 1's batch source throws at step 3 while the other ranks wait
// in the step's all-reduce; the error goes through abort_all as in the apps, and must end them all.
#include <optional>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/core/logging.h"
#include "saes/distributed/communicator.h"
#include "saes/training/trainer.h"

#include "mpi/mpi_world.h"
#include "support/temp_dir.h"

namespace {

using namespace saes::training;

class FailingSource : public BatchSource {
 public:
  explicit FailingSource(int rank) : rank_(rank) {}
  std::optional<TrainBatch> next() override {
    SAES_CHECK(!(rank_ == 1 && step_ == 3), saes::DataError,
               "injected failure: bad shard on rank {} at step {}", rank_, step_);
    ++step_;
    TrainBatch b;
    b.acts["hook"] = at::ones({4, 2}, at::kFloat);
    b.n_tokens = 4;
    return b;
  }
  std::string state() const override { return std::to_string(step_); }
  void restore(const std::string&) override {}

 private:
  int rank_;
  int step_ = 0;
};

// x̂ = x ⊙ w; loss = mean_tokens Σ (x̂ - x)².
class Scale : public TrainableModule {
 public:
  std::vector<Parameter> parameters() override { return {{"w", w_, g_, 1.0, true}}; }
  std::int64_t n_features() const override { return 2; }
  std::optional<std::int64_t> top_k() const override { return std::nullopt; }
  StepOutput forward_backward(const TrainBatch& batch, const StepContext&) override {
    const at::Tensor x = batch.acts.at("hook");
    const at::Tensor diff = x.mul(w_).sub(x);
    g_.copy_(diff.mul(x).sum(0).mul(2.0 / static_cast<double>(x.size(0))));
    StepOutput out;
    out.losses["overall_loss"] = diff.pow(2).sum().item<double>() / static_cast<double>(x.size(0));
    out.reconstructed = x.mul(w_);
    out.label = x;
    out.feature_acts = x.relu();
    return out;
  }
  std::map<std::string, double> statistics() const override { return {}; }
  void save(const std::filesystem::path&, bool) const override {}
  void load(const std::filesystem::path&) override {}

 private:
  at::Tensor w_ = at::full({2}, 0.5, at::kFloat);
  at::Tensor g_ = at::zeros({2}, at::kFloat);
};

}  // namespace

TEST_CASE("a rank failing during data parallel training ends the whole job", "[.][abort_train]") {
  saes::distributed::Communicator& world = saes::testing::mpi_world();
  saes::Logger logger(saes::LogLevel::kError);
  const saes::testing::TempDir tmp;
  Scale module;
  FailingSource source(world.rank());
  TrainerConfig config;
  config.amp_dtype = saes::DType::kFloat32;
  config.total_training_tokens = 1'000'000;
  config.n_checkpoints = 0;
  config.exp_result_path = tmp.path();
  TrainerOptions options;
  options.progress = saes::ProgressMode::kOff;
  options.data_parallel = &world;
  options.write_files = false;
  try {
    Trainer trainer(config, {TrainerMember{"", &module, config}}, source, logger, options);
    trainer.fit();
  } catch (const saes::Error& e) {
    saes::distributed::abort_all(world, static_cast<int>(e.exit_code()), e.what());
  }
  FAIL("training finished although rank 1 failed");
}

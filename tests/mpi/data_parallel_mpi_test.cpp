// Data-parallel training on N ranks equals one process on the global batch: each rank trains on
// its slice (data::slice_for_rank) of the same deterministic global batches, with masks that give
// the ranks different numbers of valid tokens, and ends with the weights that a single-process
// Trainer on the full batches (run on every rank as the reference) reaches. Also checkpoint/resume
// under data parallelism and the token counters of the global batch.
#include <cmath>
#include <filesystem>
#include <optional>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/core/logging.h"
#include "saes/dictionaries/sae.h"
#include "saes/training/checkpoint.h"
#include "saes/training/dictionary_module.h"
#include "saes/training/trainer.h"

#include "mpi/mpi_world.h"
#include "mpi/sliced_source.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
namespace sd = saes::dictionaries;
using namespace saes::training;

constexpr std::int64_t kDim = 8;
constexpr std::int64_t kSequences = saes::testing::kSlicedSequences;  // global batch: 8 × 6 tokens
constexpr std::int64_t kContext = saes::testing::kSlicedContext;
constexpr const char* kHook = "blocks.0.hook_resid_post";

sd::SparseDictionaryConfig sae_config(sd::ActFn act) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = kDim;
  cfg.expansion_factor = 4.0;
  cfg.act_fn = act;
  cfg.top_k = 3;
  cfg.hook_point_in = kHook;
  cfg.hook_point_out = kHook;
  return cfg;
}

TrainerConfig trainer_config(sd::ActFn act, const fs::path& dir) {
  TrainerConfig c;
  c.amp_dtype = saes::DType::kFloat32;
  c.lr = 1e-2;
  c.lr_warm_up_steps = StepsOrFraction::of_steps(2);
  c.total_training_tokens = 8 * kSequences * kContext;  // 8 steps
  c.log_frequency = 2;
  c.n_checkpoints = 0;
  c.clip_grad_norm = 0.5;
  c.exp_result_path = dir;
  if (act == sd::ActFn::kTopK) {
    c.auxk_coefficient = 1.0 / 32;
    c.dead_threshold = 10;
  } else {
    c.sparsity_loss_type = SparsityLossType::kPower;
    c.l1_coefficient = 1e-2;
  }
  return c;
}

struct Run {
  sd::SparseAutoEncoder sae;
  DictionaryModule module;
  saes::testing::SlicedSource source;
  std::optional<Trainer> trainer;

  Run(sd::ActFn act, const TrainerConfig& config, int rank, int world,
      saes::distributed::Communicator* data, saes::Logger& logger)
      : sae(sae_config(act)), module(sae, config), source(kHook, kDim, 1000, rank, world) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
    sae.init_parameters({0.5, 0.5, std::nullopt}, gen);
    sae.set_dataset_norm(kHook, 2.5);  // as the runner computes it from the global batches
    TrainerOptions options;
    options.progress = saes::ProgressMode::kOff;
    options.data_parallel = data;
    options.write_files = data == nullptr || data->rank() == 0;
    trainer.emplace(config, std::vector<TrainerMember>{{"", &module, config}}, source, logger,
                    options);
  }
};

void check_same_weights(sd::SparseAutoEncoder& a, sd::SparseAutoEncoder& b) {
  auto pa = a.parameters();
  auto pb = b.parameters();
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].name << ": max |diff| " << (pa[i].value - pb[i].value).abs().max().item<double>());
    CHECK(at::allclose(pa[i].value, pb[i].value, 1e-4, 1e-5));
  }
}

/// A run folder path shared by all ranks (rank 0's temp dir).
fs::path shared_dir(const saes::testing::TempDir& mine) {
  std::string path = mine.path().string();
  saes::testing::mpi_world().broadcast_string(path, 0);
  return path;
}

}  // namespace

TEST_CASE("data parallel training reproduces the single-process weights", "[mpi][train]") {
  saes::distributed::Communicator& world = saes::testing::mpi_world();
  saes::Logger logger(saes::LogLevel::kError);
  for (const sd::ActFn act : {sd::ActFn::kRelu, sd::ActFn::kTopK}) {
    INFO((act == sd::ActFn::kRelu ? "relu + L1" : "topk + auxk")
         << " on " << world.size() << " ranks");
    const saes::testing::TempDir tmp;
    const TrainerConfig config = trainer_config(act, shared_dir(tmp) / "dp");
    TrainerConfig reference_config = config;
    reference_config.exp_result_path = tmp.path() / "single";
    Run single(act, reference_config, 0, 1, nullptr, logger);
    Run parallel(act, config, world.rank(), world.size(), &world, logger);
    const FitResult a = single.trainer->fit();
    const FitResult b = parallel.trainer->fit();
    CHECK(a.steps == 8);
    CHECK(b.steps == a.steps);
    CHECK(b.tokens == a.tokens);  // global valid tokens, not this rank's share
    check_same_weights(single.sae, parallel.sae);
    world.barrier();
  }
}

TEST_CASE("a data parallel run resumed from its checkpoint ends like an uninterrupted one",
          "[mpi][train]") {
  saes::distributed::Communicator& world = saes::testing::mpi_world();
  saes::Logger logger(saes::LogLevel::kError);
  const saes::testing::TempDir tmp;
  TrainerConfig config = trainer_config(sd::ActFn::kTopK, shared_dir(tmp) / "run");
  config.n_checkpoints = 4;
  config.check_point_save_mode = CheckpointSaveMode::kLinear;
  Run full(sd::ActFn::kTopK, config, world.rank(), world.size(), &world, logger);
  full.trainer->fit();
  world.barrier();  // rank 0 has written every checkpoint

  const std::vector<std::int64_t> steps = list_checkpoints(config.exp_result_path);
  REQUIRE(steps.size() >= 2);
  REQUIRE(steps.front() < 8);
  Run resumed(sd::ActFn::kTopK, config, world.rank(), world.size(), &world, logger);
  resumed.trainer->resume(checkpoint_path(config.exp_result_path, steps.front()));
  const FitResult r = resumed.trainer->fit();
  CHECK(r.steps == 8);
  CHECK(r.tokens == full.trainer->cur_tokens());
  check_same_weights(full.sae, resumed.sae);
  world.barrier();
}

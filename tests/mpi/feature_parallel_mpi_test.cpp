// Feature (model) parallelism on 2 and 4 ranks: the distributed TopK/BatchTopK selection equals one
// process; a sharded SAE's training step (every act_fn, dense and sparse kernels, gating, every
// loss) equals the whole SAE's step — same losses, L0 and x̂, and each rank's gradients are its
// features' slice of the whole gradients; a sharded save writes the whole dictionary and a
// sharded load reads its slice; training on data × model meshes (M ranks, 2×2) ends with the
// single-process weights, and a checkpoint written on one mesh resumes on another.
#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/core/logging.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/feature_parallel.h"
#include "saes/dictionaries/sae.h"
#include "saes/distributed/mesh.h"
#include "saes/training/checkpoint.h"
#include "saes/training/dictionary_module.h"
#include "saes/training/trainer.h"

#include "mpi/mpi_world.h"
#include "mpi/sharded_checks.h"
#include "mpi/sliced_source.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
namespace sd = saes::dictionaries;
using saes::distributed::Communicator;
using saes::distributed::Mesh;
using saes::distributed::ParallelismConfig;
using namespace saes::training;

constexpr std::int64_t kDim = 8;
constexpr const char* kHook = "blocks.0.hook_resid_post";

using saes::testing::check_sharded_close;
using saes::testing::seeded_randn;

sd::SparseDictionaryConfig sae_config(sd::ActFn act, std::int64_t d_sae) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = kDim;
  cfg.expansion_factor = static_cast<double>(d_sae) / kDim;
  cfg.act_fn = act;
  cfg.top_k = 3;
  cfg.hook_point_in = kHook;
  cfg.hook_point_out = kHook;
  return cfg;
}

/// A whole SAE and its sharded copy; random b_E/b_D and spread JumpReLU thresholds so that every
/// path is exercised.
struct Pair {
  sd::SparseAutoEncoder whole;
  sd::SparseAutoEncoder part;
  Pair(const sd::SparseDictionaryConfig& cfg, Communicator& group)
      : whole(cfg), part(cfg, sd::FeatureShard{&group}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    whole.init_parameters({0.6, 0.6, -1.0}, gen);
    whole.set_dataset_norm(kHook, 2.0);
    part.set_dataset_norm(kHook, 2.0);
    auto wp = whole.parameters();
    for (std::size_t i = 0; i < wp.size(); ++i) {
      const at::Tensor noise = seeded_randn(wp[i].value.sizes().vec(), 30 + i);
      if (wp[i].name == "b_E" || wp[i].name == "b_D") wp[i].value.copy_(noise * 0.1);
      if (wp[i].group == sd::ParamGroup::kJumpRelu) wp[i].value.copy_(noise * 0.3 - 1.0);
    }
    saes::testing::copy_to_shards(whole, part);
  }
};

/// One step of both dictionaries on `batch` (its dead mask, if any, covers every feature; the
/// sharded dictionary gets its slice, as DictionaryModule hands it over).
void check_step(Pair& pair, const sd::TrainBatch& batch, const sd::LossSettings& ls,
                const std::string& what) {
  INFO(what);
  sd::TrainBatch part_batch = batch;
  if (batch.dead.defined()) part_batch.dead = pair.part.local_features(batch.dead, 0);
  const sd::StepResult a = pair.whole.forward_backward(batch, ls);
  const sd::StepResult b = pair.part.forward_backward(part_batch, ls);
  saes::testing::check_sharded_result(b, a);
  check_sharded_close(b.l_p, a.l_p, "l_p");
  check_sharded_close(b.l_aux, a.l_aux, "l_aux");
  CHECK(at::equal(b.fired, pair.part.local_features(a.fired, 0)));
  saes::testing::check_sharded_grads(pair.whole, pair.part);
}

}  // namespace

TEST_CASE("the distributed top-k selection equals one process", "[mpi][feature-parallel]") {
  Communicator& world = saes::testing::mpi_world();
  const std::int64_t M = world.size(), m = 6, N = 5;
  const at::Tensor whole = seeded_randn({N, M * m}, 21);
  const sd::FeatureShard shard{&world};
  const at::Tensor mine = whole.narrow(1, shard.offset(M * m), m);
  for (const sd::ActFn act : {sd::ActFn::kTopK, sd::ActFn::kBatchTopK}) {
    for (const std::int64_t k : {std::int64_t{1}, std::int64_t{4}, M * m}) {
      INFO((act == sd::ActFn::kTopK ? "topk" : "batchtopk") << " k=" << k);
      const at::Tensor want =
          sd::activation_mask(act, whole, {}, k).narrow(1, shard.offset(M * m), m);
      CHECK(at::equal(sd::sharded_activation_mask(act, mine, k, world), want));
    }
  }
  // Aux-K: the ranks hold different numbers of columns (here rank r holds r + 1; rank 0 holds
  // one); the selection still covers exactly the whole one's.
  const std::int64_t cols = world.rank() + 1, total = M * (M + 1) / 2;
  const at::Tensor all = seeded_randn({N, total}, 22);
  const std::int64_t offset = world.rank() * (world.rank() + 1) / 2;
  const at::Tensor want = sd::activation_mask(sd::ActFn::kTopK, all, {}, 2).narrow(1, offset, cols);
  CHECK(at::equal(
      sd::sharded_activation_mask(sd::ActFn::kTopK, all.narrow(1, offset, cols), 2, world), want));
}

TEST_CASE("a feature-sharded SAE step equals the whole SAE's step", "[mpi][feature-parallel]") {
  Communicator& world = saes::testing::mpi_world();
  const std::int64_t d_sae = 8 * world.size();
  sd::TrainBatch batch;
  batch.acts[kHook] = seeded_randn({24, kDim}, 5);
  batch.mask = at::arange(24).remainder(5).ne(0);

  for (const sd::SparseKernels kernels : {sd::SparseKernels::kOff, sd::SparseKernels::kOn}) {
    const std::string k_name = kernels == sd::SparseKernels::kOn ? " (sparse kernels)" : " (dense)";
    {
      auto cfg = sae_config(sd::ActFn::kRelu, d_sae);
      cfg.sparse_kernels = kernels;
      Pair pair(cfg, world);
      sd::LossSettings ls;
      ls.sparsity = sd::SparsityPenalty::kPower;
      ls.l1_coefficient = 0.05;
      check_step(pair, batch, ls, "relu + L1" + k_name);
      ls.p = 2;
      check_step(pair, batch, ls, "relu + L2 norm" + k_name);
      ls.sparsity = sd::SparsityPenalty::kTanhQuad;
      check_step(pair, batch, ls, "relu + tanh-quad" + k_name);
    }
    for (const sd::ActFn act : {sd::ActFn::kTopK, sd::ActFn::kBatchTopK}) {
      auto cfg = sae_config(act, d_sae);
      cfg.sparse_kernels = kernels;
      cfg.sparsity_include_decoder_norm = true;
      Pair pair(cfg, world);
      sd::LossSettings ls;
      ls.sparsity = sd::SparsityPenalty::kTanh;
      ls.l1_coefficient = 0.01;
      ls.auxk_coefficient = 1.0 / 32;
      ls.k_aux = 4;
      sd::TrainBatch with_dead = batch;
      with_dead.dead = at::arange(d_sae).remainder(3).eq(0);  // every third feature
      check_step(pair, with_dead, ls,
                 (act == sd::ActFn::kTopK ? "topk" : "batchtopk") + std::string(" + aux-k + tanh") +
                     k_name);
    }
  }
  auto cfg = sae_config(sd::ActFn::kJumpRelu, d_sae);
  cfg.sparsity_include_decoder_norm = true;
  Pair pair(cfg, world);
  sd::LossSettings ls;
  ls.sparsity = sd::SparsityPenalty::kTanh;
  ls.l1_coefficient = 0.02;
  ls.lp_coefficient = 0.1;
  check_step(pair, batch, ls, "jumprelu + tanh + L_p");
  const at::Tensor f = pair.part.encode(batch.acts.at(kHook));
  check_sharded_close(pair.part.decode(f), pair.whole.decode(pair.whole.encode(batch.acts.at(kHook))),
              "decode(encode)");
  check_sharded_close(pair.part.reconstruction_loss(batch.acts.at(kHook), batch.acts.at(kHook), 0),
              pair.whole.reconstruction_loss(batch.acts.at(kHook), batch.acts.at(kHook), 0),
              "reconstruction_loss");
}

TEST_CASE("a sharded save writes the whole dictionary; a sharded load reads its slice",
          "[mpi][feature-parallel]") {
  Communicator& world = saes::testing::mpi_world();
  const saes::testing::TempDir tmp;
  std::string dir = tmp.path().string();
  world.broadcast_string(dir, 0);
  const fs::path file = fs::path(dir) / "sae.safetensors";
  auto cfg = sae_config(sd::ActFn::kJumpRelu, 4 * world.size());
  Pair pair(cfg, world);
  pair.part.save(file, world.rank() == 0);
  world.barrier();
  sd::SparseAutoEncoder whole(cfg);
  whole.load(file);
  sd::SparseAutoEncoder part(cfg, sd::FeatureShard{&world});
  part.load(file);
  auto a = pair.whole.parameters();
  auto b = whole.parameters();
  auto c = part.parameters();
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].name);
    CHECK(at::equal(b[i].value, a[i].value));
    CHECK(at::equal(c[i].value, c[i].feature_dim >= 0
                                    ? part.local_features(a[i].value, c[i].feature_dim)
                                    : a[i].value));
  }
  world.barrier();
}

namespace {

constexpr std::int64_t kSequences = saes::testing::kSlicedSequences;
constexpr std::int64_t kContext = saes::testing::kSlicedContext;

TrainerConfig trainer_config(const fs::path& dir) {
  TrainerConfig c;
  c.amp_dtype = saes::DType::kFloat32;
  c.lr = 1e-2;
  c.total_training_tokens = 8 * kSequences * kContext;  // 8 steps
  c.log_frequency = 2;
  c.n_checkpoints = 0;
  c.clip_grad_norm = 0.5;
  c.exp_result_path = dir;
  c.auxk_coefficient = 1.0 / 32;
  c.dead_threshold = 10;
  return c;
}

/// A TopK run on `mesh` (nullptr: one process), initialized from the same seed everywhere.
struct Run {
  sd::SparseAutoEncoder sae;
  DictionaryModule module;
  saes::testing::SlicedSource source;
  std::optional<Trainer> trainer;

  Run(const TrainerConfig& config, const Mesh* mesh, saes::Logger& logger)
      : sae(sae_config(sd::ActFn::kTopK, 32),
            mesh ? sd::FeatureShard{&mesh->model()} : sd::FeatureShard{}),
        module(sae, config),
        source(kHook, kDim, 2000, mesh ? mesh->data_rank() : 0, mesh ? mesh->data_size() : 1) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
    sae.init_parameters({0.5, 0.5, std::nullopt}, gen);
    sae.set_dataset_norm(kHook, 2.5);
    TrainerOptions options;
    options.progress = saes::ProgressMode::kOff;
    options.write_files = mesh == nullptr || mesh->is_primary();
    if (mesh && mesh->data_size() > 1) options.data_parallel = &mesh->data();
    if (mesh && mesh->model_size() > 1) options.model_parallel = &mesh->model();
    trainer.emplace(config, std::vector<TrainerMember>{{"", &module, config}}, source, logger,
                    options);
  }

  /// The whole dictionary's parameters (gathered over the model group).
  std::vector<at::Tensor> whole_weights() {
    std::vector<at::Tensor> out;
    for (auto& p : sae.parameters()) {
      out.push_back(p.feature_dim >= 0 ? sae.gather_features(p.value, p.feature_dim) : p.value);
    }
    return out;
  }
};

void check_weights(const std::vector<at::Tensor>& got, const std::vector<at::Tensor>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) check_sharded_close(got[i], want[i], "weights");
}

fs::path shared_dir(const saes::testing::TempDir& mine) {
  std::string path = mine.path().string();
  saes::testing::mpi_world().broadcast_string(path, 0);
  return path;
}

std::vector<ParallelismConfig> meshes(int world) {
  std::vector<ParallelismConfig> out = {{1, world}};
  if (world == 4) out.push_back({2, 2});
  return out;
}

}  // namespace

TEST_CASE("feature-parallel training reproduces the single-process weights",
          "[mpi][feature-parallel][train]") {
  Communicator& world = saes::testing::mpi_world();
  saes::Logger logger(saes::LogLevel::kError);
  const saes::testing::TempDir tmp;
  TrainerConfig single_config = trainer_config(tmp.path() / "single");
  Run single(single_config, nullptr, logger);
  single.trainer->fit();
  const std::vector<at::Tensor> want = single.whole_weights();
  for (const ParallelismConfig& shape : meshes(world.size())) {
    INFO(shape.data_parallel_size << " data x " << shape.model_parallel_size << " model ranks");
    const Mesh mesh(world, shape);
    const fs::path dir = shared_dir(tmp) / ("mp" + std::to_string(shape.data_parallel_size));
    Run parallel(trainer_config(dir), &mesh, logger);
    const FitResult r = parallel.trainer->fit();
    CHECK(r.steps == 8);
    CHECK(r.tokens == single.trainer->cur_tokens());
    check_weights(parallel.whole_weights(), want);
    world.barrier();
    if (world.rank() == 0) {  // the file holds the whole dictionary
      sd::SparseAutoEncoder loaded(sae_config(sd::ActFn::kTopK, 32));
      loaded.load(dir / kWeightsFileName);
      std::vector<at::Tensor> got;
      for (auto& p : loaded.parameters()) got.push_back(p.value);
      check_weights(got, want);
    }
    world.barrier();
  }
}

TEST_CASE("a feature-parallel checkpoint resumes on another mesh and on one process",
          "[mpi][feature-parallel][train]") {
  Communicator& world = saes::testing::mpi_world();
  saes::Logger logger(saes::LogLevel::kError);
  const saes::testing::TempDir tmp;
  const std::vector<ParallelismConfig> shapes = meshes(world.size());
  const ParallelismConfig first = shapes.back();  // 2×2 on 4 ranks, 1×2 on 2
  TrainerConfig config = trainer_config(shared_dir(tmp) / "run");
  config.n_checkpoints = 2;
  config.check_point_save_mode = CheckpointSaveMode::kLinear;
  const Mesh mesh(world, first);
  Run full(config, &mesh, logger);
  full.trainer->fit();
  const std::vector<at::Tensor> want = full.whole_weights();
  world.barrier();
  const std::vector<std::int64_t> steps = list_checkpoints(config.exp_result_path);
  REQUIRE(!steps.empty());
  REQUIRE(steps.front() < 8);
  const fs::path checkpoint = checkpoint_path(config.exp_result_path, steps.front());

  const Mesh other(world, {1, world.size()});  // 1×4 (or 1×2 again on 2 ranks)
  TrainerConfig resumed_config = config;
  resumed_config.exp_result_path = shared_dir(tmp) / "resumed";
  Run resumed(resumed_config, &other, logger);
  resumed.trainer->resume(checkpoint);
  CHECK(resumed.trainer->fit().steps == 8);
  check_weights(resumed.whole_weights(), want);

  TrainerConfig alone_config = config;
  alone_config.exp_result_path = tmp.path() / "alone";
  Run alone(alone_config, nullptr, logger);
  alone.trainer->resume(checkpoint);
  CHECK(alone.trainer->fit().steps == 8);
  check_weights(alone.whole_weights(), want);
  world.barrier();
}

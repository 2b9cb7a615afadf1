// Feature and head parallelism of the crosscoder on 2 and 4 ranks: a sharded crosscoder's step
// (every act_fn, the dense and the sparse step, every penalty, a token mask, L_p) equals the
// whole crosscoder's step — same losses, L0, per-head x̂, per-head metrics and fire counts, each
// rank's gradients its slice of the whole ones; encode/decode agree; a sharded save writes the
// whole dictionary and a sharded load reads its part. Head meshes: 2 heads × 1 on 2 ranks,
// 4 × 1 and 2 heads × 2 model ranks on 4, over 4 heads.
#include <cmath>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/dictionaries/crosscoder.h"
#include "saes/dictionaries/feature_parallel.h"
#include "saes/distributed/mesh.h"
#include "saes/io/safetensors.h"

#include "mpi/mpi_world.h"
#include "mpi/sharded_checks.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
namespace sd = saes::dictionaries;
using saes::distributed::Communicator;
using saes::testing::check_sharded_close;
using saes::testing::seeded_randn;

constexpr std::int64_t kD = 6, kN = 20, kH = 3;

sd::SparseDictionaryConfig cc_config(sd::ActFn act, std::int64_t ranks) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kCrosscoder;
  cfg.d_model = kD;
  cfg.expansion_factor = 4.0 * static_cast<double>(ranks) / kD;
  cfg.act_fn = act;
  cfg.top_k = 3;
  cfg.jumprelu_threshold_window = 0.5;
  for (std::int64_t h = 0; h < kH; ++h) {
    cfg.hook_points.push_back("blocks." + std::to_string(h) + ".hook_resid_post");
  }
  return cfg;
}

struct Pair {
  sd::CrossCoder whole;
  sd::CrossCoder part;
  Pair(const sd::SparseDictionaryConfig& cfg, Communicator& group)
      : whole(cfg), part(cfg, sd::FeatureShard{&group}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    whole.init_parameters({0.6, 0.6, -3.0}, gen);
    auto wp = whole.parameters();
    for (std::size_t i = 0; i < wp.size(); ++i) {
      const at::Tensor noise = seeded_randn(wp[i].value.sizes().vec(), 30 + i);
      if (wp[i].name == "W_E" || wp[i].name == "W_D") wp[i].value.add_(noise * 0.2);
      if (wp[i].name == "b_E" || wp[i].name == "b_D") wp[i].value.copy_(noise * 0.1);
      if (wp[i].group == sd::ParamGroup::kJumpRelu) wp[i].value.copy_(noise * 0.3 - 3.0);
    }
    saes::testing::copy_to_shards(whole, part, 2.0);
  }
};

void check_step(Pair& pair, const sd::TrainBatch& batch, const sd::LossSettings& ls,
                const std::string& what) {
  INFO(what);
  const sd::StepResult a = pair.whole.forward_backward(batch, ls);
  const sd::StepResult b = pair.part.forward_backward(batch, ls);
  saes::testing::check_sharded_result(b, a);
  check_sharded_close(b.l_p, a.l_p, "l_p");
  CHECK(a.l0 > 0);
  CHECK(at::equal(b.fired, pair.part.local_features(a.fired, 0)));
  saes::testing::check_sharded_grads(pair.whole, pair.part);
}

}  // namespace

TEST_CASE("a feature-sharded crosscoder step equals the whole crosscoder's step",
          "[mpi][feature-parallel][crosscoder]") {
  Communicator& world = saes::testing::mpi_world();
  sd::TrainBatch batch;
  for (std::int64_t h = 0; h < kH; ++h) {
    batch.acts["blocks." + std::to_string(h) + ".hook_resid_post"] = seeded_randn({kN, kD}, 5 + h);
  }
  batch.mask = at::arange(kN).remainder(7).ne(0);
  for (const sd::ActFn act :
       {sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK, sd::ActFn::kBatchTopK}) {
    for (const sd::SparseKernels kernels : {sd::SparseKernels::kOff, sd::SparseKernels::kOn}) {
      auto cfg = cc_config(act, world.size());
      cfg.sparse_kernels = kernels;
      Pair pair(cfg, world);
      const std::string name = std::string(sd::kActFnNames[static_cast<std::size_t>(act)]) +
                               (kernels == sd::SparseKernels::kOn ? " sparse" : " dense");
      sd::LossSettings ls;
      ls.l1_coefficient = 0.05;
      ls.sparsity = sd::SparsityPenalty::kPower;
      ls.lp_coefficient = act == sd::ActFn::kJumpRelu ? 0.1 : 0.0;
      check_step(pair, batch, ls, name + " + L1");
      ls.p = 2;
      check_step(pair, batch, ls, name + " + L2 norm");
      ls.sparsity = sd::SparsityPenalty::kTanh;
      check_step(pair, batch, ls, name + " + tanh");
      ls.sparsity = sd::SparsityPenalty::kTanhQuad;
      ls.frequency_scale = 0.3;
      sd::TrainBatch unmasked = batch;
      unmasked.mask = at::Tensor();
      check_step(pair, unmasked, ls, name + " + tanh-quad, no mask");
      const at::Tensor x = pair.whole.prepare_input(batch.acts);
      const at::Tensor f = pair.part.encode(x);
      const at::Tensor f_whole = pair.whole.encode(x);
      CHECK(at::equal(f.ne(0), pair.part.local_features(f_whole, 2).ne(0)));
      check_sharded_close(pair.part.decode(f), pair.whole.decode(f_whole),
                          name + " decode(encode)");
    }
  }
}

TEST_CASE("a sharded crosscoder initializes and saves the whole dictionary of one process",
          "[mpi][feature-parallel][crosscoder]") {
  Communicator& world = saes::testing::mpi_world();
  const auto cfg = cc_config(sd::ActFn::kJumpRelu, world.size());
  sd::CrossCoder whole(cfg);
  sd::CrossCoder part(cfg, sd::FeatureShard{&world});
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(7);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  whole.init_parameters({0.1, 0.1, std::log(0.2)}, g1);
  part.init_parameters({0.1, 0.1, std::log(0.2)}, g2);
  saes::testing::check_sharded_values(whole, part);
  for (const auto& h : whole.hook_points()) {
    whole.set_dataset_norm(h, 2.0);
    part.set_dataset_norm(h, 2.0);
  }
  saes::testing::TempDir tmp;
  const fs::path path = tmp.path() / ("cc-" + std::to_string(world.rank()) + ".safetensors");
  part.save(path);
  const auto file = saes::io::SafetensorsFile::open(path);
  for (const auto& p : whole.parameters()) {
    INFO(p.name);
    CHECK(at::equal(file.tensor(p.name), p.value));
  }
}

namespace {

constexpr std::int64_t kHeads4 = 4;

/// The (head, model) meshes of the world with data_parallel_size 1 whose head size divides 4
/// heads and is > 1: (2, 1) on 2 ranks; (4, 1) and (2, 2) on 4.
std::vector<std::pair<int, int>> head_meshes(int world) {
  std::vector<std::pair<int, int>> out;
  for (int p = 2; p <= world; ++p) {
    if (world % p == 0 && kHeads4 % p == 0) out.emplace_back(p, world / p);
  }
  return out;
}

sd::SparseDictionaryConfig four_head_config(sd::ActFn act, sd::SparseKernels kernels) {
  auto cfg = cc_config(act, 2);
  cfg.hook_points.push_back("blocks.3.hook_resid_post");
  cfg.sparse_kernels = kernels;
  return cfg;
}

}  // namespace

TEST_CASE("a head-parallel crosscoder step equals the whole crosscoder's step",
          "[mpi][head-parallel][crosscoder]") {
  Communicator& world = saes::testing::mpi_world();
  sd::TrainBatch batch;
  for (std::int64_t h = 0; h < kHeads4; ++h) {
    batch.acts["blocks." + std::to_string(h) + ".hook_resid_post"] = seeded_randn({kN, kD}, 5 + h);
  }
  batch.mask = at::arange(kN).remainder(7).ne(0);
  for (const auto& [heads, model] : head_meshes(world.size())) {
    saes::distributed::ParallelismConfig mesh_config{1, model};
    mesh_config.head_parallel_size = heads;
    const saes::distributed::Mesh mesh(world, mesh_config);
    for (const sd::ActFn act :
         {sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK, sd::ActFn::kBatchTopK}) {
      for (const sd::SparseKernels kernels : {sd::SparseKernels::kOff, sd::SparseKernels::kOn}) {
        const auto cfg = four_head_config(act, kernels);
        sd::CrossCoder whole(cfg);
        sd::CrossCoder part(cfg, sd::FeatureShard{&mesh.model(), &mesh.head()});
        REQUIRE(part.n_local_heads() == kHeads4 / heads);
        {
          Pair init(cfg, world);  // the same perturbed parameters as the feature-parallel test
          auto src = init.whole.parameters();
          auto dst = whole.parameters();
          for (std::size_t i = 0; i < src.size(); ++i) dst[i].value.copy_(src[i].value);
        }
        saes::testing::copy_to_shards(whole, part, 2.0);
        const std::string name = std::string(sd::kActFnNames[static_cast<std::size_t>(act)]) +
                                 (kernels == sd::SparseKernels::kOn ? " sparse" : " dense") +
                                 " on " + std::to_string(heads) + " heads x " +
                                 std::to_string(model) + " model ranks";
        INFO(name);
        sd::LossSettings ls;
        ls.l1_coefficient = 0.05;
        ls.sparsity = sd::SparsityPenalty::kPower;
        ls.lp_coefficient = act == sd::ActFn::kJumpRelu ? 0.1 : 0.0;
        for (const sd::SparsityPenalty penalty :
             {sd::SparsityPenalty::kPower, sd::SparsityPenalty::kTanh}) {
          ls.sparsity = penalty;
          const sd::StepResult a = whole.forward_backward(batch, ls);
          const sd::StepResult b = part.forward_backward(batch, ls);
          check_sharded_close(b.loss, a.loss, "loss");
          check_sharded_close(b.l_rec, a.l_rec, "l_rec");
          check_sharded_close(b.l_sparsity, a.l_sparsity, "l_sparsity");
          check_sharded_close(b.l_p, a.l_p, "l_p");
          CHECK(b.l0 == Approx(a.l0).epsilon(1e-9));
          CHECK(a.l0 > 0);
          check_sharded_close(part.gather_heads(b.reconstructed, 0), a.reconstructed, "x_hat");
          CHECK(at::equal(b.fired, part.local_features(a.fired, 0)));
          REQUIRE(b.metrics.size() == a.metrics.size());
          for (const auto& [key, value] : a.metrics) {
            REQUIRE(b.metrics.count(key) == 1);
            check_sharded_close(b.metrics.at(key), value, key);
          }
          saes::testing::check_sharded_grads(whole, part);
        }
        const at::Tensor x = whole.prepare_input(batch.acts);
        const at::Tensor xp = part.prepare_input(batch.acts);
        check_sharded_close(part.hidden_pre(xp), part.local_features(whole.hidden_pre(x), 1),
                            "hidden_pre");
        const at::Tensor f = part.encode(xp);
        check_sharded_close(part.analysis_features(f),
                            part.local_features(whole.analysis_features(whole.encode(x)), 1),
                            "max over heads");
        check_sharded_close(part.target_decoder_norms(),
                            part.local_features(whole.target_decoder_norms(), 0), "norms");
        CHECK_THROWS_AS(part.decoder_similarities(), saes::UnsupportedError);
      }
    }
  }
}

TEST_CASE("a head-parallel crosscoder saves and loads the whole dictionary of one process",
          "[mpi][head-parallel][crosscoder]") {
  Communicator& world = saes::testing::mpi_world();
  saes::testing::TempDir tmp;
  for (const auto& [heads, model] : head_meshes(world.size())) {
    saes::distributed::ParallelismConfig mesh_config{1, model};
    mesh_config.head_parallel_size = heads;
    const saes::distributed::Mesh mesh(world, mesh_config);
    const auto cfg = four_head_config(sd::ActFn::kJumpRelu, sd::SparseKernels::kOff);
    sd::CrossCoder whole(cfg);
    sd::CrossCoder part(cfg, sd::FeatureShard{&mesh.model(), &mesh.head()});
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    whole.init_parameters({0.1, 0.1, std::log(0.2)}, gen);
    auto wp = whole.parameters();
    for (std::size_t i = 0; i < wp.size(); ++i) {
      wp[i].value.add_(seeded_randn(wp[i].value.sizes().vec(), 60 + i));
    }
    saes::testing::copy_to_shards(whole, part, 2.0);
    const fs::path path = tmp.path() / ("hp-" + std::to_string(heads) + "-" +
                                        std::to_string(world.rank()) + ".safetensors");
    part.save(path);  // collective: every rank gathers and writes its own copy
    const auto file = saes::io::SafetensorsFile::open(path);
    for (const auto& p : whole.parameters()) {
      INFO(p.name);
      CHECK(at::equal(file.tensor(p.name), p.value));
    }
    sd::CrossCoder loaded(cfg, sd::FeatureShard{&mesh.model(), &mesh.head()});
    loaded.load(path);
    saes::testing::check_sharded_values(whole, loaded);
  }
}

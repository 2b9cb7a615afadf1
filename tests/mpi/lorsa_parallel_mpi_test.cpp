// Lorsa OV-head parallelism on 2 and 4 ranks (spec Appendix B: each rank holds whole QK heads with
// their OV groups; Q/K/V and the patterns stay local, the TopK selection and the decode are
// collective): a sharded step equals the whole Lorsa's step for every act_fn, the dense autograd
// and the sparse step, gating, every penalty and Aux-K — same losses, L0 and x̂, each rank's gradients
// its heads' slice of the whole gradients; a sharded init is the whole init's slice, a sharded
// save writes the whole dictionary and a sharded load reads its slice; encode/decode agree.
#include <cmath>
#include <filesystem>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/dictionaries/lorsa.h"
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

constexpr std::int64_t kD = 8, kDqk = 4, kB = 2, kT = 6, kG = 3;  // 3 OV heads per QK head

sd::SparseDictionaryConfig lorsa_config(sd::ActFn act, std::int64_t n_qk, bool gating,
                                        sd::SparseKernels kernels) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kLorsa;
  cfg.d_model = kD;
  cfg.expansion_factor = static_cast<double>(n_qk * kG) / kD;
  cfg.act_fn = act;
  cfg.top_k = 2;
  cfg.hook_point_in = "blocks.0.ln1.hook_normalized";
  cfg.hook_point_out = "blocks.0.hook_attn_out";
  cfg.n_qk_heads = n_qk;
  cfg.d_qk_head = kDqk;
  cfg.rotary_dim = kDqk;
  cfg.n_ctx = kT;
  cfg.use_post_qk_ln = true;
  cfg.normalization_type = "RMS";
  cfg.sparsity_include_decoder_norm = gating;
  cfg.sparse_kernels = kernels;
  cfg.jumprelu_threshold_window = 0.5;
  return cfg;
}

/// A whole Lorsa and its sharded copy with random biases, QK-norm weights and thresholds.
struct Pair {
  sd::LowRankSparseAttention whole;
  sd::LowRankSparseAttention part;
  Pair(const sd::SparseDictionaryConfig& cfg, Communicator& group)
      : whole(cfg), part(cfg, sd::FeatureShard{&group}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    whole.init_parameters({1.0, 1.0, std::log(0.05)}, gen);
    auto wp = whole.parameters();
    for (std::size_t i = 0; i < wp.size(); ++i) {
      const at::Tensor noise = seeded_randn(wp[i].value.sizes().vec(), 30 + i);
      const std::string& n = wp[i].name;
      if (n == "b_Q" || n == "b_K" || n == "b_V" || n == "b_D") wp[i].value.copy_(noise * 0.3);
      if (n == "ln_q.w" || n == "ln_k.w") wp[i].value.copy_(noise * 0.3 + 1.0);
      if (n == "W_Q" || n == "W_K") wp[i].value.mul_(3.0);
      if (wp[i].group == sd::ParamGroup::kJumpRelu) wp[i].value.copy_(noise * 0.3 - 3.0);
    }
    saes::testing::copy_to_shards(whole, part, 2.0);
  }
};

void check_step(Pair& pair, const sd::TrainBatch& batch, const sd::LossSettings& ls,
                const std::string& what) {
  INFO(what);
  const sd::StepResult a = pair.whole.forward_backward(batch, ls);
  sd::TrainBatch mine = batch;  // a sharded step reads its own heads' dead flags
  if (batch.dead.defined()) mine.dead = pair.part.local_features(batch.dead, 0);
  const sd::StepResult b = pair.part.forward_backward(mine, ls);
  saes::testing::check_sharded_result(b, a);
  check_sharded_close(b.l_p, a.l_p, "l_p");
  check_sharded_close(b.l_aux, a.l_aux, "l_aux");
  CHECK(a.l0 > 0);
  CHECK(at::equal(b.fired, pair.part.local_features(a.fired, 0)));
  saes::testing::check_sharded_grads(pair.whole, pair.part);
}

}  // namespace

TEST_CASE("a feature-sharded Lorsa step equals the whole Lorsa's step",
          "[mpi][feature-parallel][lorsa]") {
  Communicator& world = saes::testing::mpi_world();
  const std::int64_t n_qk = 2 * world.size();
  sd::TrainBatch batch;
  batch.acts["blocks.0.ln1.hook_normalized"] = seeded_randn({kB, kT, kD}, 5);
  batch.acts["blocks.0.hook_attn_out"] = seeded_randn({kB, kT, kD}, 6);
  batch.mask = at::tensor({1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1}).view({kB, kT});
  for (const sd::ActFn act :
       {sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK, sd::ActFn::kBatchTopK}) {
    for (const sd::SparseKernels kernels : {sd::SparseKernels::kOff, sd::SparseKernels::kOn}) {
      if (act == sd::ActFn::kJumpRelu && kernels == sd::SparseKernels::kOn) continue;  // dense
      for (const bool gating : {true, false}) {
        Pair pair(lorsa_config(act, n_qk, gating, kernels), world);
        REQUIRE(pair.part.local_qk_heads() == 2);
        REQUIRE(pair.part.local_d_sae() == 2 * kG);
        const std::string name = std::string(sd::kActFnNames[static_cast<std::size_t>(act)]) +
                                 (kernels == sd::SparseKernels::kOn ? " sparse" : " dense") +
                                 (gating ? " gated" : "");
        sd::LossSettings ls;
        ls.l1_coefficient = 0.05;
        ls.sparsity = sd::SparsityPenalty::kPower;
        ls.lp_coefficient = act == sd::ActFn::kJumpRelu ? 0.2 : 0.0;
        check_step(pair, batch, ls, name + " + L1");
        ls.p = 2;
        check_step(pair, batch, ls, name + " + L2 norm");
        ls.sparsity = sd::SparsityPenalty::kTanh;
        check_step(pair, batch, ls, name + " + tanh");
        ls.sparsity = sd::SparsityPenalty::kTanhQuad;
        ls.frequency_scale = 0.3;
        check_step(pair, batch, ls, name + " + tanh-quad");
        if (act == sd::ActFn::kTopK || act == sd::ActFn::kBatchTopK) {
          sd::TrainBatch with_dead = batch;  // every other OV head dead
          with_dead.dead = at::arange(pair.whole.d_sae()).remainder(2).eq(0);
          ls.auxk_coefficient = 0.3;
          ls.k_aux = 3;
          check_step(pair, with_dead, ls, name + " + Aux-K");
          ls.auxk_detach_residual = true;
          check_step(pair, with_dead, ls, name + " + Aux-K, detached residual");
          ls.auxk_coefficient = 0;
          ls.auxk_detach_residual = false;
        }
        // inference: encode and decode of the shards
        const at::Tensor x = pair.whole.prepare_input(batch.acts);
        const at::Tensor f = pair.part.encode(x);
        const at::Tensor f_whole = pair.whole.encode(x);
        CHECK(at::equal(f.ne(0), pair.part.local_features(f_whole, 2).ne(0)));
        check_sharded_close(pair.part.decode(f), pair.whole.decode(f_whole), name + " decode");
        check_sharded_close(pair.part.attention_pattern(x),
                            pair.part.local_features(pair.whole.attention_pattern(x), 1),
                            name + " patterns");
      }
    }
  }
}

TEST_CASE("a sharded Lorsa initializes, saves and loads the whole dictionary of one process",
          "[mpi][feature-parallel][lorsa]") {
  Communicator& world = saes::testing::mpi_world();
  const auto cfg = lorsa_config(sd::ActFn::kJumpRelu, 2 * world.size(), true,
                                sd::SparseKernels::kAuto);
  sd::LowRankSparseAttention whole(cfg);
  sd::LowRankSparseAttention part(cfg, sd::FeatureShard{&world});
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(7);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  whole.init_parameters({1.0, 1.0, std::log(0.2)}, g1);
  part.init_parameters({1.0, 1.0, std::log(0.2)}, g2);
  whole.set_decoder_to_fixed_norm(0.7, true);
  part.set_decoder_to_fixed_norm(0.7, true);
  saes::testing::check_sharded_values(whole, part, 1e-6);
  const auto wp = whole.parameters();
  const auto pp = part.parameters();
  for (const auto& h : whole.hook_points()) {
    whole.set_dataset_norm(h, 2.0);
    part.set_dataset_norm(h, 2.0);
  }
  // Every rank saves (collective gathers); rank 0's file is the whole dictionary's.
  saes::testing::TempDir tmp;
  const fs::path path = tmp.path() / ("lorsa-" + std::to_string(world.rank()) + ".safetensors");
  part.save(path);
  const auto file = saes::io::SafetensorsFile::open(path);
  for (const auto& p : wp) {
    INFO(p.name);
    CHECK((file.tensor(p.name) - p.value).abs().max().item<double>() <= 1e-6);
  }
  CHECK(file.tensor("W_Q").size(0) == cfg.n_qk_heads);
  // ... and a sharded load of the whole file reads this rank's heads
  sd::LowRankSparseAttention again(cfg, sd::FeatureShard{&world});
  again.load(path);
  auto ap = again.parameters();
  for (std::size_t i = 0; i < ap.size(); ++i) {
    INFO(ap[i].name);
    CHECK(at::equal(ap[i].value, pp[i].value));
  }
}

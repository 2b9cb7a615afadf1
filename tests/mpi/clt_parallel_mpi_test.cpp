// Feature parallelism of the cross-layer transcoder on 2 and 4 ranks: a sharded CLT's step (every
// act_fn, the dense and the sparse step, gating on and off, every penalty, a token mask) equals
// the whole CLT's step — same losses, L0, ŷ and fire counts, and each rank's gradients are its
// features' slice of the whole gradients; encode/decode agree; a seed initializes the same
// dictionary on every mesh; a sharded save writes the whole dictionary.
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/dictionaries/clt.h"
#include "saes/dictionaries/feature_parallel.h"
#include "saes/io/safetensors.h"

#include "mpi/mpi_world.h"
#include "mpi/sharded_checks.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
namespace sd = saes::dictionaries;
using saes::distributed::Communicator;

constexpr std::int64_t kL = 3, kD = 6, kN = 20;

using saes::testing::check_sharded_close;
using saes::testing::seeded_randn;

sd::SparseDictionaryConfig clt_config(sd::ActFn act, std::int64_t d_sae, bool gating,
                                      sd::SparseKernels kernels) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kClt;
  cfg.d_model = kD;
  cfg.expansion_factor = static_cast<double>(d_sae) / kD;
  cfg.act_fn = act;
  cfg.top_k = act == sd::ActFn::kLayerTopK || act == sd::ActFn::kBatchLayerTopK ? 5 : 3;
  cfg.sparsity_include_decoder_norm = gating;
  cfg.sparse_kernels = kernels;
  cfg.jumprelu_threshold_window = 0.5;
  for (std::int64_t l = 0; l < kL; ++l) {
    cfg.hook_points_in.push_back("blocks." + std::to_string(l) + ".ln2.hook_normalized");
    cfg.hook_points_out.push_back("blocks." + std::to_string(l) + ".hook_mlp_out");
  }
  return cfg;
}

/// A whole CLT and its sharded copy (random biases and thresholds: every path is exercised).
struct Pair {
  sd::CrossLayerTranscoder whole;
  sd::CrossLayerTranscoder part;
  Pair(const sd::SparseDictionaryConfig& cfg, Communicator& group)
      : whole(cfg), part(cfg, sd::FeatureShard{&group}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    whole.init_parameters({0.6, 0.6, std::log(0.3)}, gen);
    auto wp = whole.parameters();
    for (std::size_t i = 0; i < wp.size(); ++i) {
      const at::Tensor noise = seeded_randn(wp[i].value.sizes().vec(), 30 + i);
      if (wp[i].name == "b_E" || wp[i].name.rfind("b_D", 0) == 0) wp[i].value.copy_(noise * 0.1);
      if (wp[i].name.rfind("W_D", 0) == 0) wp[i].value.mul_(4.0);
      if (wp[i].group == sd::ParamGroup::kJumpRelu) wp[i].value.copy_(noise * 0.3 - 1.5);
    }
    saes::testing::copy_to_shards(whole, part, 2.0);
  }
};

/// This rank's slice of per-feature values [L·d_sae] (layer-major) of the whole dictionary.
at::Tensor local_layers(const sd::CrossLayerTranscoder& part, const at::Tensor& whole) {
  return part.local_features(whole.view({kL, -1}), 1).reshape({-1});
}

void check_step(Pair& pair, const sd::TrainBatch& batch, const sd::LossSettings& ls,
                const std::string& what) {
  INFO(what);
  const sd::StepResult a = pair.whole.forward_backward(batch, ls);
  const sd::StepResult b = pair.part.forward_backward(batch, ls);
  saes::testing::check_sharded_result(b, a);
  CHECK(a.l0 > 0);
  CHECK(at::equal(b.fired, local_layers(pair.part, a.fired)));
  saes::testing::check_sharded_grads(pair.whole, pair.part);
}

}  // namespace

TEST_CASE("a feature-sharded CLT step equals the whole CLT's step", "[mpi][feature-parallel][clt]") {
  Communicator& world = saes::testing::mpi_world();
  const std::int64_t d_sae = 6 * world.size();
  const auto cfg0 = clt_config(sd::ActFn::kRelu, d_sae, true, sd::SparseKernels::kOff);
  sd::TrainBatch batch;
  for (std::int64_t l = 0; l < kL; ++l) {
    batch.acts[cfg0.hook_points_in[l]] = seeded_randn({kN, kD}, 5 + l);
    batch.acts[cfg0.hook_points_out[l]] = seeded_randn({kN, kD}, 50 + l);
  }
  batch.mask = at::arange(kN).remainder(7).ne(0);
  for (const sd::ActFn act : {sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK,
                              sd::ActFn::kLayerTopK, sd::ActFn::kBatchTopK,
                              sd::ActFn::kBatchLayerTopK}) {
    for (const sd::SparseKernels kernels : {sd::SparseKernels::kOff, sd::SparseKernels::kOn}) {
      if (act == sd::ActFn::kJumpRelu && kernels == sd::SparseKernels::kOn) continue;  // dense
      for (const bool gating : {true, false}) {
        Pair pair(clt_config(act, d_sae, gating, kernels), world);
        const std::string name = std::string(sd::kActFnNames[static_cast<std::size_t>(act)]) +
                                 (kernels == sd::SparseKernels::kOn ? " sparse" : " dense") +
                                 (gating ? " gated" : "");
        sd::LossSettings ls;
        ls.l1_coefficient = 0.05;
        ls.sparsity = sd::SparsityPenalty::kPower;
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
        // inference: encode and decode of the shards
        const at::Tensor x = pair.whole.prepare_input(batch.acts);
        const at::Tensor f = pair.part.encode(x);
        const at::Tensor f_whole = pair.whole.encode(x);
        CHECK(at::equal(f.ne(0), pair.part.local_features(f_whole, 2).ne(0)));
        check_sharded_close(pair.part.decode(f), pair.whole.decode(f_whole), name + " decode(encode)");
      }
    }
  }
}

TEST_CASE("a sharded CLT initializes and saves the whole dictionary of one process",
          "[mpi][feature-parallel][clt]") {
  Communicator& world = saes::testing::mpi_world();
  const auto cfg = clt_config(sd::ActFn::kJumpRelu, 6 * world.size(), true, sd::SparseKernels::kAuto);
  sd::CrossLayerTranscoder whole(cfg);
  sd::CrossLayerTranscoder part(cfg, sd::FeatureShard{&world});
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(7);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  whole.init_parameters({0.1, 0.1, std::log(0.2)}, g1);
  part.init_parameters({0.1, 0.1, std::log(0.2)}, g2);
  saes::testing::check_sharded_values(whole, part);
  const auto wp = whole.parameters();
  // Every rank saves (collective gathers); rank 0's file is the whole dictionary's.
  saes::testing::TempDir tmp;
  const fs::path path = tmp.path() / ("clt-" + std::to_string(world.rank()) + ".safetensors");
  part.save(path);
  const auto file = saes::io::SafetensorsFile::open(path);
  for (const auto& p : wp) {
    INFO(p.name);
    CHECK(at::equal(file.tensor(p.name), p.value));
  }
}

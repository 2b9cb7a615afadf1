// Feature parallelism of the MoLT on 2 and 4 ranks, every rank group split over the model group:
// a sharded MoLT's step (every act_fn, gating on and off, every penalty, a token mask, Aux-K and
// L_p) equals the whole MoLT's step — same losses, L0, x̂, fire counts in the whole dictionary's
// feature order, and each rank's gradients are its slice of the whole gradients; encode and
// reconstruct agree; a seed initializes the same dictionary on every mesh; a sharded save writes
// the whole dictionary and a sharded load reads this rank's transforms back.
#include <cmath>
#include <filesystem>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/dictionaries/feature_parallel.h"
#include "saes/dictionaries/molt.h"
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

constexpr std::int64_t kD = 6, kN = 20;
const char* const kIn = "blocks.1.ln2.hook_normalized";
const char* const kOut = "blocks.1.hook_mlp_out";

sd::SparseDictionaryConfig molt_config(sd::ActFn act, bool gating, std::int64_t ranks) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kMolt;
  cfg.d_model = kD;
  cfg.rank_counts = {{"1", 2 * ranks}, {"2", ranks}, {"3", 2 * ranks}};
  cfg.expansion_factor = 5.0 * static_cast<double>(ranks) / kD;
  cfg.act_fn = act;
  cfg.top_k = 3;
  cfg.sparsity_include_decoder_norm = gating;
  cfg.jumprelu_threshold_window = 0.5;
  cfg.hook_point_in = kIn;
  cfg.hook_point_out = kOut;
  return cfg;
}

struct Pair {
  sd::MixtureOfLinearTransforms whole;
  sd::MixtureOfLinearTransforms part;
  Pair(const sd::SparseDictionaryConfig& cfg, Communicator& group)
      : whole(cfg), part(cfg, sd::FeatureShard{&group}) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    whole.init_parameters({0.0, 0.0, -3.0}, gen);
    auto wp = whole.parameters();
    for (std::size_t i = 0; i < wp.size(); ++i) {
      const at::Tensor noise = seeded_randn(wp[i].value.sizes().vec(), 30 + i);
      if (wp[i].name == "b_E" || wp[i].name == "b_D") wp[i].value.copy_(noise * 0.1);
      if (wp[i].name.rfind("U_", 0) == 0 || wp[i].name.rfind("V_", 0) == 0) wp[i].value.mul_(3.0);
      if (wp[i].group == sd::ParamGroup::kJumpRelu) wp[i].value.copy_(noise * 0.3 - 3.0);
    }
    saes::testing::copy_to_shards(whole, part, 2.0);
  }
};

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
  CHECK(a.l0 > 0);
  CHECK(at::equal(b.fired, pair.part.local_features(a.fired, 0)));
  CHECK(at::equal(pair.part.gather_features(b.fired, 0), a.fired));  // the global order back
  saes::testing::check_sharded_grads(pair.whole, pair.part);
}

}  // namespace

TEST_CASE("a feature-sharded MoLT step equals the whole MoLT's step",
          "[mpi][feature-parallel][molt]") {
  Communicator& world = saes::testing::mpi_world();
  sd::TrainBatch batch;
  batch.acts[kIn] = seeded_randn({kN, kD}, 5);
  batch.acts[kOut] = seeded_randn({kN, kD}, 6);
  batch.mask = at::arange(kN).remainder(7).ne(0);
  for (const sd::ActFn act :
       {sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK, sd::ActFn::kBatchTopK}) {
    for (const bool gating : {true, false}) {
      Pair pair(molt_config(act, gating, world.size()), world);
      const std::string name =
          std::string(sd::kActFnNames[static_cast<std::size_t>(act)]) + (gating ? " gated" : "");
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
      if (sd::is_topk_family(act)) {
        sd::TrainBatch with_dead = batch;
        with_dead.dead = at::arange(pair.whole.d_sae()).remainder(3).eq(0);
        ls.auxk_coefficient = 0.4;
        ls.k_aux = 4;
        check_step(pair, with_dead, ls, name + " + Aux-K");
      }
      const at::Tensor x = pair.whole.prepare_input(batch.acts);
      const at::Tensor f = pair.part.encode(x);
      const at::Tensor f_whole = pair.whole.encode(x);
      CHECK(at::equal(f.ne(0), pair.part.local_features(f_whole, 1).ne(0)));
      check_sharded_close(pair.part.reconstruct(x, f), pair.whole.reconstruct(x, f_whole),
                          name + " reconstruct(encode)");
    }
  }
}

TEST_CASE("a sharded MoLT initializes, saves and loads the whole dictionary of one process",
          "[mpi][feature-parallel][molt]") {
  Communicator& world = saes::testing::mpi_world();
  const auto cfg = molt_config(sd::ActFn::kJumpRelu, true, world.size());
  sd::MixtureOfLinearTransforms whole(cfg);
  sd::MixtureOfLinearTransforms part(cfg, sd::FeatureShard{&world});
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(7);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  whole.init_parameters({0.0, 0.0, std::log(0.2)}, g1);
  part.init_parameters({0.0, 0.0, std::log(0.2)}, g2);
  whole.set_decoder_to_fixed_norm(0.7, true);
  part.set_decoder_to_fixed_norm(0.7, true);
  saes::testing::check_sharded_values(whole, part, 1e-6);
  for (const auto& h : whole.hook_points()) {
    whole.set_dataset_norm(h, 2.0);
    part.set_dataset_norm(h, 2.0);
  }
  saes::testing::TempDir tmp;
  const fs::path path = tmp.path() / ("molt-" + std::to_string(world.rank()) + ".safetensors");
  part.save(path);
  const auto file = saes::io::SafetensorsFile::open(path);
  for (const auto& p : whole.parameters()) {
    INFO(p.name);
    CHECK((file.tensor(p.name) - p.value).abs().max().item<double>() <= 1e-6);
  }
  sd::MixtureOfLinearTransforms again(cfg, sd::FeatureShard{&world});
  again.load(path);
  auto ap = again.parameters();
  auto pp = part.parameters();
  for (std::size_t i = 0; i < ap.size(); ++i) {
    INFO(ap[i].name);
    CHECK(at::equal(ap[i].value, pp[i].value));
  }
}

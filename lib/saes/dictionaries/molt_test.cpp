// MixtureOfLinearTransforms against plain formulas (float64): the transforms M_i = U_i V_i formed
// explicitly, x̂ = Σ_i f_i M_i x + b_D, n_i = ‖M_i‖_F, and the generic loss through autograd —
// for every activation × penalty × gating × mask, with L_p and Aux-K. Also: the exact fold,
// checkpoint names/shapes, the rank-group order, norms, metrics and bad configs.
#include <cmath>
#include <map>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/molt.h"
#include "saes/dictionaries/molt_kernels.h"
#include "saes/dictionaries/sparse_kernels.h"
#include "saes/dictionaries/registry.h"
#include "saes/io/safetensors.h"
#include "support/reference_losses.h"
#include "support/temp_dir.h"

namespace sd = saes::dictionaries;

namespace {

constexpr std::int64_t kD = 4;
const char* const kIn = "blocks.0.ln2.hook_normalized";
const char* const kOut = "blocks.0.hook_mlp_out";

sd::SparseDictionaryConfig molt_cfg(sd::ActFn act, bool gating) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kMolt;
  cfg.d_model = kD;
  cfg.rank_counts = {{"1", 4}, {"2", 3}, {"4", 1}};  // d_sae = 8
  cfg.expansion_factor = 2.0;
  cfg.act_fn = act;
  cfg.top_k = 3;
  cfg.sparsity_include_decoder_norm = gating;
  cfg.jumprelu_threshold_window = 0.6;
  cfg.hook_point_in = kIn;
  cfg.hook_point_out = kOut;
  cfg.dtype = saes::DType::kFloat64;
  return cfg;
}

using Params = std::map<std::string, at::Tensor>;

/// The transforms M_i = U_i V_i of every group in feature order: [d_sae, d, d].
at::Tensor transforms(const Params& P, const sd::MixtureOfLinearTransforms& m) {
  std::vector<at::Tensor> out;
  for (const auto& g : m.groups()) {
    const std::string r = std::to_string(g.rank);
    out.push_back(at::matmul(P.at("U_matrices." + r), P.at("V_matrices." + r)));
  }
  return at::cat(out);
}

/// Plain x̂ = Σ_i f_i M_i x + b_D.
at::Tensor plain_reconstruct(const at::Tensor& M, const at::Tensor& f, const at::Tensor& x,
                             const at::Tensor& b_D) {
  const at::Tensor out = at::einsum("ti,idk,tk->td", {f, M, x});
  return b_D.defined() ? out + b_D : out;
}

at::Tensor reference_loss(const Params& P, const sd::MixtureOfLinearTransforms& m,
                          const at::Tensor& x, const at::Tensor& y, const at::Tensor& mask,
                          const at::Tensor& dead, const sd::LossSettings& ls) {
  const auto& cfg = m.config();
  const bool jump = cfg.act_fn == sd::ActFn::kJumpRelu;
  const bool g = cfg.sparsity_include_decoder_norm;
  const at::Tensor M = transforms(P, m);
  const at::Tensor n = at::linalg_matrix_norm(M, "fro");
  const at::Tensor h = at::addmm(P.at("b_E"), x, P.at("W_E"));
  const at::Tensor logt = jump ? P.at("activation_function.log_jumprelu_threshold") : at::Tensor();
  auto act = [&](const at::Tensor& s, std::int64_t k) {
    const at::Tensor A =
        sd::activation_mask(cfg.act_fn, s.detach(), jump ? logt.detach() : logt, k).to(at::kDouble);
    const at::Tensor sig =
        jump ? saes::testing::reference_jumprelu_ste(s, A, logt, cfg.jumprelu_threshold_window)
             : s * A;
    return g ? sig / n : sig;
  };
  const std::int64_t N = x.size(0);
  const at::Tensor w = mask.defined()
                           ? (mask.to(at::kDouble) / mask.to(at::kDouble).sum()).unsqueeze(1)
                           : at::full({N, 1}, 1.0 / N, x.options());
  const at::Tensor f = cfg.act_fn == sd::ActFn::kRelu ? at::relu(h) : act(g ? h * n : h, ls.current_k);
  const at::Tensor xhat = plain_reconstruct(M, f, x, cfg.use_decoder_bias ? P.at("b_D") : at::Tensor());
  at::Tensor loss = ((xhat - y).pow(2).sum(1, true) * w).sum();
  loss = loss + saes::testing::reference_penalty(ls, g ? f * n : f, w, ls.l1_coefficient);
  if (jump && ls.lp_coefficient > 0) {
    loss = loss + ls.lp_coefficient * ((at::relu(at::exp(logt) - h) * n).sum(1, true) * w).sum();
  }
  if (ls.auxk_coefficient > 0 && dead.defined()) {
    const at::Tensor deadf = dead.to(at::kDouble);
    const std::int64_t kp = std::min(ls.k_aux, dead.sum().item<std::int64_t>());
    const at::Tensor f_aux = act(g ? h * deadf * n : h * deadf, kp);
    const at::Tensor ehat = plain_reconstruct(M, f_aux, x, {});
    const at::Tensor e = ls.auxk_detach_residual ? (y - xhat).detach() : y - xhat;
    loss = loss + ls.auxk_coefficient * ((e - ehat).pow(2).sum(1, true) * w).sum();
  }
  return loss;
}

sd::MixtureOfLinearTransforms random_molt(const sd::SparseDictionaryConfig& cfg, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  sd::MixtureOfLinearTransforms m(cfg);
  m.init_parameters({0.0, 0.0, std::log(0.3)}, gen);
  for (auto& p : m.parameters()) {
    if (p.name.rfind("U_", 0) == 0 || p.name.rfind("V_", 0) == 0) p.value.mul_(3.0);
    if (p.name == "b_E" || p.name == "b_D") p.value.normal_(0, 0.2, gen);
    if (p.group == sd::ParamGroup::kJumpRelu) p.value.normal_(std::log(0.3), 0.3, gen);
  }
  return m;
}

Params params_of(sd::MixtureOfLinearTransforms& m) {
  Params P;
  for (auto& p : m.parameters()) P[p.name] = p.value.detach().clone().requires_grad_(true);
  return P;
}

}  // namespace

TEST_CASE("molt manual backward (dense and sparse step) equals autograd of the plain formulas",
          "[dictionaries][molt]") {
  const auto act =
      GENERATE(sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK, sd::ActFn::kBatchTopK);
  const auto penalty = GENERATE(sd::SparsityPenalty::kNone, sd::SparsityPenalty::kPower,
                                sd::SparsityPenalty::kTanh, sd::SparsityPenalty::kTanhQuad);
  const bool gating = GENERATE(true, false);
  const bool masked = GENERATE(false, true);
  const std::int64_t p = GENERATE(1, 2);
  const auto kernels = GENERATE(sd::SparseKernels::kOff, sd::SparseKernels::kOn);
  if (p == 2 && penalty != sd::SparsityPenalty::kPower) return;
  INFO("act " << static_cast<int>(act) << " penalty " << static_cast<int>(penalty) << " p " << p
              << " gating " << gating << " masked " << masked << " kernels "
              << static_cast<int>(kernels));
  auto cfg = molt_cfg(act, gating);
  cfg.sparse_kernels = kernels;
  auto m = random_molt(cfg, 11);
  CHECK(m.uses_sparse_step(at::ones({1, 8}, at::kDouble), 3) ==
        (kernels == sd::SparseKernels::kOn && act != sd::ActFn::kJumpRelu));
  m.set_dataset_norm(kIn, 1.7);
  m.set_dataset_norm(kOut, 0.9);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const std::int64_t N = 9;
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor x = at::randn({N, kD}, gen, opts), label = at::randn({N, kD}, gen, opts);
  sd::TrainBatch batch = sd::single_hook_batch(m.config(), x, label);
  if (masked) batch.mask = at::tensor({1, 1, 0, 1, 1, 1, 0, 1, 1}).to(at::kBool);
  sd::LossSettings ls;
  ls.sparsity = penalty;
  ls.p = p;
  ls.l1_coefficient = 0.7;
  ls.tanh_stretch_coefficient = 1.5;
  ls.frequency_scale = 0.3;
  ls.lp_coefficient = act == sd::ActFn::kJumpRelu ? 0.2 : 0.0;
  if (sd::is_topk_family(act)) {
    ls.auxk_coefficient = 0.5;
    ls.k_aux = 2;
    ls.auxk_detach_residual = masked;  // both forms
    batch.dead = at::tensor({1, 0, 1, 1, 0, 0, 1, 1}).to(at::kBool);
  }
  const sd::StepResult res = m.forward_backward(batch, ls);

  Params P = params_of(m);
  sd::LossSettings ref_ls = ls;
  ref_ls.current_k = m.config().top_k;
  const at::Tensor loss = reference_loss(P, m, m.normalize(x, kIn), m.normalize(label, kOut),
                                         batch.mask, batch.dead, ref_ls);
  loss.backward();
  CHECK(res.loss == Approx(loss.item<double>()).epsilon(1e-10));
  CHECK(res.l0 > 0);
  for (auto& prm : m.parameters()) {
    INFO("parameter " << prm.name);
    const at::Tensor ref = P.at(prm.name).grad();
    REQUIRE(ref.defined());
    const double scale = ref.abs().max().item<double>() + 1e-12;
    CHECK((prm.grad - ref).abs().max().item<double>() / scale < 1e-9);
  }
}

TEST_CASE("molt encode, reconstruct and norms equal the plain formulas", "[dictionaries][molt]") {
  auto m = random_molt(molt_cfg(sd::ActFn::kTopK, true), 5);
  m.set_dataset_norm(kIn, 2.0);
  m.set_dataset_norm(kOut, 2.0);
  const Params P = params_of(m);
  const at::Tensor M = transforms(P, m).detach();
  const at::Tensor n = at::linalg_matrix_norm(M, "fro");
  CHECK(at::allclose(m.decoder_norm(), n, 1e-12, 1e-12));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(6);
  const at::Tensor x = at::randn({6, kD}, gen, at::kDouble);
  const at::Tensor f = m.encode(x);
  const at::Tensor h = at::addmm(m.b_E(), x, m.W_E());
  const at::Tensor picked = std::get<1>(at::topk(h * n, 3, 1));
  // TopK keeps the k largest gated scores that are positive (spec §3.3)
  const at::Tensor kept = at::zeros_like(h).scatter(1, picked, 1.0) * (h * n > 0);
  const at::Tensor want = h * kept;
  CHECK(at::count_nonzero(want).item<std::int64_t>() > 6);
  CHECK(at::allclose(f, want, 1e-12, 1e-12));
  CHECK(at::allclose(m.reconstruct(x, f), plain_reconstruct(M, f, x, m.b_D()), 1e-12, 1e-12));
  CHECK(m.reconstruction_loss(x, x, 3) ==
        Approx(((plain_reconstruct(M, f, x, m.b_D()) - x).pow(2).sum(1)).mean().item<double>()));
  CHECK_THROWS_AS(m.decode(f), saes::UnsupportedError);
  CHECK_FALSE(m.feature_directions().defined());
  // set_decoder_to_fixed_norm splits the scale over U and V
  m.set_decoder_to_fixed_norm(0.5, true);
  CHECK(at::allclose(m.decoder_norm(), at::full({8}, 0.5, at::kDouble), 1e-12, 1e-12));
}

TEST_CASE("molt rank groups follow ascending rank, checkpoints keep the original's names",
          "[dictionaries][molt]") {
  auto cfg = molt_cfg(sd::ActFn::kJumpRelu, true);
  cfg.d_model = 12;
  cfg.rank_counts = {{"10", 2}, {"2", 3}};  // "10" sorts before "2" as text
  cfg.expansion_factor = 5.0 / 12;
  cfg.dtype = saes::DType::kFloat32;
  auto m = random_molt(cfg, 2);
  REQUIRE(m.groups().size() == 2);
  CHECK(m.groups()[0].rank == 2);
  CHECK(m.groups()[1].rank == 10);
  CHECK(m.groups()[1].local_offset == 3);
  m.set_dataset_norm(kIn, 3.0);
  m.set_dataset_norm(kOut, 4.0);
  saes::testing::TempDir dir;
  const auto path = dir.path() / "sae_weights.safetensors";
  m.save(path);
  const auto file = saes::io::SafetensorsFile::open(path);
  std::map<std::string, std::vector<std::int64_t>> want = {
      {"W_E", {12, 5}},           {"b_E", {5}},
      {"U_matrices.2", {3, 12, 2}}, {"V_matrices.2", {3, 2, 12}},
      {"U_matrices.10", {2, 12, 10}}, {"V_matrices.10", {2, 10, 12}},
      {"b_D", {12}},              {"activation_function.log_jumprelu_threshold", {5}},
      {std::string("dataset_average_activation_norm.") + kIn, {}},
      {std::string("dataset_average_activation_norm.") + kOut, {}}};
  CHECK(file.names().size() == want.size());
  for (const auto& [name, shape] : want) {
    INFO(name);
    REQUIRE(file.contains(name));
    CHECK(file.tensor(name).sizes().vec() == shape);
  }
  auto back = sd::make_dictionary(cfg);
  back->load(path);
  auto a = m.parameters();
  auto b = back->parameters();
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(at::equal(a[i].value, b[i].value));
  CHECK(back->dataset_norm(kOut) == std::optional<double>(4.0));
}

TEST_CASE("molt fold is exact for every act_fn, with and without gating", "[dictionaries][molt]") {
  for (const auto act :
       {sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK, sd::ActFn::kBatchTopK}) {
    for (const bool gating : {true, false}) {
      INFO("act " << static_cast<int>(act) << " gating " << gating);
      auto m = random_molt(molt_cfg(act, gating), 9);
      m.set_dataset_norm(kIn, 3.5);
      m.set_dataset_norm(kOut, 0.6);
      auto gen = at::make_generator<at::CPUGeneratorImpl>(13);
      const at::Tensor x = at::randn({12, kD}, gen, at::kDouble) * 2.0;
      const at::Tensor xn = m.normalize(x, kIn);
      const at::Tensor f = m.encode(xn);
      const double s_out = m.dataset_scale(kOut), s_in = m.dataset_scale(kIn);
      const at::Tensor want = m.reconstruct(xn, f) / s_out;  // the model's scale
      m.fold_activation_scale();
      REQUIRE(m.folded());
      const at::Tensor f_raw = m.encode(x);
      CHECK(at::equal(f_raw.ne(0), f.ne(0)));
      CHECK(at::allclose(f_raw, f / s_in, 1e-10, 1e-12));
      CHECK(at::allclose(m.reconstruct(x, f_raw), want, 1e-10, 1e-12));
      m.unfold_activation_scale();
      CHECK(at::allclose(m.reconstruct(xn, m.encode(xn)) / s_out, want, 1e-10, 1e-12));
    }
  }
}

TEST_CASE("molt per-rank L0 metrics and bad configs", "[dictionaries][molt]") {
  auto m = random_molt(molt_cfg(sd::ActFn::kTopK, true), 1);
  const at::Tensor freq = at::tensor({0.5, 0.25, 0.0, 0.25, 1.0, 0.0, 0.0, 0.5}, at::kDouble);
  const auto metrics = m.frequency_metrics(freq);
  CHECK(metrics.at("molt_metrics/l0_rank1") == Approx(1.0));
  CHECK(metrics.at("molt_metrics/l0_rank2") == Approx(1.0));
  CHECK(metrics.at("molt_metrics/l0_rank4") == Approx(0.5));
  CHECK(metrics.at("molt_metrics/l0_rank4_ratio") == Approx(0.5 / 2.5));
  CHECK(metrics.at("molt_metrics/total_rank_sum") == Approx(1.0 + 2.0 + 2.0));

  auto cfg = molt_cfg(sd::ActFn::kTopK, true);
  cfg.rank_counts.clear();
  CHECK_THROWS_WITH(sd::MixtureOfLinearTransforms(cfg), Catch::Contains("rank_counts"));
  cfg.rank_counts = {{"two", 8}};
  CHECK_THROWS_WITH(sd::MixtureOfLinearTransforms(cfg), Catch::Contains("\"two\""));
  cfg.rank_counts = {{"1", 0}, {"2", 8}};
  CHECK_THROWS_WITH(sd::MixtureOfLinearTransforms(cfg), Catch::Contains("rank_counts.1"));
  cfg.rank_counts = {{"1", 8}};
  cfg.expansion_factor = 3.0;
  CHECK_THROWS_WITH(sd::MixtureOfLinearTransforms(cfg),
                    Catch::Contains("expansion_factor") && Catch::Contains("8 / 4"));
  cfg.expansion_factor = 2.0;
  cfg.use_glu_encoder = true;
  CHECK_THROWS_WITH(sd::MixtureOfLinearTransforms(cfg), Catch::Contains("use_glu_encoder"));
  cfg.use_glu_encoder = false;
  cfg.top_k = 9;
  CHECK_THROWS_WITH(sd::MixtureOfLinearTransforms(cfg), Catch::Contains("top_k"));
  cfg.top_k = 3;
  CHECK(sd::make_dictionary(cfg)->d_sae() == 8);
}

TEST_CASE("molt sparse kernels equal their op path in float32 and float64", "[dictionaries][molt]") {
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    auto cfg = molt_cfg(sd::ActFn::kTopK, true);
    cfg.d_model = 24;
    cfg.rank_counts = {{"1", 20}, {"3", 12}, {"8", 8}};
    cfg.expansion_factor = 40.0 / 24;
    cfg.dtype = dtype == at::kFloat ? saes::DType::kFloat32 : saes::DType::kFloat64;
    auto m = random_molt(cfg, 4);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
    const auto opts = at::TensorOptions().dtype(dtype);
    const at::Tensor x = at::randn({30, 24}, gen, opts), G = at::randn({30, 24}, gen, opts);
    const sd::SparseActs a = sd::sparse_from_dense(m.encode(x, 5));
    sd::detail::MoltTransforms T;
    std::vector<at::Tensor> gU1, gV1, gU2, gV2;
    for (std::size_t g = 0; g < m.groups().size(); ++g) {
      T.U.push_back(m.U(g));
      T.V.push_back(m.V(g));
      T.offset.push_back(m.groups()[g].local_offset);
      for (auto* v : {&gU1, &gU2}) v->push_back(at::zeros_like(m.U(g)));
      for (auto* v : {&gV1, &gV2}) v->push_back(at::zeros_like(m.V(g)));
    }
    at::Tensor o1 = at::zeros_like(x), o2 = at::zeros_like(x);
    const at::Tensor p1 = sd::detail::molt_sparse_forward(a, x, T, o1);
    const at::Tensor p2 = sd::detail::molt_sparse_forward(a, x, T, o2, sd::SparseBackend::kOps);
    // float32 sums of d = 24 products in another order: 24·eps relative to the terms' scale
    const double tol = dtype == at::kFloat ? 24 * 1.2e-7 * 8 : 1e-12;
    const auto close = [&](const at::Tensor& u, const at::Tensor& v) {
      return (u - v).abs().max().item<double>() <= tol * (v.abs().max().item<double>() + 1.0);
    };
    CHECK(close(o1, o2));
    CHECK(close(o1, m.reconstruct(x, m.encode(x, 5)) - m.b_D()));
    CHECK(close(p1, p2));
    const at::Tensor d1 = sd::detail::molt_sparse_backward(a, p1, x, G, T, gU1, gV1);
    const at::Tensor d2 =
        sd::detail::molt_sparse_backward(a, p2, x, G, T, gU2, gV2, sd::SparseBackend::kOps);
    CHECK(close(d1, d2));
    for (std::size_t g = 0; g < gU1.size(); ++g) {
      CHECK(close(gU1[g], gU2[g]));
      CHECK(close(gV1[g], gV2[g]));
    }
  }
}

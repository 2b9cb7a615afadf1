// CrossLayerTranscoder against plain formula implementations (float64): the forward of every
// act_fn with selections done by sorting (independent of the library's radix selects), the
// selection counts of the layer variants, the manual backward against autograd for every
// act_fn × penalty × gating × mask, the checkpoint names/shapes of the original, and the exact
// fold.
#include "saes/dictionaries/clt.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/dictionaries/registry.h"
#include "saes/io/safetensors.h"

namespace sd = saes::dictionaries;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kL = 3, kD = 4, kS = 5, kN = 6;

sd::SparseDictionaryConfig clt_cfg(sd::ActFn act, bool gating) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kClt;
  cfg.d_model = kD;
  cfg.expansion_factor = static_cast<double>(kS) / kD;
  cfg.act_fn = act;
  cfg.top_k = act == sd::ActFn::kLayerTopK || act == sd::ActFn::kBatchLayerTopK ? 4 : 2;
  cfg.sparsity_include_decoder_norm = gating;
  cfg.jumprelu_threshold_window = 0.8;
  for (std::int64_t l = 0; l < kL; ++l) {
    cfg.hook_points_in.push_back("blocks." + std::to_string(l) + ".ln2.hook_normalized");
    cfg.hook_points_out.push_back("blocks." + std::to_string(l) + ".hook_mlp_out");
  }
  cfg.dtype = saes::DType::kFloat64;
  return cfg;
}

/// A CLT with random weights (biases and thresholds too), dataset norms set.
sd::CrossLayerTranscoder random_clt(const sd::SparseDictionaryConfig& cfg, std::uint64_t seed) {
  sd::CrossLayerTranscoder clt(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  clt.init_parameters({1.0, 1.0, std::log(0.4)}, gen);
  for (auto& p : clt.parameters()) {
    if (p.name == "b_E") p.value.normal_(0.1, 0.3, gen);
    if (p.name.rfind("b_D", 0) == 0) p.value.normal_(0.0, 0.2, gen);
    if (p.name.rfind("W_D", 0) == 0) p.value.mul_(3.0);
    if (p.name == "activation_function.log_jumprelu_threshold")
      p.value.normal_(std::log(0.3), 0.4, gen);
  }
  for (std::int64_t l = 0; l < kL; ++l) {
    clt.set_dataset_norm(cfg.hook_points_in[l], 1.5 + 0.3 * l);
    clt.set_dataset_norm(cfg.hook_points_out[l], 0.7 + 0.5 * l);
  }
  return clt;
}

sd::HookActs random_acts(const sd::SparseDictionaryConfig& cfg, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  sd::HookActs acts;
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  for (const auto& h : cfg.hook_points_in) acts[h] = at::randn({kN, kD}, gen, opts) * 2.0;
  for (const auto& h : cfg.hook_points_out) acts[h] = at::randn({kN, kD}, gen, opts);
  return acts;
}

/// Indices of the `k` largest positive values (by sorting).
std::vector<std::size_t> top_positive(const std::vector<double>& v, std::int64_t k) {
  std::vector<std::size_t> idx(v.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return v[a] > v[b]; });
  std::vector<std::size_t> out;
  for (std::size_t j = 0; j < idx.size() && static_cast<std::int64_t>(out.size()) < k; ++j) {
    if (v[idx[j]] > 0) out.push_back(idx[j]);
  }
  return out;
}

/// The selection of spec §3.3 on scores s[n][l][i], by plain loops and sorting.
at::Tensor reference_mask(sd::ActFn act, const at::Tensor& s_t, const at::Tensor& log_theta,
                          std::int64_t k) {
  const auto s = s_t.contiguous();
  const double* p = s.data_ptr<double>();
  auto at3 = [&](std::int64_t n, std::int64_t l, std::int64_t i) {
    return p[(n * kL + l) * kS + i];
  };
  at::Tensor m = at::zeros({kN, kL, kS}, at::kDouble);
  auto set = [&](std::int64_t n, std::int64_t l, std::int64_t i) { m[n][l][i] = 1.0; };
  switch (act) {
    case sd::ActFn::kRelu:
      for (std::int64_t n = 0; n < kN; ++n)
        for (std::int64_t l = 0; l < kL; ++l)
          for (std::int64_t i = 0; i < kS; ++i)
            if (at3(n, l, i) > 0) set(n, l, i);
      break;
    case sd::ActFn::kJumpRelu:
      for (std::int64_t n = 0; n < kN; ++n)
        for (std::int64_t l = 0; l < kL; ++l)
          for (std::int64_t i = 0; i < kS; ++i)
            if (at3(n, l, i) > std::exp(log_theta[l][i].item<double>())) set(n, l, i);
      break;
    case sd::ActFn::kTopK:
      for (std::int64_t n = 0; n < kN; ++n)
        for (std::int64_t l = 0; l < kL; ++l) {
          std::vector<double> v;
          for (std::int64_t i = 0; i < kS; ++i) v.push_back(at3(n, l, i));
          for (auto i : top_positive(v, k)) set(n, l, static_cast<std::int64_t>(i));
        }
      break;
    case sd::ActFn::kLayerTopK:
      for (std::int64_t n = 0; n < kN; ++n) {
        std::vector<double> v;
        for (std::int64_t l = 0; l < kL; ++l)
          for (std::int64_t i = 0; i < kS; ++i) v.push_back(at3(n, l, i));
        for (auto j : top_positive(v, k)) set(n, static_cast<std::int64_t>(j) / kS, j % kS);
      }
      break;
    case sd::ActFn::kBatchTopK:
      for (std::int64_t l = 0; l < kL; ++l) {
        std::vector<double> v;
        for (std::int64_t n = 0; n < kN; ++n)
          for (std::int64_t i = 0; i < kS; ++i) v.push_back(at3(n, l, i));
        for (auto j : top_positive(v, k * kN)) set(static_cast<std::int64_t>(j) / kS, l, j % kS);
      }
      break;
    case sd::ActFn::kBatchLayerTopK: {
      std::vector<double> v(p, p + kN * kL * kS);
      for (auto j : top_positive(v, k * kN)) {
        const auto jj = static_cast<std::int64_t>(j);
        set(jj / (kL * kS), (jj / kS) % kL, jj % kS);
      }
      break;
    }
  }
  return m;
}

using Params = std::map<std::string, at::Tensor>;

/// The CLT of spec §2.4 written with plain tensor ops (autograd), on normalized x [N, L, d] and
/// y [L, N, d]; selections from reference_mask; N without gradient; JumpReLU STE as
/// c·(θ − θ.detach()) on σ(s).
at::Tensor reference_loss(const Params& P, const sd::SparseDictionaryConfig& cfg,
                          const at::Tensor& x, const at::Tensor& y, const at::Tensor& mask,
                          const sd::LossSettings& ls) {
  const bool g = cfg.sparsity_include_decoder_norm;
  const bool jump = cfg.act_fn == sd::ActFn::kJumpRelu;
  std::vector<at::Tensor> hs, sq(kL, at::zeros({kS}, at::kDouble));
  for (std::int64_t l = 0; l < kL; ++l) {
    hs.push_back(at::mm(x.select(1, l), P.at("W_E")[l]) + P.at("b_E")[l]);
  }
  for (std::int64_t t = 0; t < kL; ++t) {
    const at::Tensor Wt = P.at("W_D." + std::to_string(t)).detach();
    for (std::int64_t l = 0; l <= t; ++l) sq[l] = sq[l] + Wt[l].pow(2).sum(1);
  }
  const at::Tensor n = at::stack(sq).sqrt();  // [L, S]
  const at::Tensor h = at::stack(hs, 1);      // [N, L, S]
  const at::Tensor s = g ? h * n : h;
  const at::Tensor logt = jump ? P.at("activation_function.log_jumprelu_threshold") : at::Tensor();
  const at::Tensor A = reference_mask(cfg.act_fn, s.detach(), jump ? logt.detach() : at::Tensor(),
                                      ls.current_k > 0 ? ls.current_k : cfg.top_k);
  at::Tensor sig = s * A;
  if (jump) {
    const double eps = cfg.jumprelu_threshold_window;
    const at::Tensor theta = at::exp(logt);
    const at::Tensor K = ((at::abs(s - theta) < eps / 2) & (s > 0)).to(at::kDouble);
    sig = sig + (-theta / eps * K).detach() * (theta - theta.detach());
  }
  const at::Tensor f = g ? sig / n : sig;
  const at::Tensor w = mask.defined() ? mask.to(at::kDouble) / mask.to(at::kDouble).sum()
                                      : at::full({kN}, 1.0 / kN, at::kDouble);
  at::Tensor loss = at::zeros({}, at::kDouble);
  for (std::int64_t t = 0; t < kL; ++t) {
    at::Tensor yhat = at::zeros({kN, kD}, at::kDouble);
    for (std::int64_t l = 0; l <= t; ++l) {
      yhat = yhat + at::mm(f.select(1, l), P.at("W_D." + std::to_string(t))[l]);
    }
    if (cfg.use_decoder_bias) yhat = yhat + P.at("b_D." + std::to_string(t));
    loss = loss + ((yhat - y[t]).pow(2).sum(1) * w).sum() / kL;
  }
  const at::Tensor u = g ? f * n : f;
  const double lam = ls.l1_coefficient, c = ls.tanh_stretch_coefficient;
  switch (ls.sparsity) {
    case sd::SparsityPenalty::kNone:
      break;
    case sd::SparsityPenalty::kPower:
      loss =
          loss +
          lam * (at::linalg_vector_norm(u, static_cast<double>(ls.p), {2}) * w.unsqueeze(1)).sum() /
              kL;
      break;
    case sd::SparsityPenalty::kTanh:
      loss = loss + lam * (at::tanh(c * u).sum(2) * w.unsqueeze(1)).sum() / kL;
      break;
    case sd::SparsityPenalty::kTanhQuad: {
      const at::Tensor ph = at::tanh(c * u).mean(at::IntArrayRef{0, 1});
      loss = loss + lam * (ph * (1 + ph / ls.frequency_scale)).sum();
      break;
    }
  }
  return loss;
}

/// The penalty of the backward tests, with coefficients that make every term matter.
sd::LossSettings penalty_settings(sd::SparsityPenalty penalty, std::int64_t p) {
  sd::LossSettings ls;
  ls.sparsity = penalty;
  ls.p = p;
  ls.l1_coefficient = 0.6;
  ls.tanh_stretch_coefficient = 1.3;
  ls.frequency_scale = 0.4;
  return ls;
}

const std::vector<sd::ActFn> kActs = {sd::ActFn::kRelu,      sd::ActFn::kJumpRelu,
                                      sd::ActFn::kTopK,      sd::ActFn::kLayerTopK,
                                      sd::ActFn::kBatchTopK, sd::ActFn::kBatchLayerTopK};

}  // namespace

TEST_CASE("clt forward equals the plain formulas for every act_fn", "[dictionaries][clt]") {
  for (const sd::ActFn act : kActs) {
    for (const bool gating : {true, false}) {
      INFO("act " << static_cast<int>(act) << " gating " << gating);
      const auto cfg = clt_cfg(act, gating);
      const auto clt = random_clt(cfg, 3);
      const auto acts = random_acts(cfg, 4);
      const at::Tensor x = clt.prepare_input(acts);
      const at::Tensor y = clt.prepare_label(acts);
      REQUIRE(x.sizes() == at::IntArrayRef({kN, kL, kD}));
      REQUIRE(y.sizes() == at::IntArrayRef({kL, kN, kD}));
      // layouts: input [N, L, d], label layer-first, each hook with its own dataset scale
      CHECK(at::allclose(x.select(1, 2), acts.at(cfg.hook_points_in[2]) * (2.0 / 2.1)));
      CHECK(at::allclose(y[1], acts.at(cfg.hook_points_out[1]) * (2.0 / 1.2)));
      // plain loops: h, N, selection (sorting), f, ŷ
      at::Tensor h = at::zeros({kN, kL, kS}, at::kDouble);
      at::Tensor n = at::zeros({kL, kS}, at::kDouble);
      for (std::int64_t l = 0; l < kL; ++l) {
        for (std::int64_t i = 0; i < kS; ++i) {
          double q = 0;
          for (std::int64_t t = l; t < kL; ++t) {
            for (std::int64_t j = 0; j < kD; ++j)
              q += std::pow(clt.W_D(t)[l][i][j].item<double>(), 2);
          }
          n[l][i] = std::sqrt(q);
          for (std::int64_t r = 0; r < kN; ++r) {
            double a = clt.b_E()[l][i].item<double>();
            for (std::int64_t j = 0; j < kD; ++j) {
              a += x[r][l][j].item<double>() * clt.W_E()[l][j][i].item<double>();
            }
            h[r][l][i] = a;
          }
        }
      }
      const at::Tensor s = gating ? h * n : h;
      const at::Tensor m = reference_mask(act, s, clt.log_jumprelu_threshold(), cfg.top_k);
      const at::Tensor f_ref = h * m;
      CHECK(at::allclose(clt.decoder_norm(), n, 1e-12, 1e-12));
      CHECK(at::allclose(clt.hidden_pre(x), h, 1e-12, 1e-12));
      const at::Tensor f = clt.encode(x);
      CHECK(at::equal(f.ne(0), m.ne(0)));
      CHECK(at::allclose(f, f_ref, 1e-12, 1e-12));
      const at::Tensor yhat = clt.decode(f_ref);
      for (std::int64_t t = 0; t < kL; ++t) {
        for (std::int64_t r = 0; r < kN; ++r) {
          for (std::int64_t j = 0; j < kD; ++j) {
            double a = clt.b_D(t)[j].item<double>();
            for (std::int64_t l = 0; l <= t; ++l) {
              for (std::int64_t i = 0; i < kS; ++i) {
                a += f_ref[r][l][i].item<double>() * clt.W_D(t)[l][i][j].item<double>();
              }
            }
            CHECK(yhat[t][r][j].item<double>() == Approx(a).margin(1e-12));
          }
        }
      }
    }
  }
}

TEST_CASE("clt selection counts of topk, layertopk, batchtopk and batchlayertopk",
          "[dictionaries][clt]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
  const std::int64_t k = 3;
  const at::Tensor s = at::rand({kN, kL, kS}, gen, at::kDouble) + 0.01;  // all positive
  for (const sd::ActFn act : {sd::ActFn::kTopK, sd::ActFn::kLayerTopK, sd::ActFn::kBatchTopK,
                              sd::ActFn::kBatchLayerTopK}) {
    auto cfg = clt_cfg(act, false);
    cfg.top_k = k;
    const sd::CrossLayerTranscoder clt(cfg);
    const at::Tensor m = clt.activation_mask(s, k).to(at::kLong);
    INFO("act " << static_cast<int>(act));
    switch (act) {
      case sd::ActFn::kTopK:  // k per token and layer
        CHECK(at::all(m.sum(2) == k).item<bool>());
        break;
      case sd::ActFn::kLayerTopK:  // k per token over all layers
        CHECK(at::all(m.sum(at::IntArrayRef{1, 2}) == k).item<bool>());
        break;
      case sd::ActFn::kBatchTopK:  // k·N per layer
        CHECK(at::all(m.sum(at::IntArrayRef{0, 2}) == k * kN).item<bool>());
        break;
      default:  // k·N over everything
        CHECK(m.sum().item<std::int64_t>() == k * kN);
    }
    CHECK(at::equal(m.to(at::kDouble), reference_mask(act, s, {}, k)));
  }
}

TEST_CASE("clt manual backward equals autograd for every act_fn x penalty x gating x mask",
          "[dictionaries][clt]") {
  const auto penalty = GENERATE(sd::SparsityPenalty::kNone, sd::SparsityPenalty::kPower,
                                sd::SparsityPenalty::kTanh, sd::SparsityPenalty::kTanhQuad);
  const bool gating = GENERATE(true, false);
  const bool masked = GENERATE(false, true);
  const std::int64_t p = GENERATE(1, 2);
  if (p == 2 && penalty != sd::SparsityPenalty::kPower) return;
  for (const sd::ActFn act : kActs) {
    INFO("act " << static_cast<int>(act) << " penalty " << static_cast<int>(penalty) << " gating "
                << gating << " masked " << masked << " p " << p);
    const auto cfg = clt_cfg(act, gating);
    auto clt = random_clt(cfg, 21);
    sd::TrainBatch batch;
    batch.acts = random_acts(cfg, 22);
    if (masked) batch.mask = at::tensor({1, 0, 1, 1, 0, 1}).to(at::kBool);
    const sd::LossSettings ls = penalty_settings(penalty, p);
    const sd::StepResult res = clt.forward_backward(batch, ls);

    Params P;
    for (auto& q : clt.parameters()) P[q.name] = q.value.detach().clone().requires_grad_(true);
    const at::Tensor loss = reference_loss(P, cfg, clt.prepare_input(batch.acts),
                                           clt.prepare_label(batch.acts), batch.mask, ls);
    loss.backward();
    CHECK(res.loss == Approx(loss.item<double>()).epsilon(1e-10));
    for (auto& q : clt.parameters()) {
      INFO("parameter " << q.name);
      const at::Tensor ref = P.at(q.name).grad();
      REQUIRE(ref.defined());
      const double err = (q.grad - ref).abs().max().item<double>();
      CHECK(err / (ref.abs().max().item<double>() + 1e-12) < 1e-9);
    }
    CHECK(res.feature_acts.sizes() == at::IntArrayRef({kN, kL * kS}));
    CHECK(res.reconstructed.sizes() == at::IntArrayRef({kL, kN, kD}));
    CHECK(res.fired.numel() == kL * kS);
  }
}

TEST_CASE("clt refuses L_p, Aux-K and bad configs", "[dictionaries][clt]") {
  auto cfg = clt_cfg(sd::ActFn::kTopK, true);
  auto clt = random_clt(cfg, 1);
  sd::TrainBatch batch;
  batch.acts = random_acts(cfg, 2);
  sd::LossSettings ls;
  ls.auxk_coefficient = 0.1;
  CHECK_THROWS_AS(clt.forward_backward(batch, ls), saes::UnsupportedError);
  batch.acts.erase(cfg.hook_points_out[2]);
  CHECK_THROWS_WITH(clt.forward_backward(batch, {}), Catch::Contains(cfg.hook_points_out[2]));
  auto bad = cfg;
  bad.hook_points_out.pop_back();
  CHECK_THROWS_WITH(sd::CrossLayerTranscoder(bad), Catch::Contains("sae.hook_points_out"));
  bad = cfg;
  bad.act_fn = sd::ActFn::kLayerTopK;
  bad.top_k = kL * kS + 1;
  CHECK_THROWS_WITH(sd::CrossLayerTranscoder(bad), Catch::Contains("sae.top_k"));
  CHECK_THROWS_WITH(clt.input_hook_point("saes-analyze"),
                    Catch::Contains("saes-analyze") && Catch::Contains("clt"));
  CHECK(clt.hook_points().size() == 2 * kL);
  CHECK(clt.n_features() == kL * kS);
}

TEST_CASE("clt checkpoints use the original's names and shapes and load back",
          "[dictionaries][clt]") {
  const auto cfg = clt_cfg(sd::ActFn::kJumpRelu, true);
  const auto clt = random_clt(cfg, 5);
  const fs::path dir = fs::temp_directory_path() / "saes_clt_checkpoint_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  clt.save(dir / "sae_weights.safetensors");
  const auto file = saes::io::SafetensorsFile::open(dir / "sae_weights.safetensors");
  CHECK(file.tensor("W_E").sizes() == at::IntArrayRef({kL, kD, kS}));
  CHECK(file.tensor("b_E").sizes() == at::IntArrayRef({kL, kS}));
  for (std::int64_t t = 0; t < kL; ++t) {
    CHECK(file.tensor("W_D." + std::to_string(t)).sizes() == at::IntArrayRef({t + 1, kS, kD}));
    CHECK(file.tensor("b_D." + std::to_string(t)).sizes() == at::IntArrayRef({kD}));
  }
  CHECK(file.tensor("activation_function.log_jumprelu_threshold").sizes() ==
        at::IntArrayRef({kL, kS}));
  CHECK(file.contains("dataset_average_activation_norm." + cfg.hook_points_out[1]));
  auto loaded = sd::make_dictionary(cfg);
  loaded->load(dir / "sae_weights.safetensors");
  const auto acts = random_acts(cfg, 6);
  const at::Tensor x = clt.prepare_input(acts);
  CHECK(at::equal(loaded->decode(loaded->encode(x)), clt.decode(clt.encode(x))));
  fs::remove_all(dir);
}

TEST_CASE("clt fold is exact for every act_fn, with and without gating", "[dictionaries][clt]") {
  for (const sd::ActFn act : kActs) {
    for (const bool gating : {true, false}) {
      INFO("act " << static_cast<int>(act) << " gating " << gating);
      const auto cfg = clt_cfg(act, gating);
      auto clt = random_clt(cfg, 9);
      const auto acts = random_acts(cfg, 10);
      // reference: dataset-wise model on raw activations, output back in raw units
      const at::Tensor f_before = clt.encode(clt.prepare_input(acts));
      at::Tensor y_raw = clt.decode(f_before).clone();
      for (std::int64_t t = 0; t < kL; ++t)
        y_raw[t].div_(clt.dataset_scale(cfg.hook_points_out[t]));
      clt.fold_activation_scale();
      CHECK(clt.folded());
      CHECK_FALSE(clt.config().sparsity_include_decoder_norm);
      const at::Tensor f_after = clt.encode(clt.prepare_input(acts));
      CHECK(at::equal(f_after.ne(0), f_before.ne(0)));  // the same active entries
      const at::Tensor y_folded = clt.decode(f_after);
      CHECK(at::allclose(y_folded, y_raw, 1e-10, 1e-10));
      // saved folded and loaded under the training config (gating on): the same function
      const fs::path file = fs::temp_directory_path() / "saes_clt_fold_test.safetensors";
      clt.save(file);
      auto loaded = sd::make_dictionary(cfg);
      loaded->load(file);
      fs::remove(file);
      CHECK(loaded->folded());
      CHECK(at::allclose(loaded->decode(loaded->encode(loaded->prepare_input(acts))), y_raw, 1e-10,
                         1e-10));
      clt.unfold_activation_scale();
      const at::Tensor y_unfolded = clt.decode(clt.encode(clt.prepare_input(acts)));
      for (std::int64_t t = 0; t < kL; ++t) {
        CHECK(at::allclose(y_unfolded[t] / clt.dataset_scale(cfg.hook_points_out[t]), y_raw[t],
                           1e-10, 1e-10));
      }
    }
  }
}

TEST_CASE("clt sparse step equals the dense step for every sparse act_fn x penalty x gating x mask",
          "[dictionaries][clt]") {
  const auto penalty = GENERATE(sd::SparsityPenalty::kNone, sd::SparsityPenalty::kPower,
                                sd::SparsityPenalty::kTanh, sd::SparsityPenalty::kTanhQuad);
  const bool gating = GENERATE(true, false);
  const bool masked = GENERATE(false, true);
  const std::int64_t p = GENERATE(1, 2);
  // float64 runs the op-based sparse kernels (the CUDA path), float32 the CPU kernels; both
  // against the float64 dense step. float32: each value is a sum of at most L·S + N·d ≈ 40
  // products, so 1e-5 relative to the largest entry is ~100 float32 epsilons.
  const bool fp32 = GENERATE(false, true);
  if (p == 2 && penalty != sd::SparsityPenalty::kPower) return;
  for (const sd::ActFn act : {sd::ActFn::kRelu, sd::ActFn::kTopK, sd::ActFn::kLayerTopK,
                              sd::ActFn::kBatchTopK, sd::ActFn::kBatchLayerTopK}) {
    INFO("act " << static_cast<int>(act) << " penalty " << static_cast<int>(penalty) << " gating "
                << gating << " masked " << masked << " p " << p << " fp32 " << fp32);
    auto cfg = clt_cfg(act, gating);
    cfg.sparse_kernels = sd::SparseKernels::kOff;
    auto dense = random_clt(cfg, 31);
    cfg.sparse_kernels = sd::SparseKernels::kOn;
    if (fp32) cfg.dtype = saes::DType::kFloat32;
    sd::CrossLayerTranscoder sparse(cfg);
    auto dense_params = dense.parameters();
    auto sparse_params = sparse.parameters();
    for (std::size_t i = 0; i < dense_params.size(); ++i) {
      sparse_params[i].value.copy_(dense_params[i].value);
    }
    for (const auto& h : dense.hook_points()) sparse.set_dataset_norm(h, *dense.dataset_norm(h));
    sd::TrainBatch batch;
    batch.acts = random_acts(cfg, 32);
    if (fp32) {
      for (auto& [hook, t] : batch.acts) t = t.to(at::kFloat);
    }
    if (masked) batch.mask = at::tensor({1, 0, 1, 1, 0, 1}).to(at::kBool);
    const sd::LossSettings ls = penalty_settings(penalty, p);
    const sd::StepResult d = dense.forward_backward(batch, ls);
    const sd::StepResult s = sparse.forward_backward(batch, ls);
    const double tol = fp32 ? 1e-5 : 1e-12;
    REQUIRE(s.sparse_feature_acts.defined());
    CHECK_FALSE(s.feature_acts.defined());
    CHECK(s.loss == Approx(d.loss).epsilon(tol));
    CHECK(s.l_sparsity == Approx(d.l_sparsity).epsilon(tol).margin(tol));
    CHECK(at::equal(s.fired, d.fired));
    CHECK(s.l0 == d.l0);
    const at::Tensor f = s.sparse_feature_acts.to_dense().to(at::kDouble);
    CHECK((f - d.feature_acts).abs().max().item<double>() <= tol * (1 + d.feature_acts.abs().max().item<double>()));
    CHECK((s.reconstructed.to(at::kDouble) - d.reconstructed).abs().max().item<double>() <=
          tol * d.reconstructed.abs().max().item<double>());
    for (std::size_t i = 0; i < dense_params.size(); ++i) {
      INFO("parameter " << dense_params[i].name);
      const at::Tensor& ref = dense_params[i].grad;
      const double err = (sparse_params[i].grad.to(at::kDouble) - ref).abs().max().item<double>();
      CHECK(err <= tol * (ref.abs().max().item<double>() + 1e-12));
    }
    // decode of dense feature acts takes the sparse decode too, with the same result
    const at::Tensor dense_f = d.feature_acts.view({kN, kL, kS}).to(sparse.W_E().options());
    CHECK((sparse.decode(dense_f).to(at::kDouble) - dense.decode(d.feature_acts.view({kN, kL, kS})))
              .abs()
              .max()
              .item<double>() <= tol * d.reconstructed.abs().max().item<double>());
  }
}

TEST_CASE("clt auto takes the sparse kernels by density; decode_with_csr sets the threshold",
          "[dictionaries][clt]") {
  auto cfg = clt_cfg(sd::ActFn::kLayerTopK, true);  // k = 4 of L·S = 15
  sd::CrossLayerTranscoder a(cfg);
  const at::Tensor s = at::zeros({kN, kL, kS}, at::kDouble);
  CHECK_FALSE(a.uses_sparse_step(s, 4));  // 0.27 > 0.05
  CHECK(a.density_threshold() == sd::kSparseMaxDensity);
  cfg.decode_with_csr = true;
  cfg.sparsity_threshold_for_csr = 0.3;
  sd::CrossLayerTranscoder b(cfg);
  CHECK(b.uses_sparse_step(s, 4));
  CHECK_FALSE(b.uses_sparse_step(s, 5));  // 0.33 > 0.3
  cfg.act_fn = sd::ActFn::kJumpRelu;
  CHECK_FALSE(sd::CrossLayerTranscoder(cfg).uses_sparse_step(s, 0));
  cfg.act_fn = sd::ActFn::kRelu;  // the measured density of s > 0
  at::Tensor s4 = s.clone();
  s4.view({-1}).narrow(0, 0, 26).fill_(1.0);  // 26 of 90 < 0.3
  CHECK(sd::CrossLayerTranscoder(cfg).uses_sparse_step(s4, 0));
  s4.view({-1}).narrow(0, 0, 28).fill_(1.0);  // 28 of 90 > 0.3
  CHECK_FALSE(sd::CrossLayerTranscoder(cfg).uses_sparse_step(s4, 0));
  cfg.sparse_kernels = sd::SparseKernels::kOff;
  CHECK_THROWS_WITH(sd::CrossLayerTranscoder(cfg), Catch::Contains("sae.decode_with_csr"));
}

TEST_CASE("clt per-target decoder norms: ‖W_D[t][l,i]‖, zero for t < l, squares summing to N²",
          "[dictionaries][clt]") {
  const auto cfg = clt_cfg(sd::ActFn::kTopK, true);
  auto clt = random_clt(cfg, 41);
  const at::Tensor norms = clt.target_decoder_norms();  // [L·S, L]
  REQUIRE(norms.sizes() == at::IntArrayRef({kL * kS, kL}));
  for (std::int64_t l = 0; l < kL; ++l) {
    for (std::int64_t i = 0; i < kS; ++i) {
      for (std::int64_t t = 0; t < kL; ++t) {
        const double want = t < l ? 0.0 : clt.W_D(t)[l][i].norm().item<double>();
        CHECK(norms[l * kS + i][t].item<double>() == Approx(want).epsilon(1e-12));
      }
    }
  }
  CHECK((norms.pow(2).sum(1).sqrt() - clt.decoder_norm().reshape({-1})).abs().max().item<double>() <
        1e-12);
}

TEST_CASE("clt DLA terms: layer l's decoders into every target t >= l", "[dictionaries][clt]") {
  const auto clt = random_clt(clt_cfg(sd::ActFn::kTopK, true), 17);
  const std::int64_t L = clt.n_layers();
  const at::Tensor directions = clt.feature_directions().view({L, -1, kD});
  for (std::int64_t l = 0; l < L; ++l) {
    const auto terms = clt.dla_terms(l);
    REQUIRE(static_cast<std::int64_t>(terms.size()) == L - l);
    at::Tensor sum = at::zeros_like(terms.front());
    for (std::int64_t t = l; t < L; ++t) {
      CHECK(at::equal(terms[static_cast<std::size_t>(t - l)], clt.W_D(t)[l]));
      sum = sum + terms[static_cast<std::size_t>(t - l)];
    }
    // the summed direction is what the decoder geometry reads
    CHECK(at::allclose(sum, directions[l]));
  }
  CHECK_THROWS_AS(clt.dla_terms(L), saes::ConfigError);
}

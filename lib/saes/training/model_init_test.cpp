// Model-informed initialization (spec §4 steps 5, 7, 8) against plain computations:
// initialize_lorsa_with_mhsa reproduces the model's own attention pattern (from its hook_q/hook_k,
// softmax written here) on stories260K (adjacent RoPE, GQA) and on the GPT-2 and NeoX fixtures
// (LayerNorm and QKV biases folded, learned positions, partial half-split RoPE permuted into
// adjacent pairs); Lorsa's per-head active subspace and the SAE's label subspace against SVDs
// computed here; initialize_tc_with_mlp against the MLP written out from the weights; the hook and
// shape checks.
#include "saes/training/model_init.h"

#include <cmath>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/core/logging.h"
#include "saes/dictionaries/lorsa.h"
#include "saes/dictionaries/sae.h"
#include "saes/lm/hf_folder.h"
#include "saes/lm/hooks.h"
#include "saes/lm/llama2c_loader.h"
#include "saes/training/initializer.h"
#include "support/temp_dir.h"

namespace sd = saes::dictionaries;
namespace fs = std::filesystem;
using saes::training::InitializerConfig;

namespace {

fs::path hf_fixture(const char* name) {
  return fs::path(SAES_SOURCE_DIR) / "tests" / "data" / "hf" / name;
}

/// A model's hook values of layer `layer` on random tokens.
struct LayerRun {
  at::Tensor x_hat, q, k;  ///< ln1.hook_normalized [B, T, d]; hook_q [B, T, H, D]; hook_k
};

LayerRun run_layer(const saes::lm::Transformer& model, std::int64_t layer, std::int64_t T) {
  const std::string p = "blocks." + std::to_string(layer) + ".";
  saes::lm::HookSet hooks;
  hooks.capture(p + "ln1.hook_normalized").capture(p + "attn.hook_q").capture(p + "attn.hook_k");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const at::Tensor tokens = at::randint(model.spec().d_vocab, {2, T}, gen, at::kLong);
  auto out = model.forward(tokens, nullptr, hooks, saes::lm::GradMode::kNoGrad);
  return {out.at(p + "ln1.hook_normalized"), out.at(p + "attn.hook_q"),
          out.at(p + "attn.hook_k")};
}

/// The model's causal attention pattern [B, H, T, T] from its post-RoPE q and k, float64.
at::Tensor reference_pattern(const LayerRun& r) {
  const at::Tensor q = r.q.to(at::kDouble).permute({0, 2, 1, 3});  // [B, H, T, D]
  at::Tensor k = r.k.to(at::kDouble).permute({0, 2, 1, 3});
  const std::int64_t H = q.size(1), T = q.size(2), D = q.size(3);
  k = at::repeat_interleave(k, H / k.size(1), 1);  // GQA: query head h reads kv head h / group
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(D));
  const at::Tensor future = at::triu(at::ones({T, T}, at::kBool), 1);
  scores = scores.masked_fill(future, -INFINITY);
  return at::softmax(scores, -1);
}

sd::SparseDictionaryConfig lorsa_for(const saes::lm::TransformerSpec& spec, std::int64_t layer,
                                     bool adjacent, std::int64_t repeat) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kLorsa;
  cfg.d_model = spec.d_model;
  cfg.expansion_factor = 4.0;
  cfg.act_fn = sd::ActFn::kTopK;
  cfg.top_k = 4;
  cfg.hook_point_in = "blocks." + std::to_string(layer) + ".ln1.hook_normalized";
  cfg.hook_point_out = "blocks." + std::to_string(layer) + ".hook_attn_out";
  cfg.n_qk_heads = spec.n_heads * repeat;
  cfg.d_qk_head = spec.d_head;
  const bool rotary = spec.positional == saes::lm::Positional::kRotary;
  cfg.positional_embedding_type = rotary ? "rotary" : "none";
  cfg.rotary_dim = rotary ? spec.rotary_dim : 0;
  cfg.rotary_base = saes::lm::rope_of_layer(spec, layer).theta;
  cfg.rotary_adjacent_pairs = adjacent;
  if (spec.qk_norm) {  // copied from the model's q_norm / k_norm
    cfg.use_post_qk_ln = true;
    cfg.normalization_type = "RMS";
    cfg.eps = spec.norm_eps;
  }
  cfg.n_ctx = 32;
  cfg.norm_activation = sd::NormActivation::kDatasetWise;
  cfg.dtype = saes::DType::kFloat32;
  return cfg;
}

InitializerConfig model_init(bool mhsa, bool subspace, std::int64_t layer) {
  InitializerConfig init;
  init.init_encoder_with_decoder_transpose = false;
  init.initialize_lorsa_with_mhsa = mhsa;
  init.initialize_W_D_with_active_subspace = subspace;
  init.model_layer = layer;
  return init;
}

/// Random Lorsa, MHSA-initialized from `model` at `layer`, then its pattern against the model's.
void check_mhsa_pattern(const saes::lm::Transformer& model, std::int64_t layer, bool adjacent) {
  const LayerRun run = run_layer(model, layer, 12);
  sd::LowRankSparseAttention lorsa(lorsa_for(model.spec(), layer, adjacent, 2));
  lorsa.set_dataset_norm(lorsa.config().hook_point_in, 2.5);  // a scale f_in != 1 to undo
  lorsa.set_dataset_norm(lorsa.config().hook_point_out, 1.0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  lorsa.init_parameters({}, gen);
  const sd::HookActs raw = {{lorsa.config().hook_point_in, run.x_hat},
                            {lorsa.config().hook_point_out, at::zeros_like(run.x_hat)}};
  saes::Logger logger(saes::LogLevel::kWarn, stderr);
  saes::training::initialize_from_model(lorsa, model_init(true, false, layer), &model, "m", raw,
                                        logger);
  const at::Tensor ours = lorsa.attention_pattern(lorsa.prepare_input(raw)).to(at::kDouble);
  const at::Tensor want = at::repeat_interleave(reference_pattern(run), 2, 1);
  // float32 scores over d_head terms of O(10) and a softmax: 1e-5 on probabilities
  CHECK(ours.sizes() == want.sizes());
  CHECK((ours - want).abs().max().item<double>() < 1e-5);
  // the check is not vacuous: the patterns are far from uniform-causal
  CHECK(want.max().item<double>() > 0.5);
}

}  // namespace

TEST_CASE("initialize_lorsa_with_mhsa reproduces the model's attention pattern", "[init][lorsa]") {
  SECTION("GPT-2 fixture: LayerNorm weight and bias and QKV biases folded, learned positions") {
    const auto model = saes::lm::load_hf_folder(hf_fixture("gpt2"));
    check_mhsa_pattern(model, 1, true);
  }
  SECTION("NeoX fixture: partial half-split RoPE, permuted into adjacent pairs and kept") {
    const auto model = saes::lm::load_hf_folder(hf_fixture("neox-sequential"));
    REQUIRE(model.spec().rotary_dim < model.spec().d_head);
    check_mhsa_pattern(model, 0, true);
    check_mhsa_pattern(model, 1, false);
  }
  SECTION("Qwen3 fixture: per-head QK-norm weights copied, GQA") {
    const auto model = saes::lm::load_hf_folder(hf_fixture("qwen3"));
    REQUIRE(model.spec().qk_norm);
    check_mhsa_pattern(model, 1, false);
    check_mhsa_pattern(model, 0, true);
  }
  SECTION("Gemma 3 fixture: (1 + w) QK-norm, a sliding layer's local RoPE base") {
    // the pattern compared is the model's before its sliding window (Lorsa has none)
    const auto model = saes::lm::load_hf_folder(hf_fixture("gemma3"));
    REQUIRE(saes::lm::is_sliding_layer(model.spec(), 0));
    check_mhsa_pattern(model, 0, false);
  }
  SECTION("stories260K: adjacent RoPE, grouped-query attention (8 query, 4 kv heads)") {
    SAES_REQUIRE_ASSETS();
    const auto model = saes::lm::load_llama2c(saes::testing::test_assets_dir() /
                                              "llama2c-stories260K/stories260K.bin");
    REQUIRE(model.spec().n_kv_heads < model.spec().n_heads);
    check_mhsa_pattern(model, 2, true);
    check_mhsa_pattern(model, 2, false);
  }
}

TEST_CASE("model-informed inits name what does not fit", "[init][lorsa]") {
  const auto model = saes::lm::load_hf_folder(hf_fixture("neox-sequential"));
  saes::Logger logger(saes::LogLevel::kWarn, stderr);
  auto cfg = lorsa_for(model.spec(), 1, true, 1);
  const auto attempt = [&](const sd::SparseDictionaryConfig& c, const InitializerConfig& init) {
    sd::LowRankSparseAttention lorsa(c);
    lorsa.set_dataset_norm(c.hook_point_in, 1.0);
    lorsa.set_dataset_norm(c.hook_point_out, 1.0);
    const at::Tensor x = at::randn({2, 8, c.d_model});
    saes::training::initialize_from_model(
        lorsa, init, &model, "neox", {{c.hook_point_in, x}, {c.hook_point_out, x}}, logger);
  };
  CHECK_NOTHROW(attempt(cfg, model_init(true, true, 1)));
  REQUIRE_THROWS_WITH(attempt(cfg, model_init(true, false, 0)),
                      Catch::Contains("with model_layer 0 the dictionary must read "
                                      "blocks.0.ln1.hook_normalized"));
  REQUIRE_THROWS_WITH(attempt(cfg, model_init(true, false, 7)),
                      Catch::Contains("initializer.model_layer: 7 is not a layer of neox"));
  auto wrong = cfg;
  wrong.rotary_dim = cfg.rotary_dim + 2;
  REQUIRE_THROWS_WITH(attempt(wrong, model_init(true, false, 1)),
                      Catch::Contains("and sae.rotary_dim: " + std::to_string(cfg.rotary_dim)));
  wrong = cfg;
  wrong.rotary_base = 500000.0;
  REQUIRE_THROWS_WITH(attempt(wrong, model_init(true, false, 1)),
                      Catch::Contains("sae.rotary_base 500000 differs"));
  wrong = cfg;
  wrong.d_qk_head = cfg.d_qk_head * 2;
  wrong.rotary_dim = cfg.rotary_dim;
  REQUIRE_THROWS_WITH(attempt(wrong, model_init(true, false, 1)),
                      Catch::Contains("sae.d_qk_head"));
  REQUIRE_THROWS_WITH(
      saes::training::initialize_from_model(
          *std::make_unique<sd::LowRankSparseAttention>(cfg), model_init(true, false, 1), nullptr,
          "neox", {}, logger),
      Catch::Contains("set model.model_from_pretrained_path"));
  // QK-norm must be matched both ways
  wrong = cfg;
  wrong.use_post_qk_ln = true;
  wrong.normalization_type = "RMS";
  REQUIRE_THROWS_WITH(attempt(wrong, model_init(true, false, 1)),
                      Catch::Contains("has no QK-norm to copy"));
  const auto qwen3 = saes::lm::load_hf_folder(hf_fixture("qwen3"));
  const auto plain = lorsa_for(qwen3.spec(), 1, true, 1);
  auto no_norm = plain;
  no_norm.use_post_qk_ln = false;
  const auto attempt_on = [&](const saes::lm::Transformer& m, const sd::SparseDictionaryConfig& c,
                              std::int64_t layer) {
    sd::LowRankSparseAttention lorsa(c);
    lorsa.set_dataset_norm(c.hook_point_in, 1.0);
    lorsa.set_dataset_norm(c.hook_point_out, 1.0);
    const at::Tensor x = at::randn({2, 8, c.d_model});
    saes::training::initialize_from_model(lorsa, model_init(true, false, layer), &m, "m",
                                          {{c.hook_point_in, x}, {c.hook_point_out, x}}, logger);
  };
  REQUIRE_THROWS_WITH(attempt_on(qwen3, no_norm, 1),
                      Catch::Contains("set sae.use_post_qk_ln: true"));
  // Gemma 3's global layers scale RoPE positions linearly, which Lorsa cannot
  const auto gemma3 = saes::lm::load_hf_folder(hf_fixture("gemma3"));
  REQUIRE_THROWS_WITH(attempt_on(gemma3, lorsa_for(gemma3.spec(), 2, true, 1), 2),
                      Catch::Contains("scales its RoPE positions linearly (factor 4)"));
}

TEST_CASE("a lorsa's active-subspace init: W_V in each head's value subspace, W_O through it",
          "[init][lorsa]") {
  const auto model = saes::lm::load_hf_folder(hf_fixture("neox-sequential"));
  const std::int64_t layer = 1;
  const LayerRun run = run_layer(model, layer, 16);
  const auto cfg = lorsa_for(model.spec(), layer, true, 2);
  sd::LowRankSparseAttention lorsa(cfg);
  lorsa.set_dataset_norm(cfg.hook_point_in, 2.0);
  lorsa.set_dataset_norm(cfg.hook_point_out, 1.0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  lorsa.init_parameters({}, gen);
  const at::Tensor W_V0 = lorsa.W_V().to(at::kDouble).clone();
  const sd::HookActs raw = {{cfg.hook_point_in, run.x_hat},
                            {cfg.hook_point_out, at::zeros_like(run.x_hat)}};
  saes::Logger logger(saes::LogLevel::kWarn, stderr);
  saes::training::initialize_from_model(lorsa, model_init(false, true, layer), &model, "neox", raw,
                                        logger);
  // plain computation: x = f_in·x̂; per model head, principal directions of x·V·Vᵀ
  const auto a = saes::training::attention_layer(model, layer, "neox");
  const at::Tensor x = lorsa.prepare_input(raw).reshape({-1, cfg.d_model}).to(at::kDouble);
  const std::int64_t per_head = lorsa.d_sae() / a.n_heads(), k = cfg.d_qk_head;
  const at::Tensor W_V = lorsa.W_V().to(at::kDouble), W_O = lorsa.W_O().to(at::kDouble);
  for (std::int64_t h = 0; h < a.n_heads(); ++h) {
    const at::Tensor Vh = a.W_V[h].to(at::kDouble);
    at::Tensor proj = at::matmul(at::matmul(x, Vh), Vh.t());
    proj = proj - proj.mean({0}, true);
    const at::Tensor basis = std::get<2>(at::linalg_svd(proj, false)).narrow(0, 0, k);  // [k, d]
    const at::Tensor v = at::matmul(W_V0.narrow(0, h * per_head, per_head).narrow(1, 0, k), basis);
    const at::Tensor v_unit = v / v.norm(2, {1}, true);
    const at::Tensor o = at::matmul(at::matmul(v_unit, Vh), a.W_O[h].to(at::kDouble));
    // singular vectors are defined up to sign, rows of v up to that sign pattern: compare the
    // projector onto the span and the rows' |cosine| with the reference rows
    const at::Tensor ours_v = W_V.narrow(0, h * per_head, per_head);
    const at::Tensor ours_o = W_O.narrow(0, h * per_head, per_head);
    const at::Tensor outside = ours_v - at::matmul(at::matmul(ours_v, basis.t()), basis);
    CHECK(outside.abs().max().item<double>() < 1e-5);
    CHECK((ours_v.norm(2, {1}) - 1).abs().max().item<double>() < 1e-5);
    CHECK((ours_o.norm(2, {1}) - 1).abs().max().item<double>() < 1e-5);
    const at::Tensor cos_o = (ours_o * (o / o.norm(2, {1}, true))).sum(1).abs();
    CHECK((cos_o - 1).abs().max().item<double>() < 1e-4);
    // W_O follows from W_V: the rows are the unit W_V·W_V^h·W_O^h of our own W_V exactly
    const at::Tensor from_ours = at::matmul(at::matmul(ours_v, Vh), a.W_O[h].to(at::kDouble));
    const at::Tensor cos_self = (ours_o * (from_ours / from_ours.norm(2, {1}, true))).sum(1);
    CHECK((cos_self - 1).abs().max().item<double>() < 1e-5);
  }
}

TEST_CASE("an SAE's active-subspace init confines the decoder to the label's top subspace",
          "[init]") {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kSae;
  cfg.d_model = 12;
  cfg.expansion_factor = 4;
  cfg.hook_point_in = cfg.hook_point_out = "blocks.0.hook_resid_pre";
  cfg.dtype = saes::DType::kFloat64;
  sd::SparseAutoEncoder sae(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  sae.init_parameters({1.0, 1.0, std::nullopt}, gen);
  const at::Tensor W_D0 = sae.W_D().clone();
  // labels with most variance in 5 directions, and a mean far from 0 (centring matters)
  const at::Tensor mix = at::randn({5, 12}, gen, at::kDouble);
  const at::Tensor label = at::matmul(at::randn({300, 5}, gen, at::kDouble) * 3.0, mix) +
                           0.01 * at::randn({300, 12}, gen, at::kDouble) + 4.0;
  sae.init_decoder_in_active_subspace(label, label, 5, nullptr);
  at::Tensor centred = label - label.mean({0}, true);
  const at::Tensor basis = std::get<2>(at::linalg_svd(centred, false)).narrow(0, 0, 5);
  const at::Tensor want = at::matmul(W_D0.narrow(1, 0, 5), basis);
  // singular vectors are defined up to sign: compare the span and the row norms
  const at::Tensor outside = sae.W_D() - at::matmul(at::matmul(sae.W_D(), basis.t()), basis);
  CHECK(outside.abs().max().item<double>() < 1e-10);
  CHECK((sae.W_D().norm(2, {1}) - want.norm(2, {1})).abs().max().item<double>() < 1e-10);
  REQUIRE_THROWS_WITH(sae.init_decoder_in_active_subspace(label, label, 13, nullptr),
                      Catch::Contains("initializer.d_active_subspace"));
}

TEST_CASE("initialize_tc_with_mlp: decoder rows from the MLP at the probe inputs", "[init]") {
  SAES_REQUIRE_ASSETS();
  const auto model = saes::lm::load_llama2c(saes::testing::test_assets_dir() /
                                            "llama2c-stories260K/stories260K.bin");
  const std::int64_t layer = 3, d = model.spec().d_model;
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kSae;
  cfg.d_model = d;
  cfg.expansion_factor = 2;
  cfg.hook_point_in = "blocks.3.ln2.hook_normalized";
  cfg.hook_point_out = "blocks.3.hook_mlp_out";
  cfg.dtype = saes::DType::kFloat32;
  sd::SparseAutoEncoder sae(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  sae.init_parameters({1.0, 1.0, std::nullopt}, gen);
  const at::Tensor W_E0 = sae.W_E().to(at::kDouble).clone();
  saes::lm::HookSet hooks;
  hooks.capture(cfg.hook_point_in);
  const at::Tensor tokens = at::randint(model.spec().d_vocab, {2, 16}, gen, at::kLong);
  const at::Tensor x =
      model.forward(tokens, nullptr, hooks, saes::lm::GradMode::kNoGrad).at(cfg.hook_point_in);
  const at::Tensor rows = x.reshape({-1, d});
  InitializerConfig init;
  init.initialize_tc_with_mlp = true;
  init.model_layer = layer;
  saes::Logger logger(saes::LogLevel::kWarn, stderr);
  saes::training::initialize_from_model(sae, init, &model, "stories260K",
                                        {{cfg.hook_point_in, rows}}, logger);
  // plain computation: SwiGLU written out from the weights, with the ln2 weight
  const at::Tensor xd = rows.to(at::kDouble);
  const at::Tensor mu = xd.mean({0}, true);
  const double sigma = (xd - mu).norm(2, {1}).mean().item<double>();
  const at::Tensor dirs = W_E0 / W_E0.norm(2, {0}, true);
  const at::Tensor p = (mu + sigma * dirs.t()) * model.weight("blocks.3.ln2.w").to(at::kDouble);
  const auto w = [&](const char* n) { return model.weight(std::string("blocks.3.mlp.") + n).to(at::kDouble); };
  const at::Tensor gate = at::matmul(p, w("W_gate").t());
  const at::Tensor o =
      at::matmul(gate * at::sigmoid(gate) * at::matmul(p, w("W_in").t()), w("W_out").t());
  const at::Tensor c = o - o.mean({0}, true);
  const at::Tensor want = c / c.norm(2, {1}, true);
  // float32 MLP over d_mlp-term sums, then a unit row: 1e-4
  CHECK((sae.W_D().to(at::kDouble) - want).abs().max().item<double>() < 1e-4);
  CHECK((sae.W_E().to(at::kDouble) - dirs).abs().max().item<double>() < 1e-6);

  auto not_mlp = cfg;
  not_mlp.hook_point_out = "blocks.3.hook_resid_post";
  sd::SparseAutoEncoder other(not_mlp);
  REQUIRE_THROWS_WITH(saes::training::initialize_from_model(other, init, &model, "stories260K",
                                                            {{cfg.hook_point_in, rows}}, logger),
                      Catch::Contains("reconstruct blocks.3.hook_mlp_out"));
}

// Tests of the evaluation metrics: reconstruction formulas against hand computations on small
// tensors, and the downstream metrics on stories260K against the model's own cross-entropy.
#include "saes/analysis/evaluation.h"

#include <cmath>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/dictionaries/sae.h"
#include "saes/lm/llama2c_loader.h"
#include "saes/lm/tokenizer.h"
#include "saes/lm/transformer.h"

#include "support/temp_dir.h"

namespace an = saes::analysis;
namespace sd = saes::dictionaries;
namespace lm = saes::lm;
using Catch::Matchers::WithinAbs;

namespace {

const std::string kHook = "blocks.2.hook_resid_post";

at::Tensor rows(std::initializer_list<std::initializer_list<double>> values) {
  std::vector<double> flat;
  std::int64_t cols = 0;
  for (const auto& r : values) {
    flat.insert(flat.end(), r.begin(), r.end());
    cols = static_cast<std::int64_t>(r.size());
  }
  return at::tensor(flat, at::kDouble).reshape({-1, cols});
}

/// An SAE whose reconstruction is exactly its input: f = relu([x, −x]), x̂ = f·[I; −I].
/// `scale` multiplies the decoder (0 gives an SAE that always outputs zero).
/// With out_hook set it is a transcoder from `hook` to `out_hook`.
sd::SparseAutoEncoder identity_sae(std::int64_t d, const std::string& hook, double scale = 1.0,
                                   const std::string& out_hook = {}) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = d;
  cfg.expansion_factor = 2.0;
  cfg.act_fn = sd::ActFn::kRelu;
  cfg.norm_activation = sd::NormActivation::kInference;
  cfg.use_decoder_bias = false;
  cfg.sparsity_include_decoder_norm = false;
  cfg.hook_point_in = hook;
  cfg.hook_point_out = out_hook.empty() ? hook : out_hook;
  sd::SparseAutoEncoder sae(cfg);
  const at::Tensor eye = at::eye(d, at::kFloat);
  for (auto& p : sae.parameters()) {
    if (p.name == "W_E") p.value.copy_(at::cat({eye, eye.neg()}, 1));
    if (p.name == "W_D") p.value.copy_(at::cat({eye, eye.neg()}, 0).mul(scale));
    if (p.name == "b_E") p.value.zero_();
  }
  return sae;
}

std::filesystem::path stories_dir() {
  return saes::testing::test_assets_dir() / "llama2c-stories260K";
}

saes::data::TokenBatcher stories_batcher(const lm::Tokenizer& tokenizer) {
  saes::data::TextSourceOptions text;
  text.paths = {
      (saes::testing::test_assets_dir() / "corpora/tinystories/tinystories_sample.txt").string()};
  text.max_documents = 16;
  saes::data::TokenBatcherOptions options;
  options.context_size = 48;
  const auto ids = tokenizer.special_ids();
  return saes::data::TokenBatcher(
      saes::data::TextSource(text),
      [&tokenizer](std::string_view s) { return tokenizer.encode(s); },
      saes::data::SpecialTokenIds{ids.bos, ids.eos, ids.pad}, options);
}

/// The model's mean next-token cross-entropy over positions t with mask[t] and a real token at
/// t+1, computed directly from log_softmax of logits.
double reference_ce(const at::Tensor& logits, const saes::data::TokenBatch& b) {
  const std::int64_t seq = b.tokens.size(1);
  const at::Tensor lp = at::log_softmax(logits.slice(1, 0, seq - 1).to(at::kDouble), -1);
  const at::Tensor nll = lp.gather(-1, b.tokens.slice(1, 1, seq).unsqueeze(-1)).squeeze(-1).neg();
  const at::Tensor use =
      b.mask.slice(1, 0, seq - 1).ne(0).logical_and(b.attention_mask.slice(1, 1, seq).ne(0));
  return nll.masked_select(use).mean().item<double>();
}

}  // namespace

TEST_CASE("a perfect reconstruction has mse 0, fvu 0 and explained variance 1", "[evaluation]") {
  const at::Tensor y = rows({{1, 2}, {3, -1}, {0, 5}});
  an::ReconstructionAccumulator acc(2, 3);
  acc.add(y, y, rows({{1, 0, 0}, {0, 2, 0}, {0, 0, 0}}));
  const auto m = acc.metrics(0.1);
  CHECK(m.at("mse") == 0.0);
  CHECK(m.at("fvu") == 0.0);
  CHECK(m.at("explained_variance") == 1.0);
  CHECK(m.at("explained_variance_saelens") == 1.0);
  CHECK(m.at("explained_variance_legacy") == 1.0);
  CHECK_THAT(m.at("cossim"), WithinAbs(1.0, 1e-12));
  CHECK_THAT(m.at("l2_ratio"), WithinAbs(1.0, 1e-12));
  CHECK_THAT(m.at("relative_reconstruction_bias"), WithinAbs(1.0, 1e-12));
}

TEST_CASE("reconstruction metrics equal hand computations", "[evaluation]") {
  const at::Tensor y = rows({{1, 0}, {0, 1}, {1, 1}});
  const at::Tensor y_hat = rows({{1, 0}, {0, 0}, {2, 2}});
  const at::Tensor f = rows({{1, 0, 0}, {0, 0, 0}, {2, 0, 0.5}});
  an::ReconstructionAccumulator acc(2, 3);
  acc.add(y, y_hat, f);
  const auto m = acc.metrics(0.5);
  CHECK(m.at("n_tokens") == 3.0);
  // Σ‖e‖² = 0 + 1 + 2 = 3 over 3 tokens × 2 dims.
  CHECK_THAT(m.at("mse"), WithinAbs(0.5, 1e-12));
  // ȳ = (2/3, 2/3): Σ‖y − ȳ‖² = 5/9 + 5/9 + 2/9 = 4/3, so FVU = 3 / (4/3).
  CHECK_THAT(m.at("fvu"), WithinAbs(2.25, 1e-12));
  CHECK_THAT(m.at("explained_variance"), WithinAbs(-1.25, 1e-12));
  // SAELens: E‖y‖² = 4/3, (E y²)² = (2/3)², total = 8/9, residual = 1.
  CHECK_THAT(m.at("explained_variance_saelens"), WithinAbs(1.0 - 9.0 / 8.0, 1e-12));
  CHECK_THAT(m.at("cossim"), WithinAbs(2.0 / 3.0, 1e-12));
  CHECK_THAT(m.at("l2_ratio"), WithinAbs(1.0, 1e-12));
  CHECK_THAT(m.at("l2_norm_in"), WithinAbs((2.0 + std::sqrt(2.0)) / 3.0, 1e-12));
  CHECK_THAT(m.at("l2_norm_out"), WithinAbs((1.0 + 2.0 * std::sqrt(2.0)) / 3.0, 1e-12));
  CHECK_THAT(m.at("l2_norm_error"), WithinAbs((1.0 + std::sqrt(2.0)) / 3.0, 1e-12));
  CHECK_THAT(m.at("relative_reconstruction_bias"), WithinAbs(9.0 / 5.0, 1e-12));
  CHECK_THAT(m.at("l0"), WithinAbs(1.0, 1e-12));
  CHECK_THAT(m.at("l1"), WithinAbs(3.5 / 3.0, 1e-12));
  CHECK_THAT(m.at("dead_fraction"), WithinAbs(1.0 / 3.0, 1e-12));
  CHECK_THAT(m.at("dense_fraction"), WithinAbs(1.0 / 3.0, 1e-12));
}

TEST_CASE("reconstruction sums do not depend on how tokens are batched", "[evaluation]") {
  const at::Tensor y = at::randn({10, 4}, at::kDouble);
  const at::Tensor y_hat = y.add(at::randn({10, 4}, at::kDouble).mul(0.3));
  const at::Tensor f = at::relu(at::randn({10, 6}, at::kDouble));
  an::ReconstructionAccumulator whole(4, 6), parts(4, 6);
  whole.add(y, y_hat, f);
  parts.add(y.slice(0, 0, 3), y_hat.slice(0, 0, 3), f.slice(0, 0, 3));
  parts.add(y.slice(0, 3), y_hat.slice(0, 3), f.slice(0, 3));
  const auto a = whole.metrics(0.2);
  const auto b = parts.metrics(0.2);
  for (const auto& [name, value] : a) {
    if (name == "explained_variance_legacy") continue;  // per-batch mean by definition
    INFO(name);
    CHECK_THAT(b.at(name), WithinAbs(value, 1e-9));
  }
}

TEST_CASE("limit_to_budget keeps exactly the first budget masked positions", "[evaluation]") {
  saes::data::TokenBatch b;
  b.mask = at::tensor({0, 1, 1, 1, 0, 1, 1, 1}, at::kInt).reshape({2, 4});
  const auto cut = an::limit_to_budget(b, 4);
  CHECK(at::equal(cut.mask, at::tensor({0, 1, 1, 1, 0, 1, 0, 0}, at::kInt).reshape({2, 4})));
}

TEST_CASE("clean CE is the model's own CE and an identity splice recovers all of the loss",
          "[evaluation]") {
  SAES_REQUIRE_ASSETS();
  const lm::Transformer model = lm::load_llama2c(stories_dir() / "stories260K.bin");
  const auto tokenizer = lm::load_tokenizer(stories_dir() / "tok512.model");
  auto batcher = stories_batcher(*tokenizer);
  const auto batch = batcher.next_batch(6);
  REQUIRE(batch.has_value());
  const sd::SparseAutoEncoder sae = identity_sae(model.spec().d_model, kHook);
  an::Evaluator evaluator(sae, model);
  const std::int64_t n = evaluator.add(*batch);
  CHECK(n == batch->mask.ne(0).sum().item<std::int64_t>());
  const auto m = evaluator.metrics();
  const double ce = reference_ce(model.logits(batch->tokens, &batch->attention_mask), *batch);
  CHECK_THAT(m.at("ce_loss_clean"), WithinAbs(ce, 1e-5));
  CHECK_THAT(m.at("ce_loss_spliced"), WithinAbs(ce, 1e-5));
  CHECK(m.at("ce_loss_zero_ablated") > ce + 0.1);
  CHECK(m.at("ce_loss_mean_ablated") > ce);
  CHECK_THAT(m.at("loss_recovered"), WithinAbs(1.0, 1e-5));
  CHECK_THAT(m.at("loss_recovered_mean_ablation"), WithinAbs(1.0, 1e-4));
  CHECK_THAT(m.at("kl_div_spliced"), WithinAbs(0.0, 1e-6));
  CHECK_THAT(m.at("kl_div_score"), WithinAbs(1.0, 1e-5));
  CHECK_THAT(m.at("fvu"), WithinAbs(0.0, 1e-10));
  CHECK_THAT(m.at("explained_variance"), WithinAbs(1.0, 1e-10));
}

TEST_CASE("zero ablation gives CE_zero: the model's CE with the output hook zeroed past BOS",
          "[evaluation]") {
  SAES_REQUIRE_ASSETS();
  const lm::Transformer model = lm::load_llama2c(stories_dir() / "stories260K.bin");
  const auto tokenizer = lm::load_tokenizer(stories_dir() / "tok512.model");
  auto batcher = stories_batcher(*tokenizer);
  const auto batch = batcher.next_batch(4);
  REQUIRE(batch.has_value());
  // A transcoder into kHook that always outputs zero: its splice is the zero ablation of kHook
  // (its output hook), not of its input hook.
  const sd::SparseAutoEncoder zero =
      identity_sae(model.spec().d_model, "blocks.0.hook_resid_post", 0.0, kHook);
  an::EvalOptions options;
  options.mean_ablation = false;
  an::Evaluator evaluator(zero, model, options);
  evaluator.add(*batch);
  const auto m = evaluator.metrics();
  lm::HookSet hooks;
  const at::Tensor keep = batch->mask.eq(0).unsqueeze(-1).to(at::kFloat);
  hooks.replace(kHook, [&keep](const at::Tensor& v) { return v.mul(keep); });
  hooks.capture("logits");
  const at::Tensor logits =
      model.forward(batch->tokens, &batch->attention_mask, hooks).at("logits");
  const double ce_zero = reference_ce(logits, *batch);
  CHECK_THAT(m.at("ce_loss_zero_ablated"), WithinAbs(ce_zero, 1e-5));
  CHECK_THAT(m.at("ce_loss_spliced"), WithinAbs(ce_zero, 1e-5));
  CHECK_THAT(m.at("loss_recovered"), WithinAbs(0.0, 1e-5));
  CHECK(m.count("ce_loss_mean_ablated") == 0);
  CHECK(m.at("dead_fraction") == 0.0);  // the encoder still fires; only the decoder is zero
}

TEST_CASE("evaluate_dictionary stops at exactly the token budget", "[evaluation]") {
  SAES_REQUIRE_ASSETS();
  const lm::Transformer model = lm::load_llama2c(stories_dir() / "stories260K.bin");
  const auto tokenizer = lm::load_tokenizer(stories_dir() / "tok512.model");
  auto batcher = stories_batcher(*tokenizer);
  const sd::SparseAutoEncoder sae = identity_sae(model.spec().d_model, kHook);
  const auto m = an::evaluate_dictionary(
      sae, model, [&] { return batcher.next_batch(3); }, 100, an::EvalOptions{});
  CHECK(m.at("n_tokens") == 100.0);
  CHECK(m.at("n_ce_tokens") <= 100.0);
  CHECK_THAT(m.at("loss_recovered"), WithinAbs(1.0, 1e-5));
}

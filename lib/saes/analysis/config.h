// Analysis configs (spec §1.5, §7.1, §8): FeatureAnalyzerConfig (top-activation sampling with named
// subsamples) and EvalConfig. Names and defaults follow the original.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace saes::analysis {

/// One sampling band: the top n_samples contexts whose peak activation is <= proportion * the
/// feature's max activation (spec §7.1); `top_activations` is proportion 1.0.
struct SubsampleConfig {
  double proportion = 1.0;
  std::int64_t n_samples = 10;
  std::optional<std::int64_t> max_length;

  template <class V>
  void visit_fields(V& v) {
    v.required("proportion", proportion,
               "band ceiling as a share of the feature's max activation, in (0, 1]");
    v.required("n_samples", n_samples, "contexts kept per feature");
    v("max_length", max_length, "tokens kept per context (null: whole context)");
  }
  bool operator==(const SubsampleConfig&) const = default;
};

struct FeatureAnalyzerConfig {
  std::int64_t total_analyzing_tokens = 0;
  std::optional<std::vector<std::int64_t>> ignore_token_ids;
  std::map<std::string, SubsampleConfig> subsamples = {
      {"top_activations", {1.0, 10, std::nullopt}},
      {"non_activating", {0.3, 20, 50}},
  };
  std::optional<std::int64_t> clt_layer;

  template <class V>
  void visit_fields(V& v) {
    v.required("total_analyzing_tokens", total_analyzing_tokens, "tokens to analyze");
    v("ignore_token_ids", ignore_token_ids, "token ids never counted as activations");
    v("subsamples", subsamples, "named sampling bands (name -> band)");
    v("clt_layer", clt_layer,
      "clt: analyse only this source layer's d_sae features (ids 0..d_sae-1), selected by the "
      "whole CLT's encode");
  }
  bool operator==(const FeatureAnalyzerConfig&) const = default;
};

/// Evaluation of a dictionary (docs/evaluation.md): reconstruction metrics and, with a language
/// model and a `dataset` source, the spliced-model (downstream) metrics.
struct EvalConfig {
  std::int64_t total_eval_tokens = 1'000'000;
  std::int64_t batch_size = 8;
  bool downstream = true;
  bool mean_ablation = true;
  double dense_threshold = 0.1;

  template <class V>
  void visit_fields(V& v) {
    v("total_eval_tokens", total_eval_tokens,
      "tokens to evaluate on (masked-in positions: BOS, padding and ignored ids excluded)");
    v("batch_size", batch_size, "contexts per language-model forward (dataset sources)");
    v("downstream", downstream,
      "splice the reconstruction into the model: CE clean/spliced/ablated, loss recovered, KL");
    v("mean_ablation", mean_ablation, "also run the mean-ablated model (one more forward)");
    v("dense_threshold", dense_threshold,
      "a feature firing on more than this share of tokens counts as dense");
  }
  bool operator==(const EvalConfig&) const = default;
};

}  // namespace saes::analysis

// FeatureAnalyzer (spec §7.1): streaming per-feature statistics of a dictionary's activations over
// whole contexts (count, max, mean, log-spaced histogram) and bounded per-feature heaps of sampled
// contexts per band (top activations, subsample bands, non-activating); mergeable across ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "saes/analysis/config.h"

namespace at {
class Tensor;
}  // namespace at

namespace saes::analysis {

/// Fixed log-spaced histogram bins (fixed so that histograms of different ranks add up): `bins`
/// bins spanning [10^log10_min, 10^log10_max); smaller positive values fall into bin 0, larger
/// ones into the last bin.
struct HistogramSpec {
  double log10_min = -3.0;
  double log10_max = 3.0;
  std::int64_t bins = 60;

  /// Bin edges (bins + 1 values).
  std::vector<double> edges() const;
  bool operator==(const HistogramSpec&) const = default;
};

/// One sampling band: contexts whose peak activation p satisfies p <= proportion·max (running max,
/// as the original), and p > 0 when proportion is 1 (top activations never list silent contexts).
struct Band {
  std::string name;
  double proportion = 1.0;
  std::int64_t n_samples = 10;
  std::int64_t max_length = 0;  ///< tokens kept around the peak when stored (0: whole context)
};

/// Where a sampled context came from: its index among the contexts this rank analyzed (stream
/// order, counted from 0) and the rank.
struct Provenance {
  std::int64_t context_index = 0;
  std::int32_t rank = 0;
  bool operator==(const Provenance&) const = default;
};

/// One sampled context of one feature: token ids (trailing padding cut) and the feature's
/// non-zero activations as (position, value) pairs; positions index `tokens`.
struct SampledContext {
  float score = 0;  ///< peak activation of the feature in the context
  Provenance provenance;
  std::int32_t offset = 0;  ///< position of tokens[0] in the context (max_length crops)
  std::vector<std::int32_t> tokens;
  std::vector<std::int32_t> positions;
  std::vector<float> values;
  /// Lorsa's z-pattern (spec §7.2, source_patterns.h): entry e says the token at source_k[e]
  /// contributed source_values[e] to the activation at query source_q[e] (both index `tokens`);
  /// empty for variants whose features read one token.
  std::vector<std::int32_t> source_q, source_k;
  std::vector<float> source_values;
};

/// Final statistics of one feature; samples[band] are sorted by score, descending.
struct FeatureStats {
  std::int64_t act_times = 0;
  double max_act = 0;
  double mean_act = 0;  ///< mean over the tokens where the feature fires (0 when it never does)
  std::vector<std::int64_t> histogram;
  std::vector<std::vector<SampledContext>> samples;  ///< one entry per band, in band order
};

struct AnalyzerOptions {
  std::vector<Band> bands;
  HistogramSpec histogram;
  std::vector<std::int64_t> ignore_token_ids;  ///< masked out before anything is counted
  std::int32_t rank = 0;
};

class FeatureAnalyzer {
 public:
  FeatureAnalyzer(std::int64_t d_sae, AnalyzerOptions options);

  /// feature_acts [B, T, d_sae] (any float dtype/device), tokens [B, T] int64, mask [B, T] bool
  /// (undefined: all real). Contexts get provenance indices n_contexts() .. n_contexts()+B-1.
  void add_batch(const at::Tensor& feature_acts, const at::Tensor& tokens, const at::Tensor& mask);
  /// Adds another analyzer's state (same d_sae, bands and histogram; DataError otherwise):
  /// counts and histograms add, maxima combine, heaps keep the best of both.
  void merge(const FeatureAnalyzer& other);

  std::int64_t d_sae() const { return d_sae_; }
  const AnalyzerOptions& options() const { return options_; }
  std::int64_t n_analyzed_tokens() const { return n_tokens_; }
  std::int64_t n_contexts() const { return n_contexts_; }
  /// Bytes held by the statistics and heaps (bounded by d_sae, bands and context length only).
  std::int64_t memory_bytes() const;
  /// Statistics of every feature, samples sorted.
  std::vector<FeatureStats> finish() const;

 private:
  struct Heap {
    std::vector<SampledContext> items;  ///< min-heap on (score, -context order)
  };
  void sample_band(std::size_t band, const at::Tensor& peak, const float* acts,
                   const std::int64_t* tokens, const std::vector<std::int64_t>& lengths,
                   std::int64_t seq);
  void push(Heap& heap, std::int64_t capacity, SampledContext&& item);

  std::int64_t d_sae_;
  AnalyzerOptions options_;
  std::int64_t n_tokens_ = 0;
  std::int64_t n_contexts_ = 0;
  std::vector<std::int64_t> act_times_;
  std::vector<double> max_act_;
  std::vector<double> sum_act_;
  std::vector<std::int64_t> histogram_;      ///< [d_sae × bins]
  std::vector<std::vector<Heap>> heaps_;     ///< [band][feature]
};

/// Bands of a FeatureAnalyzerConfig's subsamples, in name order.
std::vector<Band> bands_of(const FeatureAnalyzerConfig& config);

}  // namespace saes::analysis

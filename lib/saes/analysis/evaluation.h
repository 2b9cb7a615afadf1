// Evaluation of a dictionary against its language model (docs/evaluation.md, spec §8): one clean
// forward per token batch feeds the reconstruction metrics, then forwards with the dictionary's
// output hook replaced (reconstruction, zeros, mean) give the downstream metrics. Usable from the
// analyze runner and from a training checkpoint alike.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/analysis/evaluation_downstream.h"
#include "saes/analysis/evaluation_reconstruction.h"
#include "saes/data/token_batcher.h"
#include "saes/dictionaries/sparse_dictionary.h"

namespace saes::dictionaries {
class SparseDictionary;
}  // namespace saes::dictionaries

namespace saes::lm {
class Transformer;
}  // namespace saes::lm

namespace saes::analysis {

struct EvalOptions {
  bool downstream = true;        ///< run the spliced / ablated forwards
  bool mean_ablation = true;     ///< also the mean-ablated forward (needs downstream)
  double dense_threshold = 0.1;  ///< firing share above which a feature is dense
};

/// A dictionary's output for rows of tokens, in the raw (model) scale of each label hook (token-
/// and batch-wise normalization take the scale from the label rows).
/// Any variant: raw rows of every hook the dictionary reads (`raw` holds dict.hook_points()).
/// Encodes all input hooks; per label hook (in label_hooks() order) its raw rows and the
/// dictionary's output for it in the raw scale.
struct HookReconstruction {
  at::Tensor feature_acts;          ///< [n, n_features] (a CLT: layer-major)
  std::vector<at::Tensor> labels;   ///< [n, d_model] per label hook
  std::vector<at::Tensor> outputs;  ///< [n, d_model] per label hook
  /// labels / outputs side by side, [n, label hooks · d_model] (what the metrics read).
  at::Tensor label_rows() const;
  at::Tensor output_rows() const;
};
/// A sequence dictionary (reads_sequences(), Lorsa) takes `raw` as whole [batch, context, d]
/// contexts and returns the rows `kept` selects of the flattened tokens (all when undefined).
HookReconstruction reconstruct_hooks(const dictionaries::SparseDictionary& dict,
                                     const dictionaries::HookActs& raw,
                                     const at::Tensor& kept = {});

/// Accumulates reconstruction and downstream metrics over token batches. A multi-hook dictionary
/// (a CLT) is encoded from all its input hooks of the clean forward; the reconstruction metrics
/// pool its label hooks (the label is their concatenation, L0 counts every layer's features) and
/// the spliced forward replaces all its label hooks at once.
class Evaluator {
 public:
  /// dict and model must outlive the evaluator; the dictionary's hooks must be hooks of the model
  /// (checked by the first forward, ConfigError listing the valid ones).
  Evaluator(const dictionaries::SparseDictionary& dict, const lm::Transformer& model,
            EvalOptions options = {});

  /// Evaluates one batch ([batch, seq] tokens, mask, attention_mask as TokenBatcher makes them);
  /// only positions with mask != 0 are reconstructed, spliced and scored. Returns their number.
  std::int64_t add(const data::TokenBatch& batch);

  /// Sums the accumulators over all ranks (every rank calls it once, after its last add).
  void all_reduce(distributed::Communicator& comm);

  /// Reconstruction metrics plus, with downstream, the downstream ones (docs/evaluation.md).
  std::map<std::string, double> metrics() const;

  /// Tokens evaluated so far (this rank, or all ranks after all_reduce).
  std::int64_t n_tokens() const { return reconstruction_.n_tokens(); }

 private:
  /// Logits with each hook of `hook_values` replaced by its value.
  at::Tensor logits_with(const at::Tensor& tokens, const at::Tensor& attention_mask,
                         const std::map<std::string, at::Tensor>& hook_values) const;

  const dictionaries::SparseDictionary& dict_;
  const lm::Transformer& model_;
  EvalOptions options_;
  ReconstructionAccumulator reconstruction_;
  DownstreamAccumulator downstream_;
};

/// Keeps only the first `budget` positions with mask != 0 (row-major) in the mask; the rest of
/// the batch is unchanged.
data::TokenBatch limit_to_budget(const data::TokenBatch& batch, std::int64_t budget);

/// Pulls batches from `next_batch` (nullopt: no more) until exactly `total_tokens` tokens are
/// evaluated on this rank (fewer when the text runs out), then sums over `comm`'s ranks when
/// given and returns the metrics.
std::map<std::string, double> evaluate_dictionary(
    const dictionaries::SparseDictionary& dict, const lm::Transformer& model,
    const std::function<std::optional<data::TokenBatch>()>& next_batch, std::int64_t total_tokens,
    const EvalOptions& options, distributed::Communicator* comm = nullptr);

}  // namespace saes::analysis

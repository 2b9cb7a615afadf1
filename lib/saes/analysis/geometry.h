// Decoder-side views of a dictionary (issue #6): each decoder row's nearest other row by cosine
// similarity (duplicate/dense features) and the logit lens W_D[i]·W_Uᵀ (top/bottom tokens).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace at {
class Tensor;
}  // namespace at

namespace saes::analysis {

/// Per decoder row: the largest cosine similarity to any other row and that row's index
/// (-1 and 0 similarity when d_sae is 1 or the row is zero).
struct NearestRow {
  std::vector<float> cosine;
  std::vector<std::int64_t> index;
};

/// W_D: [d_sae, d_model]. Works on `chunk_rows` rows at a time, so the memory is
/// O(chunk_rows × d_sae) rather than O(d_sae²).
NearestRow max_decoder_cosine(const at::Tensor& W_D, std::int64_t chunk_rows = 1024);

/// One feature's logit lens: the `k` largest and smallest entries of W_D[i]·W_Uᵀ.
struct LogitLens {
  std::vector<std::int64_t> top_tokens;
  std::vector<float> top_values;
  std::vector<std::int64_t> bottom_tokens;
  std::vector<float> bottom_values;
};

/// Residual-stream rows [n, d_model] → logits [n, d_vocab] (e.g. lm::Transformer::
/// logits_of_residual: ln_final, then the unembedding).
using ToLogits = std::function<at::Tensor(const at::Tensor&)>;

/// The top and bottom k logits of each feature, feature i's logits being
/// Σ_t to_logits(terms[t][i]) (terms: one or more [d_sae, d_model] decoder tensors, e.g.
/// SparseDictionary::dla_terms). Chunked over features like max_decoder_cosine.
std::vector<LogitLens> logit_lens(const std::vector<at::Tensor>& terms, const ToLogits& to_logits,
                                  std::int64_t k, std::int64_t chunk_rows = 1024);

}  // namespace saes::analysis

// Decoder-side views of a dictionary (issue #6): each decoder row's nearest other row by cosine
// similarity (duplicate/dense features) and the logit lens W_D[i]·W_Uᵀ (top/bottom tokens).
#pragma once

#include <cstdint>
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

/// W_D [d_sae, d_model], W_U [d_vocab, d_model] (the model's unembedding in nn.Linear layout).
/// Chunked over features like max_decoder_cosine.
std::vector<LogitLens> logit_lens(const at::Tensor& W_D, const at::Tensor& W_U, std::int64_t k,
                                  std::int64_t chunk_rows = 1024);

}  // namespace saes::analysis

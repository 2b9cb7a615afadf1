// Lorsa as a linear read / write of hook values for circuit tracing (issue #19,
// docs/circuits.md "Lorsa"): each OV head reads one direction of its input (W_V,i), mixed over
// the positions by its QK head's pattern (frozen at the prompt's value), and writes one direction
// (W_O,i); the QK side is a bilinear form of the inputs at the query and key positions.
#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/floor_divide.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "saes/core/error.h"
#include "saes/dictionaries/lorsa.h"
#include "saes/lm/transformer_rotary.h"

namespace saes::dictionaries {

at::Tensor LowRankSparseAttention::encoder_vectors(std::int64_t /*layer*/,
                                                   const at::Tensor& indices) const {
  return W_V_.index_select(0, indices.to(W_V_.device()));
}

at::Tensor LowRankSparseAttention::decoder_vectors(std::int64_t /*layer*/,
                                                   std::int64_t /*target*/,
                                                   const at::Tensor& indices) const {
  return W_O_.index_select(0, indices.to(W_O_.device()));
}

at::Tensor LowRankSparseAttention::token_mixing(const at::Tensor& x_normalized,
                                                std::int64_t position,
                                                const at::Tensor& indices) const {
  SAES_CHECK(x_normalized.dim() == 3 && x_normalized.size(0) == 1 && position >= 0 &&
                 position < x_normalized.size(1),
             DataError, "lorsa token_mixing: position {} outside one context [{}]", position,
             fmt::join(x_normalized.sizes(), ", "));
  const at::Tensor A = attention_pattern(x_normalized)[0];  // [H, T(q), T(k)]
  const at::Tensor heads = at::floor_divide(indices.to(A.device()).to(at::kLong), ov_group_size());
  return A.select(1, position).index_select(0, heads).to(at::kFloat).cpu();
}

SparseDictionary::ScoreSide LowRankSparseAttention::attention_score_side(std::int64_t index,
                                                                         std::int64_t position,
                                                                         bool query) const {
  SAES_CHECK(!ln_q_.defined(), UnsupportedError,
             "QK tracing: the score of a Lorsa with QK-norm (sae.use_post_qk_ln) is not a "
             "bilinear form of its inputs");
  SAES_CHECK(index >= 0 && index < local_d_sae() && position >= 0 && position < cfg_.n_ctx,
             DataError, "lorsa attention_score_side: feature {} / position {} out of range",
             index, position);
  const at::NoGradGuard no_grad;
  const std::int64_t h = index / ov_group_size(), d = cfg_.d_model, D = cfg_.d_qk_head;
  const at::Tensor W = (query ? W_Q_ : W_K_)[h];  // [d_model, D]
  const at::Tensor b = (query ? b_Q_ : b_K_)[h];  // [D]
  // the rows of W and b as d_model + 1 "tokens" at `position`, rotated as a query/key there
  at::Tensor m = at::cat({W, b.unsqueeze(0)}, 0).view({d + 1, 1, 1, D});
  if (rotary_cos_.defined()) {
    const std::int64_t half = cfg_.rotary_dim / 2;
    const at::Tensor cos = rotary_cos_[position].view({1, 1, 1, half}).to(m.dtype());
    const at::Tensor sin = rotary_sin_[position].view({1, 1, 1, half}).to(m.dtype());
    m = lm::apply_rotary(m, cos, sin, cfg_.rotary_dim,
                         cfg_.rotary_adjacent_pairs ? lm::RopeStyle::kInterleaved
                                                    : lm::RopeStyle::kHalfSplit);
  }
  m = m.view({d + 1, D}) / std::sqrt(attn_scale());
  return {m.narrow(0, 0, d).t().contiguous(), m[d].clone()};
}

}  // namespace saes::dictionaries

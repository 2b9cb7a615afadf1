// What the model-informed initializations of spec §4 hand a dictionary: one attention layer's
// heads (initialize_lorsa_with_mhsa, Lorsa's active-subspace init) or one MLP as a function
// (initialize_tc_with_mlp). training/model_init.cpp reads them off an lm::Transformer; the
// variants decide what to do with them (SparseDictionary::init_with_attention / init_with_mlp /
// init_decoder_in_active_subspace).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <ATen/core/Tensor.h>

namespace saes::dictionaries {

/// One attention layer as a function of the layer's `ln1.hook_normalized` value x̂ (the norm's
/// weight and bias folded in: q_h = x̂·W_Q[h] + b_Q[h] is the model's query of head h before
/// RoPE). float32 on the CPU.
struct AttentionLayer {
  at::Tensor W_Q, W_K, W_V;  ///< [n_heads, d_model, d_head]; K and V repeated per query head (GQA)
  at::Tensor b_Q, b_K, b_V;  ///< [n_heads, d_head] (zeros when the model has no bias)
  at::Tensor W_O;            ///< [n_heads, d_head, d_model]
  bool rotary = false;       ///< RoPE on the first rotary_dim dims of q and k
  std::int64_t rotary_dim = 0;
  bool rotary_adjacent_pairs = false;  ///< pairs (2j, 2j+1); false: (j, j + rotary_dim/2)
  double rotary_base = 10000.0;
  bool ntk_by_parts = false;  ///< Llama-3 scaling of the frequencies, with the four values below
  double ntk_factor = 1.0, ntk_low_freq_factor = 1.0, ntk_high_freq_factor = 1.0;
  std::int64_t ntk_old_context_len = 0;
  /// QK-norm (Qwen3, Gemma 3): the RMSNorm weight over each head's q / k, [n_heads, d_head]
  /// (k repeated per query head), applied after the projection and before RoPE; undefined when
  /// the model has none.
  at::Tensor q_norm, k_norm;
  double qk_norm_eps = 0.0;
  double attn_scale = 1.0;  ///< scores are divided by it (√d_head; Gemma √query_pre_attn_scalar)
  std::string source;       ///< e.g. "model stories260K blocks.2.attn", for messages

  std::int64_t n_heads() const { return W_Q.size(0); }
  std::int64_t d_head() const { return W_Q.size(2); }
};

/// A model's MLP of one layer as a function of its `ln2.hook_normalized` rows [n, d_model]
/// (before the norm's weight) → `hook_mlp_out` rows [n, d_model]; float32 on the CPU.
using MlpFunction = std::function<at::Tensor(const at::Tensor&)>;

}  // namespace saes::dictionaries

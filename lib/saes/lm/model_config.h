// TransformerSpec: the architecture-neutral description of a decoder-only transformer that the
// engine (transformer.h) runs. Loaders (llama2c_loader, hf_*) fill it from their file formats.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace saes::lm {

enum class Architecture { kGpt2, kGptNeoX, kLlama, kQwen2, kQwen3, kMistral, kGemma2, kGemma3, kLlama2c };
enum class NormType { kLayerNorm, kRmsNorm };
/// kGeluNew = tanh approximation (GPT-2 "gelu_new"); kGelu = exact erf GELU; kSiluGated = SwiGLU
/// (act(gate) * up); kGeluGated = GeGLU with exact GELU; kGeluNewGated = GeGLU with the tanh
/// approximation (Gemma's gelu_pytorch_tanh).
enum class Activation { kGeluNew, kGelu, kRelu, kSiluGated, kGeluGated, kGeluNewGated };
enum class Positional { kLearned, kRotary };
/// kInterleaved rotates adjacent pairs (2i, 2i+1) as llama2.c does; kHalfSplit rotates the two
/// halves of the rotary slice (x_i, x_{i+R/2}) as GPT-NeoX and Hugging Face Llama do.
enum class RopeStyle { kInterleaved, kHalfSplit };

/// Llama-3 "rope_type: llama3" frequency scaling (HF _compute_llama3_parameters).
struct Llama3RopeScaling {
  bool enabled = false;
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

/// RoPE frequencies of one kind of layer (global, or Gemma's local sliding-window layers).
struct RopeParameters {
  double theta = 10000.0;
  Llama3RopeScaling llama3_scaling;
  double linear_factor = 1.0;  ///< rope_type linear: every inverse frequency divided by it
};

struct TransformerSpec {
  Architecture architecture = Architecture::kLlama;
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  ///< == n_heads without grouped-query attention
  int64_t d_head = 0;
  int64_t d_mlp = 0;
  int64_t d_vocab = 0;
  int64_t n_ctx = 0;  ///< maximum sequence length (learned positions: rows of W_pos)
  NormType norm = NormType::kRmsNorm;
  double norm_eps = 1e-5;
  Activation act = Activation::kSiluGated;
  Positional positional = Positional::kRotary;
  int64_t rotary_dim = 0;  ///< rotated dims at the start of each head (NeoX: rotary_pct * d_head)
  double rope_theta = 10000.0;
  RopeStyle rope_style = RopeStyle::kHalfSplit;
  Llama3RopeScaling llama3_scaling;
  bool parallel_attn_mlp = false;  ///< NeoX use_parallel_residual: resid_post = pre + attn + mlp
  bool qkv_bias = false;
  bool attn_out_bias = false;
  bool mlp_bias = false;
  bool tied_embeddings = false;  ///< unembedding W_U is the token embedding W_E
  bool unembed_bias = false;
  /// Gemma: the token embedding is multiplied by √d_model (rounded to the model dtype, as HF does)
  /// before hook_embed; the tied unembedding uses the unscaled embed.W_E.
  double embed_scale = 1.0;
  /// Gemma's RMSNorm multiplies by (1 + w): the engine's norm weights (ln*.w, q_norm.w, k_norm.w)
  /// hold offset + w, in float32 whatever the model dtype (HF computes 1 + w in float32).
  double norm_weight_offset = 0.0;
  bool post_norms = false;  ///< Gemma 2/3 "sandwich": ln1_post after attention, ln2_post after MLP
  bool qk_norm = false;     ///< Qwen3, Gemma 3: RMSNorm over each head's q and k before RoPE
  /// Attention scores are q·k / √attn_scale_base; 0 means d_head (Gemma: query_pre_attn_scalar).
  double attn_scale_base = 0.0;
  double attn_softcap = 0.0;   ///< > 0: scores ← cap·tanh(scores / cap) before the mask (Gemma 2)
  double final_softcap = 0.0;  ///< > 0: logits ← cap·tanh(logits / cap) (Gemma 2)
  /// Sliding-window attention: on layers with sliding_layers[l], a query at index i sees keys at
  /// indices j with i - window < j <= i (HF masking_utils). 0: no layer slides.
  int64_t sliding_window = 0;
  std::vector<bool> sliding_layers;  ///< n_layers entries, or empty (no layer slides)
  /// RoPE of sliding layers when it differs from the global one (Gemma 3's local base frequency);
  /// unset: every layer uses rope_theta / llama3_scaling / rope_linear_factor.
  bool local_rope = false;
  RopeParameters rope_local;
  double rope_linear_factor = 1.0;  ///< rope_type linear on the global layers
  int64_t bos_token_id = -1;  ///< -1 when the model has none
  int64_t eos_token_id = -1;
};

/// "gpt2", "gpt_neox", "llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3", "llama2c".
std::string_view architecture_name(Architecture architecture);

bool is_gated(Activation act);

/// Whether layer `layer` attends within spec.sliding_window only.
bool is_sliding_layer(const TransformerSpec& spec, int64_t layer);

/// The RoPE parameters of layer `layer` (the local ones on sliding layers when spec.local_rope).
RopeParameters rope_of_layer(const TransformerSpec& spec, int64_t layer);
/// rope_theta, llama3_scaling and rope_linear_factor as one RopeParameters.
RopeParameters global_rope(const TransformerSpec& spec);

/// Checks internal consistency (positive sizes, d_head * n_heads == projections, n_heads %
/// n_kv_heads, even rotary_dim <= d_head, ...). Throws ConfigError naming `where` and the field.
void validate_spec(const TransformerSpec& spec, const std::string& where);

}  // namespace saes::lm

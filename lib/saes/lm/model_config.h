// TransformerSpec: the architecture-neutral description of a decoder-only transformer that the
// engine (transformer.h) runs. Loaders (llama2c_loader, hf_*) fill it from their file formats.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace saes::lm {

enum class Architecture { kGpt2, kGptNeoX, kLlama, kQwen2, kLlama2c };
enum class NormType { kLayerNorm, kRmsNorm };
/// kGeluNew = tanh approximation (GPT-2 "gelu_new"); kGelu = exact erf GELU; kSiluGated = SwiGLU
/// (act(gate) * up); kGeluGated = GeGLU.
enum class Activation { kGeluNew, kGelu, kRelu, kSiluGated, kGeluGated };
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
  int64_t bos_token_id = -1;  ///< -1 when the model has none
  int64_t eos_token_id = -1;
};

/// "gpt2", "gpt_neox", "llama", "qwen2", "llama2c".
std::string_view architecture_name(Architecture architecture);

bool is_gated(Activation act);

/// Checks internal consistency (positive sizes, d_head * n_heads == projections, n_heads %
/// n_kv_heads, even rotary_dim <= d_head, ...). Throws ConfigError naming `where` and the field.
void validate_spec(const TransformerSpec& spec, const std::string& where);

}  // namespace saes::lm

// Hugging Face Gemma 2 / Gemma 3 tensor names -> engine names. Beware the names: Gemma's
// `post_attention_layernorm` is the sandwich norm after attention (ln1_post), not the MLP's input
// norm as in Llama; that one is `pre_feedforward_layernorm` (ln2).
#include <fmt/format.h>

#include "saes/lm/hf_model.h"

namespace saes::lm {

MapWeightSource map_hf_gemma_weights(const TransformerSpec& spec, WeightSource& hf) {
  const int64_t d = spec.d_model;
  const int64_t d_q = spec.n_heads * spec.d_head;
  const int64_t d_kv = spec.n_kv_heads * spec.d_head;
  std::string root = "model.";  // Gemma*ForCausalLM; the multimodal Gemma 3 nests the text model
  std::string head = "lm_head.weight";
  for (const char* candidate : {"language_model.model.", "model.language_model."}) {
    if (!hf.contains(root + "embed_tokens.weight") &&
        hf.contains(std::string(candidate) + "embed_tokens.weight")) {
      root = candidate;
      if (root == "language_model.model.") head = "language_model.lm_head.weight";
    }
  }
  MapWeightSource out({}, hf.describe());
  const auto copy = [&](const std::string& from, const std::string& to,
                        const std::vector<int64_t>& shape) {
    out.set(to, get_checked(hf, from, shape));
  };
  copy(root + "embed_tokens.weight", "embed.W_E", {spec.d_vocab, d});
  for (int64_t l = 0; l < spec.n_layers; ++l) {
    const std::string src = fmt::format("{}layers.{}.", root, l);
    const std::string dst = fmt::format("blocks.{}.", l);
    copy(src + "input_layernorm.weight", dst + "ln1.w", {d});
    copy(src + "self_attn.q_proj.weight", dst + "attn.W_Q", {d_q, d});
    copy(src + "self_attn.k_proj.weight", dst + "attn.W_K", {d_kv, d});
    copy(src + "self_attn.v_proj.weight", dst + "attn.W_V", {d_kv, d});
    if (spec.qkv_bias) {
      copy(src + "self_attn.q_proj.bias", dst + "attn.b_Q", {d_q});
      copy(src + "self_attn.k_proj.bias", dst + "attn.b_K", {d_kv});
      copy(src + "self_attn.v_proj.bias", dst + "attn.b_V", {d_kv});
    }
    if (spec.qk_norm) {
      copy(src + "self_attn.q_norm.weight", dst + "attn.q_norm.w", {spec.d_head});
      copy(src + "self_attn.k_norm.weight", dst + "attn.k_norm.w", {spec.d_head});
    }
    copy(src + "self_attn.o_proj.weight", dst + "attn.W_O", {d, d_q});
    if (spec.attn_out_bias) copy(src + "self_attn.o_proj.bias", dst + "attn.b_O", {d});
    copy(src + "post_attention_layernorm.weight", dst + "ln1_post.w", {d});
    copy(src + "pre_feedforward_layernorm.weight", dst + "ln2.w", {d});
    copy(src + "mlp.gate_proj.weight", dst + "mlp.W_gate", {spec.d_mlp, d});
    copy(src + "mlp.up_proj.weight", dst + "mlp.W_in", {spec.d_mlp, d});
    copy(src + "mlp.down_proj.weight", dst + "mlp.W_out", {d, spec.d_mlp});
    copy(src + "post_feedforward_layernorm.weight", dst + "ln2_post.w", {d});
  }
  copy(root + "norm.weight", "ln_final.w", {d});
  if (!spec.tied_embeddings) copy(head, "unembed.W_U", {spec.d_vocab, d});
  return out;
}

}  // namespace saes::lm

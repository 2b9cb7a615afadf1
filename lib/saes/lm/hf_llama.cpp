// Hugging Face Llama / Qwen2 / Qwen3 / Mistral tensor names -> engine names. q/k rows are already in
// HF's half-split rotary layout, which the spec (rope_style kHalfSplit) expects; Qwen2 adds q/k/v
// biases, Qwen3 per-head q_norm / k_norm weights.
#include <fmt/format.h>

#include "saes/lm/hf_model.h"

namespace saes::lm {

void map_hf_llama_attention_and_mlp(const TransformerSpec& spec, WeightSource& hf,
                                    MapWeightSource& out, const std::string& src,
                                    const std::string& dst) {
  const int64_t d = spec.d_model;
  const int64_t d_q = spec.n_heads * spec.d_head;
  const int64_t d_kv = spec.n_kv_heads * spec.d_head;
  const auto copy = [&](const std::string& from, const std::string& to,
                        const std::vector<int64_t>& shape) {
    out.set(to, get_checked(hf, from, shape));
  };
  const char* projections[][3] = {
      {"q_proj", "W_Q", "b_Q"}, {"k_proj", "W_K", "b_K"}, {"v_proj", "W_V", "b_V"}};
  for (const auto& [proj, w, b] : projections) {
    const int64_t rows = proj[0] == 'q' ? d_q : d_kv;
    copy(src + "self_attn." + proj + ".weight", dst + "attn." + w, {rows, d});
    if (spec.qkv_bias) copy(src + "self_attn." + proj + ".bias", dst + "attn." + b, {rows});
  }
  if (spec.qk_norm) {
    copy(src + "self_attn.q_norm.weight", dst + "attn.q_norm.w", {spec.d_head});
    copy(src + "self_attn.k_norm.weight", dst + "attn.k_norm.w", {spec.d_head});
  }
  copy(src + "self_attn.o_proj.weight", dst + "attn.W_O", {d, d_q});
  if (spec.attn_out_bias) copy(src + "self_attn.o_proj.bias", dst + "attn.b_O", {d});
  copy(src + "mlp.gate_proj.weight", dst + "mlp.W_gate", {spec.d_mlp, d});
  copy(src + "mlp.up_proj.weight", dst + "mlp.W_in", {spec.d_mlp, d});
  copy(src + "mlp.down_proj.weight", dst + "mlp.W_out", {d, spec.d_mlp});
  if (spec.mlp_bias) {
    copy(src + "mlp.gate_proj.bias", dst + "mlp.b_gate", {spec.d_mlp});
    copy(src + "mlp.up_proj.bias", dst + "mlp.b_in", {spec.d_mlp});
    copy(src + "mlp.down_proj.bias", dst + "mlp.b_out", {d});
  }
}

MapWeightSource map_hf_llama_weights(const TransformerSpec& spec, WeightSource& hf) {
  const int64_t d = spec.d_model;
  MapWeightSource out({}, hf.describe());
  const auto copy = [&](const std::string& from, const std::string& to,
                        const std::vector<int64_t>& shape) {
    out.set(to, get_checked(hf, from, shape));
  };
  copy("model.embed_tokens.weight", "embed.W_E", {spec.d_vocab, d});
  for (int64_t l = 0; l < spec.n_layers; ++l) {
    const std::string src = fmt::format("model.layers.{}.", l);
    const std::string dst = fmt::format("blocks.{}.", l);
    copy(src + "input_layernorm.weight", dst + "ln1.w", {d});
    copy(src + "post_attention_layernorm.weight", dst + "ln2.w", {d});
    map_hf_llama_attention_and_mlp(spec, hf, out, src, dst);
  }
  copy("model.norm.weight", "ln_final.w", {d});
  if (!spec.tied_embeddings) copy("lm_head.weight", "unembed.W_U", {spec.d_vocab, d});
  return out;
}

}  // namespace saes::lm

// Hugging Face GPT-NeoX / Pythia tensor names -> engine names. attention.query_key_value rows are
// grouped per head as (q, k, v): viewed as [n_heads, 3, d_head, d_model] and split.
#include <fmt/format.h>

#include "saes/lm/hf_model.h"

namespace saes::lm {

MapWeightSource map_hf_gpt_neox_weights(const TransformerSpec& spec, WeightSource& hf) {
  const int64_t d = spec.d_model;
  const int64_t h = spec.n_heads;
  const int64_t d_head = spec.d_head;
  const int64_t d_qkv = h * d_head;
  MapWeightSource out({}, hf.describe());
  const auto get = [&](const std::string& name, const std::vector<int64_t>& shape) {
    return get_checked(hf, name, shape);
  };
  const auto norm = [&](const std::string& from, const std::string& to) {
    out.set(to + ".w", get(from + ".weight", {d}));
    out.set(to + ".b", get(from + ".bias", {d}));
  };
  out.set("embed.W_E", get("gpt_neox.embed_in.weight", {spec.d_vocab, d}));
  for (int64_t l = 0; l < spec.n_layers; ++l) {
    const std::string src = fmt::format("gpt_neox.layers.{}.", l);
    const std::string dst = fmt::format("blocks.{}.", l);
    norm(src + "input_layernorm", dst + "ln1");
    const at::Tensor qkv =
        get(src + "attention.query_key_value.weight", {3 * d_qkv, d}).view({h, 3, d_head, d});
    const char* names[][2] = {{"W_Q", "b_Q"}, {"W_K", "b_K"}, {"W_V", "b_V"}};
    for (int64_t i = 0; i < 3; ++i) {
      out.set(dst + "attn." + names[i][0], qkv.select(1, i).reshape({d_qkv, d}).contiguous());
    }
    if (spec.qkv_bias) {
      const at::Tensor bias =
          get(src + "attention.query_key_value.bias", {3 * d_qkv}).view({h, 3, d_head});
      for (int64_t i = 0; i < 3; ++i) {
        out.set(dst + "attn." + names[i][1], bias.select(1, i).reshape({d_qkv}).contiguous());
      }
    }
    out.set(dst + "attn.W_O", get(src + "attention.dense.weight", {d, d_qkv}));
    if (spec.attn_out_bias) out.set(dst + "attn.b_O", get(src + "attention.dense.bias", {d}));
    norm(src + "post_attention_layernorm", dst + "ln2");
    out.set(dst + "mlp.W_in", get(src + "mlp.dense_h_to_4h.weight", {spec.d_mlp, d}));
    out.set(dst + "mlp.b_in", get(src + "mlp.dense_h_to_4h.bias", {spec.d_mlp}));
    out.set(dst + "mlp.W_out", get(src + "mlp.dense_4h_to_h.weight", {d, spec.d_mlp}));
    out.set(dst + "mlp.b_out", get(src + "mlp.dense_4h_to_h.bias", {d}));
  }
  norm("gpt_neox.final_layer_norm", "ln_final");
  if (!spec.tied_embeddings) out.set("unembed.W_U", get("embed_out.weight", {spec.d_vocab, d}));
  return out;
}

}  // namespace saes::lm

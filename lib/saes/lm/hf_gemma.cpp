// Hugging Face Gemma 2 / Gemma 3 tensor names -> engine names. Beware the names: Gemma's
// `post_attention_layernorm` is the sandwich norm after attention (ln1_post), not the MLP's input
// norm as in Llama; that one is `pre_feedforward_layernorm` (ln2).
#include <fmt/format.h>

#include "saes/lm/hf_model.h"

namespace saes::lm {

MapWeightSource map_hf_gemma_weights(const TransformerSpec& spec, WeightSource& hf) {
  const int64_t d = spec.d_model;
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
    copy(src + "post_attention_layernorm.weight", dst + "ln1_post.w", {d});
    copy(src + "pre_feedforward_layernorm.weight", dst + "ln2.w", {d});
    copy(src + "post_feedforward_layernorm.weight", dst + "ln2_post.w", {d});
    map_hf_llama_attention_and_mlp(spec, hf, out, src, dst);  // Llama's projection names
  }
  copy(root + "norm.weight", "ln_final.w", {d});
  if (!spec.tied_embeddings) copy(head, "unembed.W_U", {spec.d_vocab, d});
  return out;
}

}  // namespace saes::lm

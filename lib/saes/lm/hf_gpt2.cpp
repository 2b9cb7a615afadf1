// Hugging Face GPT-2 tensor names -> engine names. Conv1D stores weights [in, out]: transposed to
// the engine's [out, in]; c_attn [d, 3d] splits into q, k, v. Old checkpoints lack the
// `transformer.` prefix; their attn.bias / attn.masked_bias buffers are simply not read.
#include <fmt/format.h>

#include "saes/lm/hf_model.h"

namespace saes::lm {

MapWeightSource map_hf_gpt2_weights(const TransformerSpec& spec, WeightSource& hf) {
  const int64_t d = spec.d_model;
  const std::string root = hf.contains("transformer.wte.weight") ? "transformer." : "";
  MapWeightSource out({}, hf.describe());
  const auto get = [&](const std::string& name, const std::vector<int64_t>& shape) {
    return get_checked(hf, root + name, shape);
  };
  const auto norm = [&](const std::string& from, const std::string& to) {
    out.set(to + ".w", get(from + ".weight", {d}));
    out.set(to + ".b", get(from + ".bias", {d}));
  };
  out.set("embed.W_E", get("wte.weight", {spec.d_vocab, d}));
  out.set("pos_embed.W_pos", get("wpe.weight", {spec.n_ctx, d}));
  for (int64_t l = 0; l < spec.n_layers; ++l) {
    const std::string src = fmt::format("h.{}.", l);
    const std::string dst = fmt::format("blocks.{}.", l);
    norm(src + "ln_1", dst + "ln1");
    const at::Tensor qkv = get(src + "attn.c_attn.weight", {d, 3 * d}).t();
    const at::Tensor qkv_bias = get(src + "attn.c_attn.bias", {3 * d});
    const char* names[][2] = {{"W_Q", "b_Q"}, {"W_K", "b_K"}, {"W_V", "b_V"}};
    for (int64_t i = 0; i < 3; ++i) {
      out.set(dst + "attn." + names[i][0], qkv.narrow(0, i * d, d).contiguous());
      out.set(dst + "attn." + names[i][1], qkv_bias.narrow(0, i * d, d).contiguous());
    }
    out.set(dst + "attn.W_O", get(src + "attn.c_proj.weight", {d, d}).t().contiguous());
    out.set(dst + "attn.b_O", get(src + "attn.c_proj.bias", {d}));
    norm(src + "ln_2", dst + "ln2");
    out.set(dst + "mlp.W_in", get(src + "mlp.c_fc.weight", {d, spec.d_mlp}).t().contiguous());
    out.set(dst + "mlp.b_in", get(src + "mlp.c_fc.bias", {spec.d_mlp}));
    out.set(dst + "mlp.W_out", get(src + "mlp.c_proj.weight", {spec.d_mlp, d}).t().contiguous());
    out.set(dst + "mlp.b_out", get(src + "mlp.c_proj.bias", {d}));
  }
  norm("ln_f", "ln_final");
  return out;
}

}  // namespace saes::lm

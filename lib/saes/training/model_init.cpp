// Model-informed initialization (spec §4 steps 5, 7, 8): the model's attention heads and MLP read
// off an lm::Transformer in the spaces the dictionaries' hooks hold, and the three steps in order.
#include "saes/training/model_init.h"

#include <cmath>
#include <optional>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>

#include "saes/core/error.h"
#include "saes/core/logging.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/lm/transformer.h"

namespace saes::training {
namespace {

at::Tensor cpu_float(const at::Tensor& t) { return t.to(at::kCPU).to(at::kFloat); }

void check_layer(const lm::Transformer& model, std::int64_t layer, const std::string& name) {
  SAES_CHECK(layer >= 0 && layer < model.spec().n_layers, ConfigError,
             "initializer.model_layer: {} is not a layer of {} (it has {}: 0..{})", layer, name,
             model.spec().n_layers, model.spec().n_layers - 1);
}

/// The hooks `key`'s maths holds for: blocks.L.<in> → blocks.L.<out>.
void expect_hooks(const dictionaries::SparseDictionaryConfig& sae, std::int64_t layer,
                  const char* in, const char* out, const char* key) {
  const std::string want_in = fmt::format("blocks.{}.{}", layer, in);
  const std::string want_out = fmt::format("blocks.{}.{}", layer, out);
  SAES_CHECK(sae.hook_point_in == want_in && sae.hook_point_out == want_out, ConfigError,
             "initializer.{}: with model_layer {} the dictionary must read {} and reconstruct {} "
             "(got sae.hook_point_in \"{}\", sae.hook_point_out \"{}\")",
             key, layer, want_in, want_out, sae.hook_point_in, sae.hook_point_out);
}

}  // namespace

bool needs_model(const InitializerConfig& cfg, const dictionaries::SparseDictionaryConfig& sae) {
  return cfg.initialize_lorsa_with_mhsa.value_or(false) ||
         cfg.initialize_tc_with_mlp.value_or(false) ||
         (cfg.initialize_W_D_with_active_subspace &&
          sae.sae_type == dictionaries::SaeType::kLorsa);
}

dictionaries::AttentionLayer attention_layer(const lm::Transformer& model, std::int64_t layer,
                                             const std::string& name) {
  check_layer(model, layer, name);
  const lm::TransformerSpec& spec = model.spec();
  const std::int64_t H = spec.n_heads, D = spec.d_head, d = spec.d_model;
  const std::string p = fmt::format("blocks.{}.", layer);
  const auto has = [&](const std::string& w) { return model.weights().count(w) > 0; };
  const at::Tensor w_ln = cpu_float(model.weight(p + "ln1.w"));
  const at::Tensor b_ln = has(p + "ln1.b") ? cpu_float(model.weight(p + "ln1.b"))
                                           : at::zeros({d}, at::TensorOptions().dtype(at::kFloat));
  // head h of x' = x̂ ⊙ w + b: x'·W_hᵀ + b_h = x̂·(diag(w) W_hᵀ) + (b·W_hᵀ + b_h)
  const auto heads = [&](const char* w, const char* b, std::int64_t n, at::Tensor& W_out,
                         at::Tensor& b_out) {
    const at::Tensor W = cpu_float(model.weight(p + "attn." + w));  // [n·D, d]
    at::Tensor bias = at::matmul(W, b_ln);
    if (has(p + "attn." + b)) bias = bias + cpu_float(model.weight(p + "attn." + b));
    W_out = at::repeat_interleave((W * w_ln).view({n, D, d}).transpose(1, 2).contiguous(), H / n,
                                  0);
    b_out = at::repeat_interleave(bias.view({n, D}), H / n, 0);
  };
  dictionaries::AttentionLayer a;
  const at::NoGradGuard no_grad;
  heads("W_Q", "b_Q", H, a.W_Q, a.b_Q);
  heads("W_K", "b_K", spec.n_kv_heads, a.W_K, a.b_K);
  heads("W_V", "b_V", spec.n_kv_heads, a.W_V, a.b_V);
  a.W_O = cpu_float(model.weight(p + "attn.W_O")).view({d, H, D}).permute({1, 2, 0}).contiguous();
  if (spec.qk_norm) {
    a.q_norm = cpu_float(model.weight(p + "attn.q_norm.w")).unsqueeze(0).expand({H, D}).clone();
    a.k_norm = cpu_float(model.weight(p + "attn.k_norm.w")).unsqueeze(0).expand({H, D}).clone();
    a.qk_norm_eps = spec.norm_eps;
  }
  a.rotary = spec.positional == lm::Positional::kRotary;
  if (a.rotary) {
    const lm::RopeParameters rope = lm::rope_of_layer(spec, layer);
    // Lorsa's RoPE has no linear position scaling (Gemma 3's global layers)
    SAES_CHECK(rope.linear_factor == 1.0, UnsupportedError,
               "initializer.initialize_lorsa_with_mhsa: layer {} of model {} scales its RoPE "
               "positions linearly (factor {}), which Lorsa's RoPE cannot; pick a layer without "
               "it (a sliding-window layer) or initialize at random",
               layer, name, rope.linear_factor);
    a.rotary_dim = spec.rotary_dim;
    a.rotary_adjacent_pairs = spec.rope_style == lm::RopeStyle::kInterleaved;
    a.rotary_base = rope.theta;
    a.ntk_by_parts = rope.llama3_scaling.enabled;
    a.ntk_factor = rope.llama3_scaling.factor;
    a.ntk_low_freq_factor = rope.llama3_scaling.low_freq_factor;
    a.ntk_high_freq_factor = rope.llama3_scaling.high_freq_factor;
    a.ntk_old_context_len = rope.llama3_scaling.original_max_position_embeddings;
  }
  a.attn_scale = std::sqrt(spec.attn_scale_base > 0 ? spec.attn_scale_base
                                                    : static_cast<double>(D));
  a.source = fmt::format("model {} blocks.{}.attn", name, layer);
  return a;
}

dictionaries::MlpFunction mlp_function(const lm::Transformer& model, std::int64_t layer) {
  check_layer(model, layer, "the model");
  return [&model, layer](const at::Tensor& rows) {
    const at::NoGradGuard no_grad;
    return cpu_float(model.mlp_of_normalized(layer, rows));
  };
}

void initialize_from_model(dictionaries::SparseDictionary& dict, const InitializerConfig& cfg,
                           const lm::Transformer* model, const std::string& model_name,
                           const std::map<std::string, at::Tensor>& raw, Logger& logger) {
  const dictionaries::SparseDictionaryConfig& sae = dict.config();
  const bool mhsa = cfg.initialize_lorsa_with_mhsa.value_or(false);
  const bool mlp = cfg.initialize_tc_with_mlp.value_or(false);
  const bool subspace = cfg.initialize_W_D_with_active_subspace;
  if (!mhsa && !mlp && !subspace) return;
  std::int64_t layer = 0;
  if (needs_model(cfg, sae)) {
    SAES_CHECK(model != nullptr, ConfigError,
               "initializer: initialize_lorsa_with_mhsa, initialize_tc_with_mlp and a lorsa's "
               "initialize_W_D_with_active_subspace read the language model: set "
               "model.model_from_pretrained_path");
    SAES_CHECK(cfg.model_layer.has_value(), ConfigError,
               "initializer.model_layer: required by the model-informed inits");
    layer = *cfg.model_layer;
    check_layer(*model, layer, model_name);
  }
  const bool lorsa = sae.sae_type == dictionaries::SaeType::kLorsa;
  std::optional<dictionaries::AttentionLayer> attention;
  if (mhsa || (subspace && lorsa)) {
    expect_hooks(sae, layer, "ln1.hook_normalized", "hook_attn_out",
                 mhsa ? "initialize_lorsa_with_mhsa" : "initialize_W_D_with_active_subspace");
    attention = attention_layer(*model, layer, model_name);
  }
  if (mhsa) {
    dict.init_with_attention(*attention);
    logger.info("init: Q/K from {} ({} heads repeated to {})", attention->source,
                attention->n_heads(), sae.n_qk_heads);
  }
  if (mlp) {
    expect_hooks(sae, layer, "ln2.hook_normalized", "hook_mlp_out", "initialize_tc_with_mlp");
    const auto it = raw.find(sae.hook_point_in);
    SAES_CHECK(it != raw.end(), DataError, "the first batch has no hook \"{}\"",
               sae.hook_point_in);
    dict.init_with_mlp(mlp_function(*model, layer), it->second);
    logger.info("init: decoder from the MLP of model {} blocks.{}", model_name, layer);
  }
  if (subspace) {
    dict.init_decoder_in_active_subspace(dict.prepare_input(raw), dict.prepare_label(raw),
                                         cfg.d_active_subspace.value_or(0),
                                         attention ? &*attention : nullptr);
    logger.info("init: decoder in the active subspace{}",
                lorsa ? fmt::format(" of each head of {}", attention->source)
                      : fmt::format(" of dimension {}", cfg.d_active_subspace.value_or(0)));
  }
}

}  // namespace saes::training

// Names and consistency checks for TransformerSpec.
#include "saes/lm/model_config.h"

#include <cmath>

#include "saes/core/error.h"

namespace saes::lm {

std::string_view architecture_name(Architecture architecture) {
  switch (architecture) {
    case Architecture::kGpt2:
      return "gpt2";
    case Architecture::kGptNeoX:
      return "gpt_neox";
    case Architecture::kLlama:
      return "llama";
    case Architecture::kQwen2:
      return "qwen2";
    case Architecture::kQwen3:
      return "qwen3";
    case Architecture::kMistral:
      return "mistral";
    case Architecture::kGemma2:
      return "gemma2";
    case Architecture::kGemma3:
      return "gemma3";
    case Architecture::kLlama2c:
      return "llama2c";
  }
  return "unknown";
}

bool is_gated(Activation act) {
  return act == Activation::kSiluGated || act == Activation::kGeluGated ||
         act == Activation::kGeluNewGated;
}

bool is_sliding_layer(const TransformerSpec& spec, int64_t layer) {
  return spec.sliding_window > 0 && !spec.sliding_layers.empty() && layer >= 0 &&
         spec.sliding_layers.at(static_cast<std::size_t>(layer));
}

RopeParameters rope_of_layer(const TransformerSpec& spec, int64_t layer) {
  if (spec.local_rope && is_sliding_layer(spec, layer)) return spec.rope_local;
  return global_rope(spec);
}

RopeParameters global_rope(const TransformerSpec& spec) {
  RopeParameters out;
  out.theta = spec.rope_theta;
  out.llama3_scaling = spec.llama3_scaling;
  out.linear_factor = spec.rope_linear_factor;
  return out;
}

void validate_spec(const TransformerSpec& spec, const std::string& where) {
  const auto positive = [&](int64_t value, const char* field) {
    SAES_CHECK(value > 0, ConfigError, "{}: {} must be > 0, got {}", where, field, value);
  };
  positive(spec.d_model, "d_model");
  positive(spec.n_layers, "n_layers");
  positive(spec.n_heads, "n_heads");
  positive(spec.n_kv_heads, "n_kv_heads");
  positive(spec.d_head, "d_head");
  positive(spec.d_mlp, "d_mlp");
  positive(spec.d_vocab, "d_vocab");
  positive(spec.n_ctx, "n_ctx");
  SAES_CHECK(spec.n_heads % spec.n_kv_heads == 0, ConfigError,
             "{}: n_heads ({}) must be a multiple of n_kv_heads ({})", where, spec.n_heads,
             spec.n_kv_heads);
  SAES_CHECK(spec.norm_eps > 0, ConfigError, "{}: norm_eps must be > 0, got {}", where,
             spec.norm_eps);
  if (spec.positional == Positional::kRotary) {
    SAES_CHECK(spec.rotary_dim > 0 && spec.rotary_dim <= spec.d_head && spec.rotary_dim % 2 == 0,
               ConfigError, "{}: rotary_dim must be even and in (0, d_head={}], got {}", where,
               spec.d_head, spec.rotary_dim);
    SAES_CHECK(spec.rope_theta > 0, ConfigError, "{}: rope_theta must be > 0, got {}", where,
               spec.rope_theta);
  }
  SAES_CHECK(spec.sliding_layers.empty() ||
                 static_cast<int64_t>(spec.sliding_layers.size()) == spec.n_layers,
             ConfigError, "{}: {} layer types for {} layers", where, spec.sliding_layers.size(),
             spec.n_layers);
  SAES_CHECK(spec.sliding_window >= 0, ConfigError, "{}: sliding_window must be >= 0, got {}",
             where, spec.sliding_window);
  for (const double value : {spec.attn_softcap, spec.final_softcap, spec.attn_scale_base}) {
    SAES_CHECK(value >= 0 && std::isfinite(value), ConfigError,
               "{}: soft-capping values and the attention scale base must be finite and >= 0, "
               "got {}",
               where, value);
  }
  SAES_CHECK(spec.embed_scale > 0 && std::isfinite(spec.embed_scale), ConfigError,
             "{}: embed_scale must be finite and > 0, got {}", where, spec.embed_scale);
  for (const double factor : {spec.rope_linear_factor, spec.rope_local.linear_factor}) {
    SAES_CHECK(factor > 0 && std::isfinite(factor), ConfigError,
               "{}: linear rope factor must be finite and > 0, got {}", where, factor);
  }
  SAES_CHECK(!spec.local_rope || spec.rope_local.theta > 0, ConfigError,
             "{}: the local rope_theta must be > 0, got {}", where, spec.rope_local.theta);
  if (spec.llama3_scaling.enabled) {
    const Llama3RopeScaling& s = spec.llama3_scaling;
    SAES_CHECK(
        s.factor > 0 && s.high_freq_factor > s.low_freq_factor && s.low_freq_factor > 0 &&
            s.original_max_position_embeddings > 0,
        ConfigError,
        "{}: llama3 rope scaling needs factor > 0, high_freq_factor > low_freq_factor > 0 and "
        "original_max_position_embeddings > 0, got factor={} low={} high={} original={}",
        where, s.factor, s.low_freq_factor, s.high_freq_factor, s.original_max_position_embeddings);
  }
}

}  // namespace saes::lm

// Names and consistency checks for TransformerSpec.
#include "saes/lm/model_config.h"

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
    case Architecture::kLlama2c:
      return "llama2c";
  }
  return "unknown";
}

bool is_gated(Activation act) {
  return act == Activation::kSiluGated || act == Activation::kGeluGated;
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

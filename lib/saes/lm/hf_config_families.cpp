// config.json -> TransformerSpec for Qwen3, Mistral, Gemma 2 and Gemma 3 (field names and defaults
// as in transformers' configuration_qwen3 / _mistral / _gemma2 / _gemma3.py; both the
// transformers ≥ 5 layout with `layer_types` and `rope_parameters` and the older top-level keys).
// Torch-free (fuzz/hf_config_fuzz.cpp).
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "saes/lm/hf_config_reader.h"

namespace saes::lm::hf {
namespace {

/// `layer_types` ("sliding_attention" / "full_attention" per layer) when the file has it, else
/// the family's default pattern.
std::vector<bool> sliding_layers(const ConfigReader& c, int64_t n_layers,
                                 const std::function<bool(int64_t)>& default_pattern) {
  std::vector<bool> out(static_cast<std::size_t>(n_layers));
  if (!c.has("layer_types")) {
    for (int64_t l = 0; l < n_layers; ++l) out[static_cast<std::size_t>(l)] = default_pattern(l);
    return out;
  }
  const Json& types = c.json().at("layer_types");
  SAES_CHECK(types.is_array() && static_cast<int64_t>(types.size()) == n_layers, ConfigError,
             "{}: key 'layer_types' must list one type per layer ({}), got {}", c.where(),
             n_layers, types.dump());
  for (int64_t l = 0; l < n_layers; ++l) {
    const Json& t = types.at(static_cast<std::size_t>(l));
    const bool sliding = t.is_string() && t.get<std::string>() == "sliding_attention";
    SAES_CHECK(sliding || (t.is_string() && t.get<std::string>() == "full_attention"),
               UnsupportedError,
               "{}: layer_types[{}] is {}; supported: sliding_attention, full_attention",
               c.where(), l, t.dump());
    out[static_cast<std::size_t>(l)] = sliding;
  }
  return out;
}

/// An optional positive number (null or absent: 0 = off), e.g. the soft-capping values.
double optional_positive(const ConfigReader& c, const char* key, double fallback) {
  if (!c.json().contains(key)) return fallback;
  if (c.json().at(key).is_null()) return 0.0;
  const auto value = c.get<double>(key);
  SAES_CHECK(value > 0, ConfigError, "{}: key '{}' must be > 0 or null, got {}", c.where(), key,
             value);
  return value;
}

/// The sliding window size: null or absent (with fallback 0) disables it.
int64_t sliding_window(const ConfigReader& c, int64_t fallback) {
  if (!c.json().contains("sliding_window")) return fallback;
  if (c.json().at("sliding_window").is_null()) return 0;
  return c.size("sliding_window");
}

}  // namespace

TransformerSpec qwen3_spec(const ConfigReader& c) {
  // Qwen3Config's default head_dim is 128, not hidden / heads
  TransformerSpec s = llama_spec(c, Architecture::kQwen3, 128);
  s.qk_norm = true;
  // Qwen3 applies a window only with use_sliding_window: true (real configs say false)
  SAES_CHECK(!c.get_or<bool>("use_sliding_window", false), UnsupportedError,
             "{}: use_sliding_window: true is not supported", c.where());
  return s;
}

TransformerSpec mistral_spec(const ConfigReader& c) {
  TransformerSpec s = llama_spec(c, Architecture::kMistral);
  // MistralConfig's default window is 4096; null (Mistral ≥ v0.2) disables it
  s.sliding_window = sliding_window(c, 4096);
  if (s.sliding_window > 0) s.sliding_layers.assign(static_cast<std::size_t>(s.n_layers), true);
  return s;
}

TransformerSpec gemma_spec(const ConfigReader& c, Architecture architecture) {
  const bool gemma3 = architecture == Architecture::kGemma3;
  TransformerSpec s;
  s.architecture = architecture;
  read_sizes(c, s, 256);
  s.n_ctx = c.size_or("max_position_embeddings", gemma3 ? 131072 : 8192);
  s.norm = NormType::kRmsNorm;
  s.norm_eps = c.get_or<double>("rms_norm_eps", 1e-6);
  s.norm_weight_offset = 1.0;
  // Gemma's MLP reads hidden_activation (hidden_act is the legacy key)
  const auto act = c.get_or<std::string>(
      "hidden_activation", c.get_or<std::string>("hidden_act", "gelu_pytorch_tanh"));
  if (act == "gelu_pytorch_tanh" || act == "gelu_new") {
    s.act = Activation::kGeluNewGated;
  } else {
    SAES_CHECK(act == "gelu", UnsupportedError,
               "{}: hidden_activation '{}' is not supported (gelu_pytorch_tanh, gelu)", c.where(),
               act);
    s.act = Activation::kGeluGated;
  }
  s.positional = Positional::kRotary;
  s.rope_style = RopeStyle::kHalfSplit;
  s.rotary_dim = s.d_head;
  s.qkv_bias = s.attn_out_bias = c.get_or<bool>("attention_bias", false);
  s.mlp_bias = false;
  s.tied_embeddings = c.get_or<bool>("tie_word_embeddings", true);
  s.embed_scale = std::sqrt(static_cast<double>(s.d_model));
  s.post_norms = true;
  s.qk_norm = gemma3;
  s.attn_scale_base = c.get_or<double>("query_pre_attn_scalar", 256.0);
  SAES_CHECK(s.attn_scale_base > 0, ConfigError, "{}: query_pre_attn_scalar must be > 0, got {}",
             c.where(), s.attn_scale_base);
  s.attn_softcap = optional_positive(c, "attn_logit_softcapping", gemma3 ? 0.0 : 50.0);
  s.final_softcap = optional_positive(c, "final_logit_softcapping", gemma3 ? 0.0 : 30.0);
  s.sliding_window = sliding_window(c, 4096);
  if (gemma3) {
    const int64_t pattern = c.size_or("sliding_window_pattern", 6);
    s.sliding_layers =
        sliding_layers(c, s.n_layers, [pattern](int64_t l) { return (l + 1) % pattern != 0; });
  } else {
    s.sliding_layers = sliding_layers(c, s.n_layers, [](int64_t l) { return l % 2 == 0; });
  }
  if (s.sliding_window == 0) s.sliding_layers.clear();

  // RoPE. Gemma 2: one, like Llama. Gemma 3: global layers rope_theta (1e6) with rope_scaling;
  // sliding layers rope_local_base_freq (1e4) without scaling; transformers ≥ 5 nests both under
  // rope_parameters.{full_attention, sliding_attention}.
  const ConfigReader params = rope_parameters(c);
  const bool nested = params.has("full_attention") || params.has("sliding_attention");
  RopeParameters global;
  if (!gemma3 || !nested) {
    global.theta = rope_theta(c, gemma3 ? 1e6 : 10000.0);
    const bool legacy = c.has("rope_scaling");
    SAES_CHECK(!legacy || c.json().at("rope_scaling").is_object(), ConfigError,
               "{}: key 'rope_scaling' must be a map or null", c.where());
    if (legacy) {
      read_rope_type(ConfigReader(c.json().at("rope_scaling"), c.where() + " rope_scaling"),
                     global);
    } else if (c.has("rope_parameters")) {
      read_rope_type(params, global);
    }
  }
  if (gemma3) {
    s.local_rope = true;
    s.rope_local.theta = c.get_or<double>("rope_local_base_freq", 10000.0);
    if (nested) {
      const auto layer_type = [&](const char* key) {
        SAES_CHECK(!params.has(key) || params.json().at(key).is_object(), ConfigError,
                   "{}: key '{}' must be a map", params.where(), key);
        static const Json kEmpty = Json::object();
        return ConfigReader(params.has(key) ? params.json().at(key) : kEmpty,
                            params.where() + "." + key);
      };
      const ConfigReader full = layer_type("full_attention");
      const ConfigReader sliding = layer_type("sliding_attention");
      global.theta = full.get_or<double>("rope_theta", c.get_or<double>("rope_theta", 1e6));
      read_rope_type(full, global);
      s.rope_local.theta = sliding.get_or<double>("rope_theta", s.rope_local.theta);
      read_rope_type(sliding, s.rope_local);
    }
  }
  s.rope_theta = global.theta;
  s.llama3_scaling = global.llama3_scaling;
  s.rope_linear_factor = global.linear_factor;
  s.bos_token_id = first_token_id(c, "bos_token_id");
  s.eos_token_id = first_token_id(c, "eos_token_id");
  if (s.bos_token_id < 0 && !c.json().contains("bos_token_id")) s.bos_token_id = 2;
  if (s.eos_token_id < 0 && !c.json().contains("eos_token_id")) s.eos_token_id = 1;
  return s;
}

}  // namespace saes::lm::hf

// Hugging Face config.json -> TransformerSpec for GPT-2, GPT-NeoX, Llama and Qwen2 (field names and
// defaults as in transformers' configuration_*.py). Torch-free (fuzz/hf_config_fuzz.cpp); the
// dispatch to per-architecture weight mappings is in hf_model.cpp.
// DEVIATION: nlohmann/json outside io/ — config.json is only ever parsed here.
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/lm/hf_config.h"

namespace saes::lm {
namespace {

using Json = nlohmann::json;

/// Typed access to config keys with messages naming the file and key.
class ConfigReader {
 public:
  ConfigReader(const Json& json, std::string where) : json_(json), where_(std::move(where)) {}

  bool has(const char* key) const { return json_.contains(key) && !json_.at(key).is_null(); }
  template <typename T>
  T get(const char* key) const {
    SAES_CHECK(has(key), ConfigError, "{}: missing key '{}'", where_, key);
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      // nlohmann would convert 1e300 (undefined behaviour) or 2.5 (silently) to an integer.
      SAES_CHECK(json_.at(key).is_number_integer(), ConfigError,
                 "{}: key '{}' must be an integer, got {}", where_, key, json_.at(key).dump());
    }
    try {
      return json_.at(key).get<T>();
    } catch (const Json::exception& e) {
      SAES_THROW(ConfigError, "{}: key '{}' has the wrong type ({})", where_, key, e.what());
    }
  }
  template <typename T>
  T get_or(const char* key, T fallback) const {
    return has(key) ? get<T>(key) : fallback;
  }
  /// A dimension or count: an integer in [1, 2^40] (0 or a negative value would divide by zero
  /// or overflow further on).
  int64_t size(const char* key) const {
    const auto value = get<int64_t>(key);
    SAES_CHECK(value >= 1 && value <= (int64_t{1} << 40), ConfigError,
               "{}: key '{}' must be a positive integer (at most 2^40), got {}", where_, key, value);
    return value;
  }
  int64_t size_or(const char* key, int64_t fallback) const {
    return has(key) ? size(key) : fallback;
  }
  const Json& json() const { return json_; }
  const std::string& where() const { return where_; }

 private:
  const Json& json_;
  std::string where_;
};

/// transformers ≥ 5 writes the rotary settings into one `rope_parameters` map (rope_type,
/// rope_theta, partial_rotary_factor and the scaling keys); older files keep them at the top level
/// (rope_theta; NeoX rotary_pct / rotary_emb_base) with scaling under `rope_scaling`. Both are
/// read: this returns the map, or an empty object when the file has none.
ConfigReader rope_parameters(const ConfigReader& c) {
  static const Json kEmpty = Json::object();
  if (!c.has("rope_parameters")) return ConfigReader(kEmpty, c.where() + " rope_parameters");
  SAES_CHECK(c.json().at("rope_parameters").is_object(), ConfigError,
             "{}: key 'rope_parameters' must be a map", c.where());
  return ConfigReader(c.json().at("rope_parameters"), c.where() + " rope_parameters");
}

/// rope_theta from the top level, else from rope_parameters, else `fallback`.
double rope_theta(const ConfigReader& c, double fallback) {
  return c.get_or<double>("rope_theta", rope_parameters(c).get_or<double>("rope_theta", fallback));
}

/// GPT-2 / NeoX MLP activation from `key`: gelu (erf), gelu_new / gelu_pytorch_tanh (tanh
/// approximation) or relu; anything else is UnsupportedError naming the key.
Activation gelu_family_activation(const ConfigReader& c, const char* key, const char* fallback) {
  const auto act = c.get_or<std::string>(key, fallback);
  if (act == "gelu") return Activation::kGelu;
  if (act == "relu") return Activation::kRelu;
  SAES_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh", UnsupportedError,
             "{}: {} '{}' is not supported", c.where(), key, act);
  return Activation::kGeluNew;
}

TransformerSpec gpt2_spec(const ConfigReader& c) {
  TransformerSpec s;
  s.architecture = Architecture::kGpt2;
  s.d_model = c.size("n_embd");
  s.n_layers = c.size("n_layer");
  s.n_heads = c.size("n_head");
  s.n_kv_heads = s.n_heads;
  s.d_head = s.d_model / s.n_heads;
  s.d_mlp = c.size_or("n_inner", 4 * s.d_model);
  s.d_vocab = c.size("vocab_size");
  s.n_ctx = c.size("n_positions");
  s.norm = NormType::kLayerNorm;
  s.norm_eps = c.get_or<double>("layer_norm_epsilon", 1e-5);
  s.act = gelu_family_activation(c, "activation_function", "gelu_new");
  s.positional = Positional::kLearned;
  s.qkv_bias = s.attn_out_bias = s.mlp_bias = true;
  s.tied_embeddings = true;
  s.bos_token_id = c.get_or<int64_t>("bos_token_id", 50256);
  s.eos_token_id = c.get_or<int64_t>("eos_token_id", 50256);
  return s;
}

void read_rope_scaling(const ConfigReader& c, TransformerSpec& s) {
  const bool legacy = c.has("rope_scaling");
  if (!legacy && !c.has("rope_parameters")) return;
  SAES_CHECK(!legacy || c.json().at("rope_scaling").is_object(), ConfigError,
             "{}: key 'rope_scaling' must be a map or null", c.where());
  const ConfigReader scaling =
      legacy ? ConfigReader(c.json().at("rope_scaling"), c.where() + " rope_scaling")
             : rope_parameters(c);
  const auto type =
      scaling.get_or<std::string>("rope_type", scaling.get_or<std::string>("type", ""));
  if (type == "default") return;
  if (type.empty() && !legacy) return;  // rope_parameters with only rope_theta
  SAES_CHECK(type == "llama3", UnsupportedError,
             "{}: rope type '{}' is not supported (supported: llama3, default)", scaling.where(),
             type);
  s.llama3_scaling.enabled = true;
  s.llama3_scaling.factor = scaling.get<double>("factor");
  s.llama3_scaling.low_freq_factor = scaling.get<double>("low_freq_factor");
  s.llama3_scaling.high_freq_factor = scaling.get<double>("high_freq_factor");
  s.llama3_scaling.original_max_position_embeddings =
      scaling.size("original_max_position_embeddings");
}

TransformerSpec gpt_neox_spec(const ConfigReader& c) {
  TransformerSpec s;
  s.architecture = Architecture::kGptNeoX;
  s.d_model = c.size("hidden_size");
  s.n_layers = c.size("num_hidden_layers");
  s.n_heads = c.size("num_attention_heads");
  s.n_kv_heads = s.n_heads;
  s.d_head = s.d_model / s.n_heads;
  s.d_mlp = c.size("intermediate_size");
  s.d_vocab = c.size("vocab_size");
  s.n_ctx = c.size("max_position_embeddings");
  s.norm = NormType::kLayerNorm;
  s.norm_eps = c.get_or<double>("layer_norm_eps", 1e-5);
  s.act = gelu_family_activation(c, "hidden_act", "gelu");
  s.positional = Positional::kRotary;
  s.rope_style = RopeStyle::kHalfSplit;
  const double rotary_pct = c.get_or<double>(
      "rotary_pct", c.get_or<double>("partial_rotary_factor", rope_parameters(c).get_or<double>(
                                                                  "partial_rotary_factor", 0.25)));
  SAES_CHECK(rotary_pct >= 0 && rotary_pct <= 1, ConfigError,
             "{}: rotary_pct (partial_rotary_factor) must be in [0, 1], got {}", c.where(),
             rotary_pct);
  s.rotary_dim = static_cast<int64_t>(static_cast<double>(s.d_head) * rotary_pct);
  s.rope_theta = c.get_or<double>("rotary_emb_base", rope_theta(c, 10000.0));
  read_rope_scaling(c, s);
  s.parallel_attn_mlp = c.get_or<bool>("use_parallel_residual", true);
  s.qkv_bias = s.attn_out_bias = c.get_or<bool>("attention_bias", true);
  s.mlp_bias = true;
  s.tied_embeddings = c.get_or<bool>("tie_word_embeddings", false);
  s.bos_token_id = c.get_or<int64_t>("bos_token_id", 0);
  s.eos_token_id = c.get_or<int64_t>("eos_token_id", 0);
  return s;
}

/// A token id key that may be absent, null, an integer or a list (Llama 3 lists several eos ids).
int64_t first_token_id(const ConfigReader& c, const char* key) {
  if (!c.has(key)) return -1;
  const Json& value = c.json().at(key);
  if (value.is_array()) {
    if (value.empty()) return -1;
    SAES_CHECK(value.at(0).is_number_integer(), ConfigError,
               "{}: key '{}' must be a token id or a list of them", c.where(), key);
    return value.at(0).get<int64_t>();
  }
  return c.get<int64_t>(key);
}

TransformerSpec llama_spec(const ConfigReader& c, Architecture architecture) {
  TransformerSpec s;
  s.architecture = architecture;
  s.d_model = c.size("hidden_size");
  s.n_layers = c.size("num_hidden_layers");
  s.n_heads = c.size("num_attention_heads");
  s.n_kv_heads = c.size_or("num_key_value_heads", s.n_heads);
  s.d_head = c.size_or("head_dim", s.d_model / s.n_heads);
  s.d_mlp = c.size("intermediate_size");
  s.d_vocab = c.size("vocab_size");
  s.n_ctx = c.size("max_position_embeddings");
  s.norm = NormType::kRmsNorm;
  s.norm_eps = c.get_or<double>("rms_norm_eps", 1e-6);
  const auto act = c.get_or<std::string>("hidden_act", "silu");
  SAES_CHECK(act == "silu", UnsupportedError, "{}: hidden_act '{}' is not supported (silu only)",
             c.where(), act);
  s.act = Activation::kSiluGated;
  s.positional = Positional::kRotary;
  s.rope_style = RopeStyle::kHalfSplit;
  s.rotary_dim = s.d_head;
  s.rope_theta = rope_theta(c, 10000.0);
  read_rope_scaling(c, s);
  const bool qwen2 = architecture == Architecture::kQwen2;
  s.qkv_bias = qwen2 || c.get_or<bool>("attention_bias", false);
  s.attn_out_bias = !qwen2 && c.get_or<bool>("attention_bias", false);
  s.mlp_bias = c.get_or<bool>("mlp_bias", false);
  s.tied_embeddings = c.get_or<bool>("tie_word_embeddings", false);
  if (qwen2) {
    // Real Qwen2 configs carry sliding_window with use_sliding_window: false; the window is then
    // unused.
    SAES_CHECK(!c.get_or<bool>("use_sliding_window", false), UnsupportedError,
               "{}: use_sliding_window: true is not supported", c.where());
  }
  s.bos_token_id = first_token_id(c, "bos_token_id");
  s.eos_token_id = first_token_id(c, "eos_token_id");
  return s;
}

}  // namespace

TransformerSpec parse_hf_config(const std::string& json_text, const std::string& where) {
  Json json;
  try {
    json = Json::parse(json_text);
  } catch (const Json::exception& e) {
    SAES_THROW(ConfigError, "{}: not valid JSON ({})", where, e.what());
  }
  SAES_CHECK(json.is_object(), ConfigError, "{}: expected a JSON object", where);
  const ConfigReader config(json, where);
  std::string architecture;
  if (config.has("architectures") && json.at("architectures").is_array() &&
      !json.at("architectures").empty()) {
    const Json& first = json.at("architectures").at(0);
    SAES_CHECK(first.is_string(), ConfigError,
               "{}: key 'architectures' must be a list of names, got {}", where,
               json.at("architectures").dump());
    architecture = first.get<std::string>();
  }
  TransformerSpec spec;
  if (architecture == "GPT2LMHeadModel") {
    spec = gpt2_spec(config);
  } else if (architecture == "GPTNeoXForCausalLM") {
    spec = gpt_neox_spec(config);
  } else if (architecture == "LlamaForCausalLM") {
    spec = llama_spec(config, Architecture::kLlama);
  } else if (architecture == "Qwen2ForCausalLM") {
    spec = llama_spec(config, Architecture::kQwen2);
  } else {
    SAES_THROW(UnsupportedError,
               "{}: architecture '{}' is not supported (supported: GPT2LMHeadModel, "
               "GPTNeoXForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM)",
               where, architecture);
  }
  validate_spec(spec, where);
  return spec;
}

}  // namespace saes::lm

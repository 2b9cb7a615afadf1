// Hugging Face config.json -> TransformerSpec for GPT-2, GPT-NeoX, Llama and Qwen2 (field names and
// defaults as in transformers' configuration_*.py), and the dispatch to per-architecture mappings.
// DEVIATION: nlohmann/json outside io/ — config.json is only ever parsed here.
#include <utility>

#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/lm/hf_model.h"

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
  s.d_model = c.get<int64_t>("n_embd");
  s.n_layers = c.get<int64_t>("n_layer");
  s.n_heads = c.get<int64_t>("n_head");
  s.n_kv_heads = s.n_heads;
  s.d_head = s.d_model / s.n_heads;
  s.d_mlp = c.get_or<int64_t>("n_inner", 4 * s.d_model);
  s.d_vocab = c.get<int64_t>("vocab_size");
  s.n_ctx = c.get<int64_t>("n_positions");
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
      scaling.get<int64_t>("original_max_position_embeddings");
}

TransformerSpec gpt_neox_spec(const ConfigReader& c) {
  TransformerSpec s;
  s.architecture = Architecture::kGptNeoX;
  s.d_model = c.get<int64_t>("hidden_size");
  s.n_layers = c.get<int64_t>("num_hidden_layers");
  s.n_heads = c.get<int64_t>("num_attention_heads");
  s.n_kv_heads = s.n_heads;
  s.d_head = s.d_model / s.n_heads;
  s.d_mlp = c.get<int64_t>("intermediate_size");
  s.d_vocab = c.get<int64_t>("vocab_size");
  s.n_ctx = c.get<int64_t>("max_position_embeddings");
  s.norm = NormType::kLayerNorm;
  s.norm_eps = c.get_or<double>("layer_norm_eps", 1e-5);
  s.act = gelu_family_activation(c, "hidden_act", "gelu");
  s.positional = Positional::kRotary;
  s.rope_style = RopeStyle::kHalfSplit;
  const double rotary_pct = c.get_or<double>(
      "rotary_pct", c.get_or<double>("partial_rotary_factor", rope_parameters(c).get_or<double>(
                                                                  "partial_rotary_factor", 0.25)));
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
  if (value.is_array()) return value.empty() ? -1 : value.at(0).get<int64_t>();
  return c.get<int64_t>(key);
}

TransformerSpec llama_spec(const ConfigReader& c, Architecture architecture) {
  TransformerSpec s;
  s.architecture = architecture;
  s.d_model = c.get<int64_t>("hidden_size");
  s.n_layers = c.get<int64_t>("num_hidden_layers");
  s.n_heads = c.get<int64_t>("num_attention_heads");
  s.n_kv_heads = c.get_or<int64_t>("num_key_value_heads", s.n_heads);
  s.d_head = c.get_or<int64_t>("head_dim", s.d_model / s.n_heads);
  s.d_mlp = c.get<int64_t>("intermediate_size");
  s.d_vocab = c.get<int64_t>("vocab_size");
  s.n_ctx = c.get<int64_t>("max_position_embeddings");
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
    architecture = json.at("architectures").at(0).get<std::string>();
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

MapWeightSource map_hf_weights(const TransformerSpec& spec, WeightSource& hf) {
  switch (spec.architecture) {
    case Architecture::kGpt2:
      return map_hf_gpt2_weights(spec, hf);
    case Architecture::kGptNeoX:
      return map_hf_gpt_neox_weights(spec, hf);
    case Architecture::kLlama:
    case Architecture::kQwen2:
      return map_hf_llama_weights(spec, hf);
    case Architecture::kLlama2c:
      break;
  }
  SAES_THROW(UnsupportedError, "{}: no Hugging Face layout for architecture {}", hf.describe(),
             architecture_name(spec.architecture));
}

Transformer load_hf_transformer(const std::string& config_json, WeightSource& hf,
                                TransformerOptions options, const std::string& where) {
  const TransformerSpec spec = parse_hf_config(config_json, where);
  MapWeightSource weights = map_hf_weights(spec, hf);
  return Transformer(spec, weights, options);
}

}  // namespace saes::lm

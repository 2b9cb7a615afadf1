// Hugging Face config.json -> TransformerSpec for GPT-2, GPT-NeoX, Llama and Qwen2 (field names and
// defaults as in transformers' configuration_*.py), and the dispatch over every architecture
// (Qwen3, Mistral, Gemma in hf_config_families.cpp). Torch-free (fuzz/hf_config_fuzz.cpp); the
// per-architecture weight mappings are dispatched in hf_model.cpp.
#include "saes/lm/hf_config.h"

#include "saes/lm/hf_config_reader.h"

namespace saes::lm {
namespace hf {

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

namespace {

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

}  // namespace

void read_rope_type(const ConfigReader& scaling, RopeParameters& rope) {
  const auto type =
      scaling.get_or<std::string>("rope_type", scaling.get_or<std::string>("type", "default"));
  if (type == "default") return;
  if (type == "linear") {
    rope.linear_factor = scaling.get<double>("factor");
    SAES_CHECK(rope.linear_factor > 0, ConfigError, "{}: linear rope factor must be > 0, got {}",
               scaling.where(), rope.linear_factor);
    return;
  }
  SAES_CHECK(type == "llama3", UnsupportedError,
             "{}: rope type '{}' is not supported (supported: default, linear, llama3)",
             scaling.where(), type);
  Llama3RopeScaling& s = rope.llama3_scaling;
  s.enabled = true;
  s.factor = scaling.get<double>("factor");
  s.low_freq_factor = scaling.get<double>("low_freq_factor");
  s.high_freq_factor = scaling.get<double>("high_freq_factor");
  s.original_max_position_embeddings = scaling.size("original_max_position_embeddings");
}

namespace {

/// rope_scaling (legacy) or rope_parameters' type into the spec's global RoPE.
void read_rope_scaling(const ConfigReader& c, TransformerSpec& s) {
  const bool legacy = c.has("rope_scaling");
  if (!legacy && !c.has("rope_parameters")) return;
  SAES_CHECK(!legacy || c.json().at("rope_scaling").is_object(), ConfigError,
             "{}: key 'rope_scaling' must be a map or null", c.where());
  const ConfigReader scaling =
      legacy ? ConfigReader(c.json().at("rope_scaling"), c.where() + " rope_scaling")
             : rope_parameters(c);
  RopeParameters rope = global_rope(s);
  read_rope_type(scaling, rope);
  s.llama3_scaling = rope.llama3_scaling;
  s.rope_linear_factor = rope.linear_factor;
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

}  // namespace

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

void read_sizes(const ConfigReader& c, TransformerSpec& s, int64_t default_head_dim) {
  s.d_model = c.size("hidden_size");
  s.n_layers = c.size("num_hidden_layers");
  s.n_heads = c.size("num_attention_heads");
  s.n_kv_heads = c.size_or("num_key_value_heads", s.n_heads);
  s.d_head = c.size_or("head_dim", default_head_dim > 0 ? default_head_dim : s.d_model / s.n_heads);
  s.d_mlp = c.size("intermediate_size");
  s.d_vocab = c.size("vocab_size");
}

TransformerSpec llama_spec(const ConfigReader& c, Architecture architecture,
                           int64_t default_head_dim) {
  TransformerSpec s;
  s.architecture = architecture;
  read_sizes(c, s, default_head_dim);
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

}  // namespace hf

TransformerSpec parse_hf_config(const std::string& json_text, const std::string& where) {
  hf::Json json;
  try {
    json = hf::Json::parse(json_text);
  } catch (const hf::Json::exception& e) {
    SAES_THROW(ConfigError, "{}: not valid JSON ({})", where, e.what());
  }
  SAES_CHECK(json.is_object(), ConfigError, "{}: expected a JSON object", where);
  const hf::ConfigReader config(json, where);
  std::string architecture;
  if (config.has("architectures") && json.at("architectures").is_array() &&
      !json.at("architectures").empty()) {
    const hf::Json& first = json.at("architectures").at(0);
    SAES_CHECK(first.is_string(), ConfigError,
               "{}: key 'architectures' must be a list of names, got {}", where,
               json.at("architectures").dump());
    architecture = first.get<std::string>();
  }
  TransformerSpec spec;
  if (architecture == "GPT2LMHeadModel") {
    spec = hf::gpt2_spec(config);
  } else if (architecture == "GPTNeoXForCausalLM") {
    spec = hf::gpt_neox_spec(config);
  } else if (architecture == "LlamaForCausalLM") {
    spec = hf::llama_spec(config, Architecture::kLlama);
  } else if (architecture == "Qwen2ForCausalLM") {
    spec = hf::llama_spec(config, Architecture::kQwen2);
  } else if (architecture == "Qwen3ForCausalLM") {
    spec = hf::qwen3_spec(config);
  } else if (architecture == "MistralForCausalLM") {
    spec = hf::mistral_spec(config);
  } else if (architecture == "Gemma2ForCausalLM") {
    spec = hf::gemma_spec(config, Architecture::kGemma2);
  } else if (architecture == "Gemma3ForCausalLM") {
    spec = hf::gemma_spec(config, Architecture::kGemma3);
  } else if (architecture == "Gemma3ForConditionalGeneration") {
    // the language model of the multimodal checkpoints (4B and up): text_config holds it
    SAES_CHECK(config.has("text_config") && json.at("text_config").is_object(), ConfigError,
               "{}: Gemma3ForConditionalGeneration needs a 'text_config' map", where);
    spec = hf::gemma_spec(hf::ConfigReader(json.at("text_config"), where + " text_config"),
                          Architecture::kGemma3);
  } else {
    SAES_THROW(UnsupportedError,
               "{}: architecture '{}' is not supported (supported: GPT2LMHeadModel, "
               "GPTNeoXForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
               "MistralForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, "
               "Gemma3ForConditionalGeneration)",
               where, architecture);
  }
  validate_spec(spec, where);
  return spec;
}

}  // namespace saes::lm

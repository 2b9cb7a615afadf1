// The typed config.json reader shared by the per-family parsers (hf_config.cpp: GPT-2, NeoX,
// Llama, Qwen2; hf_config_families.cpp: Qwen3, Mistral, Gemma 2/3). Internal to lm/; torch-free.
// DEVIATION: nlohmann/json outside io/ — config.json is only ever parsed here.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/lm/model_config.h"

namespace saes::lm::hf {

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


/// rope_parameters (transformers ≥ 5) as a reader, or an empty one when the file has none.
ConfigReader rope_parameters(const ConfigReader& c);
/// rope_theta from the top level, else from rope_parameters, else `fallback`.
double rope_theta(const ConfigReader& c, double fallback);
/// Applies the rope type of `scaling` (a rope_scaling or rope_parameters map): default, linear
/// (factor) or llama3 (its four keys); others are UnsupportedError naming the type.
void read_rope_type(const ConfigReader& scaling, RopeParameters& rope);
/// A token id key that may be absent, null, an integer or a list (the first id).
int64_t first_token_id(const ConfigReader& c, const char* key);
/// hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads (default: heads),
/// head_dim (default `default_head_dim`, or hidden / heads when 0), intermediate_size, vocab_size.
void read_sizes(const ConfigReader& c, TransformerSpec& s, int64_t default_head_dim);
/// Llama-layout models (Llama, Qwen2 and the bases of Qwen3 and Mistral).
TransformerSpec llama_spec(const ConfigReader& c, Architecture architecture,
                           int64_t default_head_dim = 0);
TransformerSpec qwen3_spec(const ConfigReader& c);
TransformerSpec mistral_spec(const ConfigReader& c);
TransformerSpec gemma_spec(const ConfigReader& c, Architecture architecture);

}  // namespace saes::lm::hf

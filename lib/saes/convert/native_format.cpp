// Native and original-checkpoint layouts (spec §2.1 "Checkpoint format", §15): the dictionary
// config as JSON, layout detection and the read_dictionary dispatch.
// DEVIATION: nlohmann/json outside io/ — the checkpoint layouts' JSON files are parsed here.
#include <cmath>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "saes/convert/format_readers.h"
#include "saes/convert/formats.h"
#include "saes/core/error.h"
#include "saes/dictionaries/registry.h"
#include "saes/io/atomic_file.h"
#include "saes/io/safetensors.h"

namespace saes::convert {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using dictionaries::SparseDictionaryConfig;

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <class E>
Json enum_json(E value) {
  return std::string(enum_names(value)[static_cast<std::size_t>(value)]);
}

class JsonOut {
 public:
  explicit JsonOut(bool with_device_dtype) : full_(with_device_dtype) {}
  template <class T>
  void operator()(std::string_view key, const T& value, std::string_view /*help*/) {
    if (!full_ && (key == "device" || key == "dtype")) return;
    if constexpr (std::is_enum_v<T> && !std::is_same_v<T, DType>) {
      json_[std::string(key)] = enum_json(value);
    } else if constexpr (std::is_same_v<T, DType>) {
      json_[std::string(key)] = std::string(dtype_name(value));
    } else if constexpr (IsOptional<T>::value) {
      json_[std::string(key)] = value ? Json(*value) : Json(nullptr);
    } else {
      json_[std::string(key)] = value;
    }
  }
  template <class T>
  void required(std::string_view key, const T& value, std::string_view help) {
    (*this)(key, value, help);
  }
  void unsupported(std::string_view, std::string_view) {}
  const Json& json() const { return json_; }

 private:
  bool full_;
  Json json_ = Json::object();
};

class JsonIn {
 public:
  JsonIn(const Json& json, const std::string& where) : json_(json), where_(where) {}
  template <class T>
  void operator()(std::string_view key, T& value, std::string_view /*help*/) {
    const auto it = json_.find(std::string(key));
    if (it == json_.end() || it->is_null()) return;
    try {
      read(*it, key, value);
    } catch (const nlohmann::json::exception& e) {
      SAES_THROW(DataError, "{}: key '{}': {}", where_, key, e.what());
    }
  }
  template <class T>
  void required(std::string_view key, T& value, std::string_view help) {
    SAES_CHECK(json_.contains(std::string(key)), DataError, "{}: key '{}' is missing", where_, key);
    (*this)(key, value, help);
  }
  void unsupported(std::string_view, std::string_view) {}

 private:
  template <class T>
  void read(const Json& j, std::string_view key, T& value) {
    if constexpr (std::is_same_v<T, DType>) {
      const auto d = try_parse_dtype(j.get<std::string>());
      SAES_CHECK(d.has_value(), DataError, "{}: key '{}': unknown dtype {}", where_, key, j.dump());
      value = *d;
    } else if constexpr (std::is_enum_v<T>) {
      const std::string text = j.get<std::string>();
      const auto names = enum_names(value);
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i] == text) {
          value = static_cast<T>(i);
          return;
        }
      }
      SAES_THROW(DataError, "{}: key '{}': unknown value \"{}\"", where_, key, text);
    } else if constexpr (IsOptional<T>::value) {
      value = j.get<typename T::value_type>();
    } else {
      value = j.get<T>();
    }
  }
  const Json& json_;
  const std::string& where_;
};

bool has_saes_config(const fs::path& weights) {
  return io::SafetensorsFile::open(weights).metadata().count("saes_config") != 0;
}

fs::path find_native_weights(const fs::path& input) {
  if (fs::is_regular_file(input)) return input;
  return input / kSaeLensWeightsFile;
}

}  // namespace

double expansion_factor_for(std::int64_t d_model, std::int64_t d_sae) {
  double factor = static_cast<double>(d_sae) / static_cast<double>(d_model);
  while (static_cast<std::int64_t>(static_cast<double>(d_model) * factor) < d_sae) {
    factor = std::nextafter(factor, 2.0 * factor + 1.0);
  }
  return factor;
}

std::string dictionary_config_json(const SparseDictionaryConfig& cfg, bool with_device_dtype) {
  JsonOut out(with_device_dtype);
  SparseDictionaryConfig copy = cfg;
  copy.visit_fields(out);
  return out.json().dump(2);
}

SparseDictionaryConfig parse_dictionary_config(const std::string& json, const std::string& where) {
  Json j;
  try {
    j = Json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    SAES_THROW(DataError, "{}: malformed JSON: {}", where, e.what());
  }
  SAES_CHECK(j.is_object(), DataError, "{}: expected a JSON object", where);
  SparseDictionaryConfig cfg;
  JsonIn in(j, where);
  cfg.visit_fields(in);
  return cfg;
}

InputFormat detect_format(const fs::path& input) {
  SAES_CHECK(fs::exists(input), IoError, "input {} does not exist", input.string());
  if (fs::is_regular_file(input)) {
    SAES_CHECK(input.extension() == ".safetensors", DataError,
               "input {}: expected a .safetensors file or a checkpoint folder", input.string());
    return InputFormat::kNative;
  }
  const bool weights = fs::exists(input / kSaeLensWeightsFile);
  if (weights && has_saes_config(input / kSaeLensWeightsFile)) return InputFormat::kNative;
  if (weights && fs::exists(input / kNativeConfigFile)) return InputFormat::kLmSaes;
  if (weights && fs::exists(input / kSaeLensCfgFile)) return InputFormat::kSaeLens;
  if (fs::exists(input / kSparsifyWeightsFile) && fs::exists(input / kSaeLensCfgFile)) {
    return InputFormat::kSparsify;
  }
  SAES_THROW(DataError,
             "input {}: no known dictionary layout (expected sae_weights.safetensors with "
             "config.json or cfg.json, or cfg.json + sae.safetensors); see docs/convert.md",
             input.string());
}

Imported read_dictionary(const fs::path& input, InputFormat format, const std::string& device) {
  if (format == InputFormat::kAuto) format = detect_format(input);
  SAES_CHECK(fs::exists(input), IoError, "input {} does not exist", input.string());
  Imported out;
  switch (format) {
    case InputFormat::kNative:
      out = detail::read_native(input, device);
      break;
    case InputFormat::kLmSaes:
      out = detail::read_lmsaes(input, device);
      break;
    case InputFormat::kSaeLens:
      out = detail::read_saelens(input, device);
      break;
    case InputFormat::kSparsify:
      out = detail::read_sparsify(input, device);
      break;
    case InputFormat::kAuto:
      SAES_ASSERT(false, "format was detected above");
  }
  out.format = format;
  return out;
}

namespace detail {

Imported read_native(const fs::path& input, const std::string& device) {
  const fs::path weights = find_native_weights(input);
  SAES_CHECK(fs::exists(weights), IoError, "{} does not exist", weights.string());
  const auto file = io::SafetensorsFile::open(weights);
  const auto it = file.metadata().find("saes_config");
  SAES_CHECK(it != file.metadata().end(), DataError,
             "{}: no saes_config metadata, so not a native saes checkpoint (use --from lmsaes for "
             "the original's checkpoints)",
             weights.string());
  SparseDictionaryConfig cfg =
      parse_dictionary_config(it->second, weights.string() + " saes_config");
  cfg.device = device;
  Imported out;
  out.dict = dictionaries::make_dictionary(cfg);
  out.dict->load(weights);
  return out;
}

Imported read_lmsaes(const fs::path& input, const std::string& device) {
  const fs::path cfg_path = input / kNativeConfigFile;
  const fs::path weights = input / kSaeLensWeightsFile;
  SAES_CHECK(fs::exists(cfg_path) && fs::exists(weights), IoError,
             "{}: the original's checkpoint needs config.json and sae_weights.safetensors",
             input.string());
  SparseDictionaryConfig cfg = parse_dictionary_config(io::read_file(cfg_path), cfg_path.string());
  cfg.device = device;
  const auto file = io::SafetensorsFile::open(weights);
  if (file.contains("W_E")) cfg.dtype = file.info("W_E").dtype;
  // A CLT reads its hook lists only.
  if (cfg.sae_type == dictionaries::SaeType::kClt && !cfg.hook_points_in.empty()) {
    cfg.hook_point_in.clear();
    cfg.hook_point_out.clear();
  }
  Imported out;
  out.dict = dictionaries::make_dictionary(cfg);
  out.dict->load(weights);
  return out;
}

}  // namespace detail

void write_native(const dictionaries::SparseDictionary& dict, const fs::path& dir) {
  dict.save(dir / kSaeLensWeightsFile);
  io::write_file_atomic(dir / kNativeConfigFile,
                        dictionary_config_json(dict.config(), false) + "\n");
}

}  // namespace saes::convert

// HF folder weights (single or sharded safetensors) and the model/tokenizer dispatch of
// load_language_model.
#include "saes/lm/hf_folder.h"

#include <ATen/core/Tensor.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/hf_model.h"
#include "saes/lm/llama2c_loader.h"

namespace saes::lm {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::map<std::string, fs::path> read_index(const fs::path& index_path) {
  const std::string where = index_path.string();
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(io::read_file(index_path));
  } catch (const nlohmann::json::exception& e) {
    SAES_THROW(DataError, "{}: invalid JSON: {}", where, e.what());
  }
  SAES_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
             DataError, "{}: expected an object with a \"weight_map\" object", where);
  std::map<std::string, fs::path> files;
  for (const auto& [tensor, file] : index["weight_map"].items()) {
    SAES_CHECK(file.is_string(), DataError, "{}: weight_map[\"{}\"] is not a file name", where,
               tensor);
    files[tensor] = index_path.parent_path() / file.get<std::string>();
  }
  SAES_CHECK(!files.empty(), DataError, "{}: weight_map is empty", where);
  return files;
}

TransformerOptions options_of(const LanguageModelConfig& config) {
  TransformerOptions options;
  options.dtype = config.dtype;
  options.device = parse_device(config.device);
  return options;
}

fs::path model_path(const LanguageModelConfig& config) {
  SAES_CHECK(!config.cache_dir.has_value(), UnsupportedError,
             "model.cache_dir: not supported: saes does not download models (it reads the local "
             "model_from_pretrained_path); remove it");
  SAES_CHECK(config.model_from_pretrained_path.has_value(), ConfigError,
             "model.model_from_pretrained_path: not set; saes loads models from local files (an "
             "HF folder with config.json or a llama2.c .bin) and does not download \"{}\"",
             config.model_name);
  const fs::path path = *config.model_from_pretrained_path;
  SAES_CHECK(fs::exists(path), IoError, "model {}: no such file or folder", path.string());
  return path;
}

bool is_hf_folder(const fs::path& path) {
  return fs::is_directory(path) && fs::exists(path / "config.json");
}

std::optional<int64_t> from_spec(int64_t id) {
  return id >= 0 ? std::optional<int64_t>(id) : std::nullopt;
}

}  // namespace

SafetensorsWeightSource::SafetensorsWeightSource(
    const std::map<std::string, fs::path>& tensor_files, std::string label)
    : label_(std::move(label)) {
  std::map<fs::path, std::size_t> opened;
  for (const auto& [tensor, file] : tensor_files) {
    auto it = opened.find(file);
    if (it == opened.end()) {
      SAES_CHECK(fs::exists(file), IoError, "{}: tensor \"{}\" is in {}, which is missing", label_,
                 tensor, file.string());
      files_.push_back(io::SafetensorsFile::open(file));
      it = opened.emplace(file, files_.size() - 1).first;
    }
    SAES_CHECK(files_[it->second].contains(tensor), DataError,
               "{}: tensor \"{}\" is listed for {} but that file lacks it", label_, tensor,
               file.string());
    file_of_[tensor] = it->second;
  }
}

at::Tensor SafetensorsWeightSource::get(const std::string& name) {
  auto it = file_of_.find(name);
  SAES_CHECK(it != file_of_.end(), DataError, "{}: missing tensor \"{}\"", label_, name);
  return files_[it->second].tensor(name);
}

bool SafetensorsWeightSource::contains(const std::string& name) const {
  return file_of_.count(name) != 0;
}

std::vector<std::string> SafetensorsWeightSource::names() const {
  std::vector<std::string> out;
  out.reserve(file_of_.size());
  for (const auto& [name, unused] : file_of_) out.push_back(name);
  return out;
}

std::unique_ptr<SafetensorsWeightSource> open_hf_weights(const fs::path& dir) {
  std::map<std::string, fs::path> tensor_files;
  std::string label;
  if (fs::exists(dir / kSingleFile)) {
    const fs::path file = dir / kSingleFile;
    const io::SafetensorsFile opened = io::SafetensorsFile::open(file);
    for (const auto& name : opened.names()) tensor_files[name] = file;
    label = file.string();
  } else {
    SAES_CHECK(fs::exists(dir / kIndexFile), IoError,
               "HF model folder {}: neither {} nor {} (sharded) found", dir.string(), kSingleFile,
               kIndexFile);
    tensor_files = read_index(dir / kIndexFile);
    label = (dir / kIndexFile).string();
  }
  return std::make_unique<SafetensorsWeightSource>(tensor_files, label);
}

Transformer load_hf_folder(const fs::path& dir, TransformerOptions options) {
  const fs::path config = dir / "config.json";
  SAES_CHECK(fs::exists(config), IoError, "HF model folder {}: config.json not found",
             dir.string());
  auto weights = open_hf_weights(dir);
  return load_hf_transformer(io::read_file(config), *weights, options, config.string());
}

std::unique_ptr<Tokenizer> load_language_model_tokenizer(const LanguageModelConfig& config) {
  if (config.tokenizer_path) return load_tokenizer(*config.tokenizer_path);
  const fs::path path = model_path(config);
  if (is_hf_folder(path)) return load_tokenizer(path);
  for (const char* name : {"tok512.bin", "tokenizer.bin"}) {
    const fs::path candidate = path.parent_path() / name;
    if (fs::exists(candidate)) return load_tokenizer(candidate);
  }
  SAES_THROW(IoError,
             "model {}: no tokenizer: set model.tokenizer_path or put tok512.bin or tokenizer.bin "
             "beside it",
             path.string());
}

Transformer load_model_files(const LanguageModelConfig& config, const fs::path& path) {
  const TransformerOptions options = options_of(config);
  if (is_hf_folder(path)) return load_hf_folder(path, options);
  SAES_CHECK(!fs::is_directory(path), IoError,
             "model folder {}: config.json not found (expected a Hugging Face folder)",
             path.string());
  SAES_CHECK(path.extension() == ".bin", UnsupportedError,
             "model {}: expected a Hugging Face folder (config.json + model.safetensors) or a "
             "llama2.c .bin checkpoint",
             path.string());
  return load_llama2c(path, options);
}

ModelSet LanguageModel::model_set() const {
  return checkpoints.empty() ? ModelSet(model) : ModelSet(checkpoints);
}

LanguageModel load_language_model(const LanguageModelConfig& config, bool need_tokenizer) {
  const fs::path path = model_path(config);
  Transformer model = load_model_files(config, path);
  std::unique_ptr<Tokenizer> tokenizer;
  try {
    tokenizer = load_language_model_tokenizer(config);
  } catch (const IoError&) {
    if (need_tokenizer) throw;  // a model without one still runs on token ids
  }
  SpecialTokenIds ids;
  const SpecialTokenIds known = tokenizer ? tokenizer->special_ids() : SpecialTokenIds{};
  ids.bos = config.bos_token_id ? config.bos_token_id : known.bos;
  if (!ids.bos) ids.bos = from_spec(model.spec().bos_token_id);
  ids.eos = config.eos_token_id ? config.eos_token_id : known.eos;
  if (!ids.eos) ids.eos = from_spec(model.spec().eos_token_id);
  if (!ids.bos) ids.bos = ids.eos;
  ids.pad = config.pad_token_id ? config.pad_token_id : known.pad;
  if (!ids.pad) ids.pad = ids.eos;
  CheckpointModels checkpoints = load_checkpoints(config, model, path);
  return LanguageModel{std::move(model), std::move(tokenizer), ids, std::move(checkpoints)};
}

}  // namespace saes::lm

// Loading models from disk: a WeightSource over a Hugging Face folder's safetensors files (single
// or sharded via model.safetensors.index.json), and load_language_model(), which picks HF folder or
// llama2.c checkpoint from LanguageModelConfig and returns the model with its tokenizer.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "saes/io/safetensors.h"
#include "saes/lm/config.h"
#include "saes/lm/model_set.h"
#include "saes/lm/tokenizer.h"
#include "saes/lm/transformer.h"
#include "saes/lm/weight_source.h"

namespace saes::lm {

/// Tensors of one or more safetensors files (each file opened once, memory-mapped).
class SafetensorsWeightSource : public WeightSource {
 public:
  /// `tensor_files`: tensor name -> file; `label` names the source in errors.
  SafetensorsWeightSource(const std::map<std::string, std::filesystem::path>& tensor_files,
                          std::string label);
  at::Tensor get(const std::string& name) override;
  bool contains(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string describe() const override { return label_; }

 private:
  std::vector<io::SafetensorsFile> files_;
  std::map<std::string, std::size_t> file_of_;  ///< tensor name -> index into files_
  std::string label_;
};

/// The weights of HF folder `dir`: `model.safetensors`, else `model.safetensors.index.json`
/// (weight_map: tensor -> file). Throws IoError naming the folder and what was looked for when
/// neither exists, DataError for a malformed index or a file it names that is missing.
std::unique_ptr<SafetensorsWeightSource> open_hf_weights(const std::filesystem::path& dir);

/// `dir`/config.json + open_hf_weights(dir) -> Transformer.
Transformer load_hf_folder(const std::filesystem::path& dir, TransformerOptions options = {});

/// The model at `path` (a folder with config.json -> Hugging Face; a `.bin` file -> llama2.c) in
/// config's dtype on config's device. IoError naming the path and the missing piece.
Transformer load_model_files(const LanguageModelConfig& config, const std::filesystem::path& path);

/// A loaded model with its tokenizer and the special ids to use (config overrides win, then the
/// tokenizer's, then the model config's; pad falls back to EOS).
struct LanguageModel {
  Transformer model;
  std::unique_ptr<Tokenizer> tokenizer;
  SpecialTokenIds special_ids;
  CheckpointModels checkpoints;  ///< config.checkpoints loaded (load_checkpoints); may be empty

  /// The models whose hook points the run reads: the checkpoints when there are any, else
  /// `model`. Refers to this object's models (it must outlive the set).
  ModelSet model_set() const;
};

/// Loads `config.model_from_pretrained_path`: a folder with config.json -> Hugging Face; a `.bin`
/// file -> llama2.c. The tokenizer comes from `tokenizer_path`, else the HF folder itself, else
/// `tok512.bin` / `tokenizer.bin` beside the llama2.c file. dtype and device from the config.
/// Throws ConfigError when no path is set, IoError naming the path and the missing piece. With
/// `need_tokenizer` false a model without a tokenizer loads too (tokenizer null; special ids
/// from the config, then the model's config) — for work on token ids only. Also loads
/// config.checkpoints (load_checkpoints).
LanguageModel load_language_model(const LanguageModelConfig& config, bool need_tokenizer = true);

/// The tokenizer load_language_model would use, without loading the model.
std::unique_ptr<Tokenizer> load_language_model_tokenizer(const LanguageModelConfig& config);

}  // namespace saes::lm

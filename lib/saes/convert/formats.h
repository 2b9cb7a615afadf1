// Reading and writing dictionaries in every layout saes-convert knows (docs/formats.md "Dictionary
// layouts"): saes' native folder, the original's checkpoints, SAELens v5/v6 and sparsify. All
// readers return a SparseAutoEncoder whose forward on raw activations matches the source's.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <ATen/core/Tensor.h>

#include "saes/convert/config.h"
#include "saes/dictionaries/sae.h"

namespace saes::convert {

/// Where the dictionary's activations came from; written into SAELens metadata, read back.
struct Provenance {
  std::optional<std::string> model_name;
  std::optional<std::int64_t> context_size;
  std::optional<bool> prepend_bos;
  std::optional<std::string> dataset_path;
  bool operator==(const Provenance&) const = default;
};

/// A dictionary read from disk, with what the source said about its activations.
struct Imported {
  /// Any variant for native and the original's folders (a CLT too); an SAE for the others.
  std::unique_ptr<dictionaries::SparseDictionary> dict;
  Provenance provenance;
  InputFormat format = InputFormat::kAuto;
  /// SAELens' sparsity.safetensors (float32 [d_sae]) when the folder has one, else undefined.
  at::Tensor sparsity;
};

inline constexpr const char* kSaeLensCfgFile = "cfg.json";
inline constexpr const char* kSaeLensWeightsFile = "sae_weights.safetensors";
inline constexpr const char* kSaeLensSparsityFile = "sparsity.safetensors";
inline constexpr const char* kNativeConfigFile = "config.json";
inline constexpr const char* kSparsifyWeightsFile = "sae.safetensors";

/// The layout of `input` from the files present: a .safetensors file or a folder whose
/// sae_weights.safetensors carries `saes_config` metadata → native; config.json +
/// sae_weights.safetensors → lmsaes; cfg.json + sae_weights.safetensors → saelens; cfg.json +
/// sae.safetensors → sparsify. Throws IoError if `input` does not exist, DataError if no layout
/// fits.
InputFormat detect_format(const std::filesystem::path& input);

/// Reads `input` in `format` (kAuto: detect_format) onto `device`. Throws DataError (one line,
/// naming file and key/tensor) for inconsistent shapes or configs, UnsupportedError for
/// architectures saes cannot represent exactly.
Imported read_dictionary(const std::filesystem::path& input,
                         InputFormat format = InputFormat::kAuto,
                         const std::string& device = "cpu");

/// Writes `dir`/sae_weights.safetensors (native, with fold state) and `dir`/config.json (the
/// original's key set, so its loaders read the folder too). `dir` must exist.
void write_native(const dictionaries::SparseDictionary& dict, const std::filesystem::path& dir);

/// Writes a SAELens folder (cfg.json + sae_weights.safetensors, byte layout of peers.md §1) into
/// the existing `dir`: dataset-wise scaling folded in (normalize_activations "none"), JumpReLU
/// thresholds divided by decoder norms when gated. `saelens_version` 6 writes the nested v6 cfg,
/// 5 the flat v5 one. Throws UnsupportedError for batchtopk (convert to jumprelu first),
/// batch-wise normalization, GLU encoders, TopK transcoders and v5 transcoders.
void write_saelens(const dictionaries::SparseAutoEncoder& dict, const Provenance& provenance,
                   const std::filesystem::path& dir, std::int64_t saelens_version = 6);

/// The dictionary config as the original's config.json (no device/dtype) or, with
/// `with_device_dtype`, the full set.
std::string dictionary_config_json(const dictionaries::SparseDictionaryConfig& cfg,
                                   bool with_device_dtype);
/// Parses a JSON object of SparseDictionaryConfig keys (unknown keys are ignored; enum and type
/// errors are DataErrors naming `where` and the key).
dictionaries::SparseDictionaryConfig parse_dictionary_config(const std::string& json,
                                                             const std::string& where);

/// expansion_factor for which int(d_model * factor) == d_sae exactly (float rounding safe).
double expansion_factor_for(std::int64_t d_model, std::int64_t d_sae);

}  // namespace saes::convert

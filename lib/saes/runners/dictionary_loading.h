// Loading a trained dictionary of any variant for the tools that read one (saes-analyze, probe):
// a saes-train run folder (config.resolved.yaml + sae_weights.safetensors), its weights file, or
// any layout saes-convert reads (SAELens, sparsify, the original's folders: SAEs).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "saes/core/dtype.h"
#include "saes/dictionaries/feature_parallel.h"

namespace saes::dictionaries {
class SparseDictionary;
}  // namespace saes::dictionaries

namespace saes::runners {

struct DictionaryLoad {
  std::string device = "cpu";
  DType dtype = DType::kFloat32;
  bool strict_loading = true;
  dictionaries::FeatureShard shard;  ///< the features this rank holds (all by default)
};

/// The dictionary at `path`. A run folder (or a weights file beside config.resolved.yaml) gives
/// the config of its run, with the fold state and gating flag of its weights file; otherwise
/// the saes-convert readers are tried (one-hook dictionaries only, not sharded). Throws IoError
/// naming the path when nothing is there, DataError for an unknown layout.
std::unique_ptr<dictionaries::SparseDictionary> load_trained_dictionary(
    const std::filesystem::path& path, const DictionaryLoad& options);

}  // namespace saes::runners

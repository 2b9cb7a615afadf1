// Internal: the per-layout readers behind read_dictionary (formats.h), one per source layout.
#pragma once

#include <filesystem>
#include <string>

#include "saes/convert/formats.h"

namespace saes::convert::detail {

/// A native .safetensors file, or a folder holding sae_weights.safetensors (saes_config metadata).
Imported read_native(const std::filesystem::path& input, const std::string& device);
/// The original's folder: config.json + sae_weights.safetensors (dataset norms inside).
Imported read_lmsaes(const std::filesystem::path& input, const std::string& device);
/// A SAELens v5/v6 folder: cfg.json + sae_weights.safetensors.
Imported read_saelens(const std::filesystem::path& input, const std::string& device);
/// A sparsify hookpoint folder: cfg.json + sae.safetensors (run config.json in the parent).
Imported read_sparsify(const std::filesystem::path& input, const std::string& device);

}  // namespace saes::convert::detail

// SAELens' optional sparsity.safetensors (peers.md §1.1): one float32 tensor `sparsity` [d_sae]
// holding log10(feature firing frequency + 1e-10), made from an analysis database or read back.
#pragma once

#include <cstdint>
#include <filesystem>

#include <ATen/core/Tensor.h>

namespace saes::convert {

/// The offset SAELens adds before log10, so dead features read log10(1e-10) = -10.
inline constexpr double kSparsityEpsilon = 1e-10;

/// log10(frequency + 1e-10) per feature (float32 [d_sae], CPU) from the analysis database at `db`
/// (saes-analyze's default.sqlite). Throws IoError if `db` does not exist or cannot be read,
/// DataError if its d_sae differs from `d_sae` (naming both) or it is not an analysis database.
at::Tensor sparsity_from_analysis(const std::filesystem::path& db, std::int64_t d_sae);

/// Writes `sparsity` as `dir`/sparsity.safetensors (one tensor named `sparsity`), atomically.
void write_saelens_sparsity(const at::Tensor& sparsity, const std::filesystem::path& dir);

/// `dir`/sparsity.safetensors as float32 [d_sae], or an undefined tensor when the file is absent.
/// Throws DataError (naming the file) without a `sparsity` tensor, with another shape, with a
/// non-float dtype or with other tensors.
at::Tensor read_saelens_sparsity(const std::filesystem::path& dir, std::int64_t d_sae);

}  // namespace saes::convert

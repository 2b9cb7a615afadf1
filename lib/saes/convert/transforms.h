// Function-preserving rewrites of a SparseAutoEncoder for saes-convert: copy under a changed
// config (dtype cast, activation function), TopK → JumpReLU (spec §3.3) and bias/norm folds.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "saes/dictionaries/sae.h"

namespace saes::convert {

/// Parameter tensors by checkpoint name (W_E, b_E, W_D, b_D, ...), as views of `dict`'s tensors.
std::map<std::string, at::Tensor> named_parameters(const dictionaries::SparseAutoEncoder& dict);

/// A new dictionary with config `cfg` whose parameters are copied (and cast) from `src` by name,
/// with src's dataset norms and fold state. Parameters that `cfg` has and `src` lacks stay zero.
std::unique_ptr<dictionaries::SparseAutoEncoder> copy_with_config(
    const dictionaries::SparseAutoEncoder& src, dictionaries::SparseDictionaryConfig cfg);

/// copy_with_config with only the dtype changed.
std::unique_ptr<dictionaries::SparseAutoEncoder> cast_dtype(
    const dictionaries::SparseAutoEncoder& src, DType dtype);

/// What topk_to_jumprelu measured.
struct JumpReluReport {
  double threshold = 0.0;  ///< the global θ: the (k·rows)-th largest gated pre-activation
  double l0 = 0.0;         ///< mean active features per token of the result on `check`
  double topk_l0 = 0.0;    ///< the same for the TopK source
  double reconstruction_diff = 0.0;  ///< mean over tokens of Σ_d (x̂_jumprelu − x̂_topk)²
};

/// Spec §3.3 for SAEs: on `fit` (RAW input activations [rows, d_model]) take the normalized
/// pre-activations (× decoder norms when gated), clamped ≥ 0, and θ = their (k·rows)-th largest
/// value; the result is a jumprelu dictionary with log θ_i = log(θ / n_i) when gated (gating then
/// switched off) or log θ. Measures L0 and the reconstruction difference on `check`. Throws
/// ConfigError unless act_fn is topk or batchtopk, DataError for empty or mis-shaped batches.
std::unique_ptr<dictionaries::SparseAutoEncoder> topk_to_jumprelu(
    const dictionaries::SparseAutoEncoder& src, const at::Tensor& fit, const at::Tensor& check,
    JumpReluReport* report = nullptr);

}  // namespace saes::convert

// Function-preserving rewrites of a dictionary (any variant) for saes-convert: copy under a
// changed config (dtype cast, activation function) and TopK → JumpReLU (spec §3.3).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "saes/dictionaries/sae.h"
#include "saes/dictionaries/sparse_dictionary.h"

namespace saes::convert {

/// Parameter tensors by checkpoint name (W_E, b_E, W_D, W_D.{t}, ...), as views of `dict`'s.
std::map<std::string, at::Tensor> named_parameters(const dictionaries::SparseDictionary& dict);

/// A new dictionary (the registry's variant for cfg.sae_type) with config `cfg` whose parameters
/// are copied (and cast) from `src` by name, with src's dataset norms. Parameters that `cfg` has
/// and `src` lacks stay zero.
std::unique_ptr<dictionaries::SparseDictionary> copy_with_config(
    const dictionaries::SparseDictionary& src, dictionaries::SparseDictionaryConfig cfg);
/// The same for an SAE, typed.
std::unique_ptr<dictionaries::SparseAutoEncoder> copy_with_config(
    const dictionaries::SparseAutoEncoder& src, dictionaries::SparseDictionaryConfig cfg);

/// copy_with_config with only the dtype changed.
std::unique_ptr<dictionaries::SparseDictionary> cast_dtype(
    const dictionaries::SparseDictionary& src, DType dtype);

/// What topk_to_jumprelu measured.
struct JumpReluReport {
  double threshold = 0.0;  ///< the global θ: the (k·rows)-th largest gated pre-activation
  std::int64_t kept = 0;   ///< k·rows: how many entries θ keeps on the fitting batch
  double l0 = 0.0;         ///< mean active features per token of the result on `check`
  double topk_l0 = 0.0;    ///< the same for the TopK source
  double reconstruction_diff = 0.0;  ///< mean over tokens of Σ (ŷ_jumprelu − ŷ_topk)² (all outputs)
};

/// Spec §3.3: on `fit` (RAW activations of the input hooks, [rows, d_model] each) take the
/// normalized pre-activations (× decoder norms when gated), clamped ≥ 0, and θ = their
/// (k·rows)-th largest value over every (row, layer, feature) entry; the result is a jumprelu
/// dictionary with log θ = log(θ / N) per feature (N its decoder norm; a CLT: N[l, i]) when
/// gated (gating then switched off), else log θ. k per row is the source's active count: top_k,
/// times the layers for a CLT's topk/batchtopk (k per layer; the original uses k·rows for every
/// CLT variant, which targets L0 k instead of the source's k·L). Measures L0 and the
/// reconstruction difference on `check`. ConfigError unless act_fn is of the TopK family;
/// DataError for empty or mis-shaped batches or θ ≤ 0.
std::unique_ptr<dictionaries::SparseDictionary> topk_to_jumprelu(
    const dictionaries::SparseDictionary& src, const dictionaries::HookActs& fit,
    const dictionaries::HookActs& check, JumpReluReport* report = nullptr);
/// An SAE's single input hook: `fit` and `check` are its raw rows.
std::unique_ptr<dictionaries::SparseDictionary> topk_to_jumprelu(
    const dictionaries::SparseAutoEncoder& src, const at::Tensor& fit, const at::Tensor& check,
    JumpReluReport* report = nullptr);

/// Source layer `layer` of a CLT as an SAE transcoder (hook_points_in[layer] →
/// hook_points_out[layer]): W_E[layer], b_E[layer], the same-layer decoder W_D[layer][layer],
/// b_D[layer], log θ[layer] and the two hooks' dataset norms; its output is exactly the CLT's
/// same-layer part, Σ_i f[layer, i]·W_D[layer][layer, i] + b_D[layer]. With decoder-norm gating
/// (which ranks by the CLT's N[l, i] over all targets) features are re-parametrized to f·N and
/// gating is switched off, so the SAE selects the same entries. The writes into later layers
/// (W_D[t][layer], t > layer) have no place in an SAE: `dropped` (if given) receives their share
/// of the layer's squared decoder norm. ConfigError for another variant or a layer out of
/// range; UnsupportedError for layertopk/batchlayertopk (they select across layers: convert
/// with topk_to_jumprelu first).
std::unique_ptr<dictionaries::SparseAutoEncoder> clt_layer_transcoder(
    const dictionaries::SparseDictionary& src, std::int64_t layer, double* dropped = nullptr);

}  // namespace saes::convert

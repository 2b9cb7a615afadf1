// Dictionary initialization (spec §4): random init, W_E = factor·W_Dᵀ, decoder-bias init from the
// mean, decoder-norm grid search and encoder-bias init on one batch. Steps that read the stream
// (dataset norms, the one search batch) are the caller's: it passes the batch in.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "saes/training/config.h"

namespace at {
class Generator;
class Tensor;
}  // namespace at

namespace saes {
class Logger;
namespace dictionaries {
class SparseDictionary;
}  // namespace dictionaries
}  // namespace saes

namespace saes::training {

/// Spec §4 steps 2–3: uniform init with the configured bounds (biases 0, JumpReLU log θ filled
/// from init_log_jumprelu_threshold_value — ConfigError if it is missing for jumprelu), then
/// W_E ← factor·W_Dᵀ when init_encoder_with_decoder_transpose. All randomness from `gen`.
void initialize_parameters(dictionaries::SparseDictionary& dict, const InitializerConfig& cfg,
                           at::Generator& gen);

/// Spec §4 step 9 on one RAW batch (hook point → [n_tokens, d_model] rows of every hook the
/// dictionary reads), normalized and laid out here by dict.prepare_input / prepare_label: b_D ←
/// mean(label) for geometric_median; decoder-norm grid search when grid_search_init_norm (coarse
/// linspace(0.1, 5.0, 50), then fine linspace(v−0.09, v+0.1, 20), scored by mean l_rec with k =
/// top_k); then W_E ← factor·W_Dᵀ (if enabled) and b_E ← b_E − mean(hidden_pre) (if
/// init_encoder_bias_with_mean_hidden_pre). Returns the chosen decoder norm (0 when no search ran).
/// Logs the best coarse and fine norms.
double initialization_search(dictionaries::SparseDictionary& dict, const InitializerConfig& cfg,
                             const std::map<std::string, at::Tensor>& raw, Logger& logger);

/// The grids of spec §4: coarse linspace(0.1, 5.0, 50); fine linspace(best−0.09, best+0.1, 20).
std::vector<double> coarse_norm_grid();
std::vector<double> fine_norm_grid(double best_coarse);

}  // namespace saes::training

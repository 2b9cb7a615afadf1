// Greedy decoding on a Transformer (re-runs the full forward each step; no KV cache).
#pragma once

#include <cstdint>
#include <vector>

#include "saes/lm/transformer.h"

namespace saes::lm {

/// Returns prompt followed by `n_new` argmax tokens. Throws ConfigError when the prompt is empty or
/// prompt + n_new exceeds the model's n_ctx.
std::vector<int64_t> generate_greedy(const Transformer& model, const std::vector<int64_t>& prompt,
                                     int64_t n_new);

}  // namespace saes::lm

// Rotary position embeddings for the engine: inverse frequencies (plain or Llama-3 scaled) and the
// rotation of q/k in either pair layout (interleaved as llama2.c, half-split as NeoX / HF Llama).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "saes/lm/model_config.h"

namespace saes::lm {

/// inv_freq[i] = rope_theta^(-2i / rotary_dim) for i < rotary_dim / 2, then Llama-3 scaling when
/// spec.llama3_scaling.enabled (three bands: wavelength < original/high_freq_factor unchanged,
/// > original/low_freq_factor divided by factor, interpolated smoothly in between).
std::vector<float> rotary_inverse_frequencies(const TransformerSpec& spec);
/// The same frequencies in double precision (rotary_inverse_frequencies rounds these to float).
std::vector<double> rotary_inverse_frequencies_f64(const TransformerSpec& spec);
/// The frequencies of `rope` (theta, Llama-3 scaling, then the linear factor) for rotary_dim.
std::vector<double> rotary_inverse_frequencies_f64(int64_t rotary_dim, const RopeParameters& rope);

/// x: [batch, seq, heads, d_head]; cos/sin: [batch, seq, 1, rotary_dim / 2] in x's dtype. Rotates
/// the first rotary_dim dims of each head, leaves the rest unchanged.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                        int64_t rotary_dim, RopeStyle style);

}  // namespace saes::lm

// Rotary embedding frequencies and rotation (HF modeling_rope_utils / llama2.c run.c conventions).
#include "saes/lm/transformer_rotary.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/stack.h>

#include <cmath>

namespace saes::lm {

std::vector<float> rotary_inverse_frequencies(const TransformerSpec& spec) {
  const std::vector<double> wide = rotary_inverse_frequencies_f64(spec);
  return std::vector<float>(wide.begin(), wide.end());
}

std::vector<double> rotary_inverse_frequencies_f64(const TransformerSpec& spec) {
  return rotary_inverse_frequencies_f64(spec.rotary_dim, global_rope(spec));
}

std::vector<double> rotary_inverse_frequencies_f64(int64_t rotary_dim, const RopeParameters& rope) {
  const int64_t half = rotary_dim / 2;
  std::vector<double> out(static_cast<std::size_t>(half));
  const Llama3RopeScaling& s = rope.llama3_scaling;
  const double pi = std::acos(-1.0);
  for (int64_t i = 0; i < half; ++i) {
    double inv_freq =
        1.0 / std::pow(rope.theta, static_cast<double>(2 * i) / static_cast<double>(rotary_dim));
    if (s.enabled) {
      const double old_len = static_cast<double>(s.original_max_position_embeddings);
      const double wavelen = 2.0 * pi / inv_freq;
      if (wavelen > old_len / s.low_freq_factor) {
        inv_freq /= s.factor;
      } else if (wavelen >= old_len / s.high_freq_factor) {
        const double smooth =
            (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        inv_freq = (1.0 - smooth) * inv_freq / s.factor + smooth * inv_freq;
      }
    }
    out[static_cast<std::size_t>(i)] = inv_freq / rope.linear_factor;
  }
  return out;
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                        int64_t rotary_dim, RopeStyle style) {
  const int64_t d_head = x.size(-1);
  const int64_t half = rotary_dim / 2;
  const at::Tensor rot = x.narrow(-1, 0, rotary_dim);
  at::Tensor rotated;
  if (style == RopeStyle::kInterleaved) {
    const at::Tensor pairs = rot.reshape({x.size(0), x.size(1), x.size(2), half, 2});
    const at::Tensor a = pairs.select(-1, 0);
    const at::Tensor b = pairs.select(-1, 1);
    rotated = at::stack({a * cos - b * sin, a * sin + b * cos}, -1).flatten(-2);
  } else {
    const at::Tensor a = rot.narrow(-1, 0, half);
    const at::Tensor b = rot.narrow(-1, half, half);
    rotated = at::cat({a * cos - b * sin, b * cos + a * sin}, -1);
  }
  if (rotary_dim == d_head) return rotated;
  return at::cat({rotated, x.narrow(-1, rotary_dim, d_head - rotary_dim)}, -1);
}

}  // namespace saes::lm

// attend(): batch items (or heads of one item) at a time; every slice of the contiguous operands
// is contiguous, which keeps bmm on its BLAS path (strided batches fall back to a slow loop for
// small d_head).
#include "saes/lm/transformer_attention.h"

#include <algorithm>
#include <limits>

#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/tanh.h>
#include <ATen/TensorOperators.h>

namespace saes::lm {

at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& blocked, std::int64_t slice_bytes, double softcap) {
  const std::int64_t batch = q.size(0);
  const std::int64_t heads = q.size(1);
  const std::int64_t seq = q.size(2);
  if (slice_bytes <= 0) {
    slice_bytes = q.is_cpu() ? kAttentionSliceBytesCpu : kAttentionSliceBytesAccelerator;
  }
  const std::int64_t head_bytes = std::max<std::int64_t>(1, seq * seq * 4);
  const std::int64_t heads_per_slice = std::clamp<std::int64_t>(slice_bytes / head_bytes, 1, heads);
  const std::int64_t items_per_slice =
      heads_per_slice < heads ? 1 : std::max<std::int64_t>(1, slice_bytes / (head_bytes * heads));
  at::Tensor z = at::empty(q.sizes(), v.options());
  for (std::int64_t b0 = 0; b0 < batch; b0 += items_per_slice) {
    const std::int64_t nb = std::min(items_per_slice, batch - b0);
    const at::Tensor mask = blocked.size(0) == 1 ? blocked : blocked.narrow(0, b0, nb);
    for (std::int64_t h0 = 0; h0 < heads; h0 += heads_per_slice) {
      const std::int64_t nh = std::min(heads_per_slice, heads - h0);
      const auto slice = [&](const at::Tensor& t) { return t.narrow(0, b0, nb).narrow(1, h0, nh); };
      at::Tensor scores = at::matmul(slice(q), slice(k).transpose(-1, -2)).to(at::kFloat);
      if (softcap > 0) scores = at::tanh(scores / softcap) * softcap;
      // A finite fill keeps rows that see no real key (padding queries) finite, so 0-weight
      // products with their values never make NaNs leak into real tokens.
      scores.masked_fill_(mask, std::numeric_limits<float>::lowest());
      const at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type());
      slice(z).copy_(at::matmul(probs, slice(v)));
    }
  }
  return z;
}

at::Tensor attention_pattern(const at::Tensor& q, const at::Tensor& k, const at::Tensor& blocked,
                             double softcap) {
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)).to(at::kFloat);
  if (softcap > 0) scores = at::tanh(scores / softcap) * softcap;
  scores = scores.masked_fill(blocked, std::numeric_limits<float>::lowest());
  return at::softmax(scores, -1);
}

}  // namespace saes::lm

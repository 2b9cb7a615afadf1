// Scaled dot-product attention for the engine, written by hand (LibTorch 1.13 has no fused
// kernel), in slices small enough that the score tensors are reused from the heap and stay in
// cache.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace saes::lm {

/// Bytes of fp32 attention scores attend() computes at once by default on the CPU. glibc serves
/// every allocation above 32 MiB with a fresh mmap, so whole-batch scores (16 contexts x 8 heads x
/// 256 x 256 floats = 32 MiB on stories260K) cost page faults and kernel page clears three times
/// per layer, 40% of saes-generate's CPU before slicing.
inline constexpr std::int64_t kAttentionSliceBytesCpu = std::int64_t{8} << 20;
/// The same on other devices (CUDA): the caching allocator has no such cost and every slice is a
/// few kernel launches, so slices are large; they only bound memory for long contexts (8 x 32
/// heads x 4096^2 floats would be 17 GB at once).
inline constexpr std::int64_t kAttentionSliceBytesAccelerator = std::int64_t{512} << 20;

/// softmax(q k^T, keys masked by `blocked`) v for contiguous [batch, heads, seq, d_head] q (already
/// scaled by 1/sqrt(d_head)), k and v; `blocked` is [batch or 1, 1, seq, seq] bool, true = may not
/// attend. Scores and softmax are fp32 whatever the input dtype; blocked keys get the lowest finite
/// float, so a row with no visible key stays finite. Works through whole batch items at a time, or
/// through heads of one item when one item's scores exceed `slice_bytes` (0: the default for q's
/// device, above); the result does not depend on the slicing. Returns [batch, heads, seq, d_head]
/// in v's dtype. softcap > 0: scores ← softcap·tanh(scores / softcap) before the mask (Gemma 2).
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& blocked, std::int64_t slice_bytes = 0,
                  double softcap = 0.0);

/// The probabilities attend() multiplies v with, as one [batch, heads, seq, seq] float32 tensor
/// (the same scores, soft-capping, mask and softmax; no slicing): what a frozen forward records.
at::Tensor attention_pattern(const at::Tensor& q, const at::Tensor& k, const at::Tensor& blocked,
                             double softcap = 0.0);

}  // namespace saes::lm

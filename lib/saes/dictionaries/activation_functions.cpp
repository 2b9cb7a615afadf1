// ReLU, JumpReLU, TopK and BatchTopK as activation masks, and the JumpReLU straight-through
// threshold gradient (spec §3.1–3.3). TopK: at::topk; BatchTopK: a parallel radix select on the CPU
// (float/double), at::topk elsewhere.
#include "saes/dictionaries/activation_functions.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/lt.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>

#include "saes/core/error.h"

namespace saes::dictionaries {
namespace {

bool use_kernels(SparseBackend backend, const at::Tensor& s) {
  return backend == SparseBackend::kAuto && s.device().is_cpu() &&
         (s.scalar_type() == at::kFloat || s.scalar_type() == at::kDouble);
}

template <typename T>
using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

/// The top 16 bits of a positive float, monotonic in its value.
template <typename T>
std::size_t radix_bin(T v) {
  Bits<T> b;
  std::memcpy(&b, &v, sizeof(T));
  return static_cast<std::size_t>(b >> (8 * sizeof(T) - 16));
}

/// Flat ranges of the parallel passes: a fixed count per thread count.
struct Chunks {
  std::int64_t n, count, size;
  explicit Chunks(std::int64_t total)
      : n(total),
        count(std::max<std::int64_t>(
            1, std::min<std::int64_t>(total / 4096 + 1, 4 * at::get_num_threads()))),
        size((total + count - 1) / count) {}
  template <typename Fn>
  void run(const Fn& fn) const {
    at::parallel_for(0, count, 1, [&](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t c = c0; c < c1; ++c)
        fn(c, std::min(c * size, n), std::min((c + 1) * size, n));
    });
  }
};

template <typename T>
void batch_top_k_kernel(const T* s, std::int64_t total, std::int64_t kk, bool* mask) {
  constexpr std::size_t kBins = 1 << 16;
  const Chunks chunks(total);
  const auto nc = static_cast<std::size_t>(chunks.count);
  std::vector<std::int64_t> hist(nc * kBins, 0);
  chunks.run([&](std::int64_t c, std::int64_t b, std::int64_t e) {
    std::int64_t* h = hist.data() + static_cast<std::size_t>(c) * kBins;
    for (std::int64_t i = b; i < e; ++i) {
      if (s[i] > 0) ++h[radix_bin(s[i])];
    }
  });
  std::vector<std::int64_t> sum(kBins, 0);
  for (std::size_t c = 0; c < nc; ++c) {
    for (std::size_t i = 0; i < kBins; ++i) sum[i] += hist[c * kBins + i];
  }
  std::size_t bin = kBins;  // the bin holding the kk-th largest positive entry
  std::int64_t above = 0;
  while (bin > 0 && above + sum[bin - 1] < kk) above += sum[--bin];
  if (bin == 0) {  // at most kk positive entries: all of them
    chunks.run([&](std::int64_t, std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) mask[i] = s[i] > 0;
    });
    return;
  }
  --bin;
  std::vector<std::vector<T>> in_bin(nc);
  chunks.run([&](std::int64_t c, std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      if (s[i] > 0 && radix_bin(s[i]) == bin) in_bin[static_cast<std::size_t>(c)].push_back(s[i]);
    }
  });
  std::vector<T> vals;
  for (const auto& v : in_bin) vals.insert(vals.end(), v.begin(), v.end());
  const std::int64_t need = kk - above;  // 1..|bin|
  std::nth_element(vals.begin(), vals.begin() + (need - 1), vals.end(), std::greater<T>());
  const T thr = vals[static_cast<std::size_t>(need - 1)];
  std::int64_t ties = need - std::count_if(vals.begin(), vals.end(), [&](T v) { return v > thr; });
  std::vector<std::int64_t> budget(nc);  // entries equal to thr each chunk may take, in order
  for (std::size_t c = 0; c < nc; ++c) {
    const auto eq = std::count(in_bin[c].begin(), in_bin[c].end(), thr);
    budget[c] = std::min<std::int64_t>(eq, ties);
    ties -= budget[c];
  }
  chunks.run([&](std::int64_t c, std::int64_t b, std::int64_t e) {
    std::int64_t left = budget[static_cast<std::size_t>(c)];
    for (std::int64_t i = b; i < e; ++i) mask[i] = s[i] > thr || (s[i] == thr && left-- > 0);
  });
}

/// Mask of the k largest entries of ReLU(s) along the last dim of `s2` ([rows, n]), and s > 0.
at::Tensor top_entries(const at::Tensor& s2, std::int64_t k, SparseBackend backend) {
  const std::int64_t n = s2.size(-1);
  SAES_CHECK(k >= 1 && k <= n, ConfigError, "top-k: k must be in 1..{}, got {}", n, k);
  if (use_kernels(backend, s2) && s2.dim() == 2) {  // one pass: the picks with a positive score
    const auto [vals, idx] = row_top_k(s2, k);
    const at::Tensor v = vals.to(at::kDouble);
    at::Tensor mask = at::empty(s2.sizes(), s2.options().dtype(at::kBool));
    bool* m = mask.data_ptr<bool>();
    const double* pv = v.data_ptr<double>();
    const std::int64_t* pi = idx.data_ptr<std::int64_t>();
    at::parallel_for(0, s2.size(0), 64, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        std::fill(m + r * n, m + (r + 1) * n, false);
        for (std::int64_t j = r * k; j < (r + 1) * k; ++j) m[r * n + pi[j]] = pv[j] > 0;
      }
    });
    return mask;
  }
  const at::Tensor idx = std::get<1>(row_top_k(at::relu(s2), k));
  at::Tensor mask = at::zeros(s2.sizes(), s2.options().dtype(at::kBool));
  mask.scatter_(-1, idx, true);
  return at::logical_and(mask, at::gt(s2, 0));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> row_top_k(const at::Tensor& scores, std::int64_t k) {
  SAES_CHECK(scores.dim() == 2 && k >= 1 && k <= scores.size(1), ConfigError,
             "top-k: expected [rows, m] scores and k in 1..m, got {} dims and k {}", scores.dim(),
             k);
  return at::topk(scores, k, -1, true, false);
}

at::Tensor batch_top_k_mask(const at::Tensor& scores, std::int64_t kk, SparseBackend backend) {
  SAES_CHECK(kk >= 1, ConfigError, "batch top-k: expected kk >= 1, got {}", kk);
  const std::int64_t total = scores.numel();
  if (!use_kernels(backend, scores)) {
    return top_entries(scores.reshape({1, total}), std::min(kk, total), backend)
        .view(scores.sizes());
  }
  const at::Tensor s = scores.contiguous();
  at::Tensor mask = at::empty(s.sizes(), s.options().dtype(at::kBool));
  if (s.scalar_type() == at::kFloat) {
    batch_top_k_kernel(s.data_ptr<float>(), total, kk, mask.data_ptr<bool>());
  } else {
    batch_top_k_kernel(s.data_ptr<double>(), total, kk, mask.data_ptr<bool>());
  }
  return mask;
}

at::Tensor activation_mask(ActFn act_fn, const at::Tensor& s, const at::Tensor& log_threshold,
                           std::int64_t k, SparseBackend backend) {
  switch (act_fn) {
    case ActFn::kRelu:
      return at::gt(s, 0);
    case ActFn::kJumpRelu:
      return at::gt(s, at::exp(log_threshold).to(s.scalar_type()));
    case ActFn::kTopK:
      return top_entries(s, k, backend);
    case ActFn::kBatchTopK:
      return batch_top_k_mask(s, k * (s.numel() / s.size(-1)), backend);
    case ActFn::kBatchLayerTopK:
    case ActFn::kLayerTopK:
      break;
  }
  SAES_THROW(UnsupportedError, "act_fn {} is only defined for cross-layer transcoders",
             kActFnNames[static_cast<std::size_t>(act_fn)]);
}

at::Tensor apply_activation(ActFn act_fn, const at::Tensor& s, const at::Tensor& log_threshold,
                            std::int64_t k) {
  return s * activation_mask(act_fn, s, log_threshold, k);
}

at::Tensor jumprelu_log_threshold_grad(const at::Tensor& grad_out, const at::Tensor& s,
                                       const at::Tensor& log_threshold, double window) {
  const at::Tensor theta = at::exp(log_threshold).to(s.scalar_type());
  const at::Tensor in_window =
      at::logical_and(at::lt(at::abs(s - theta), window / 2.0), at::gt(s, 0));
  const at::Tensor g = at::sum(grad_out * in_window, {0});
  // ∂L/∂logθ = θ·∂L/∂θ = θ·(−θ/ε)·Σ g·1[window]
  return (g * theta * theta * (-1.0 / window)).to(log_threshold.scalar_type());
}

}  // namespace saes::dictionaries

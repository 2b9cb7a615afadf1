// ReLU, JumpReLU, TopK and BatchTopK as activation masks, and the JumpReLU straight-through
// threshold gradient (spec §3.1–3.3). On the CPU (float/double) TopK selects with a per-row radix
// select and BatchTopK with a parallel radix select of the global threshold; elsewhere at::topk.
#include "saes/dictionaries/activation_functions.h"

#include <algorithm>
#include <array>
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

/// Per-row selection of the k largest positive entries by a radix select on the float bits (a
/// positive float's bits, read as a signed integer, order like its value; entries <= 0 read as
/// integers <= 0). Level 1 bins the row's positive entries by their distance below the row's
/// maximum in eighths of an octave (64 bins, four sub-histograms so that equal bins do not stall
/// on each other); the bin holding the k-th largest is refined by 11-bit levels until at most 64
/// candidates are left, which std::nth_element settles. Three branch-free passes over the row,
/// where at::topk sorts.
template <typename T>
class PositiveTopK {
 public:
  using Bits = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;

  /// The selection of one row: entries with bits > thr, then `ties` of those with bits == thr in
  /// column order (all of them when `exact`). `all_positive`: the row has at most k positive
  /// entries, which are the selection.
  struct Cut {
    Bits thr = 0;
    std::int64_t ties = 0;
    bool exact = true;
    bool all_positive = true;
  };

  Cut select(const Bits* row, std::int64_t n, std::int64_t k) {
    cand_.resize(static_cast<std::size_t>(n));
    Bits* c = cand_.data();
    std::int64_t cn = 0;
    for (std::int64_t j = 0; j < n; ++j) {  // the positive entries, branch-free
      c[cn] = row[j];
      cn += row[j] > 0;
    }
    if (cn <= k) return {};
    Bits mx = 0;
    for (std::int64_t j = 0; j < cn; ++j) mx = std::max(mx, c[j]);
    const Bits top = mx >> kShift0;
    const auto bin_of = [top](Bits b) { return std::min<Bits>(top - (b >> kShift0), kNear); };
    std::array<std::array<std::uint32_t, kNear + 1>, 4> hs{};
    std::int64_t j = 0;
    for (; j + 4 <= cn; j += 4) {
      ++hs[0][static_cast<std::size_t>(bin_of(c[j]))];
      ++hs[1][static_cast<std::size_t>(bin_of(c[j + 1]))];
      ++hs[2][static_cast<std::size_t>(bin_of(c[j + 2]))];
      ++hs[3][static_cast<std::size_t>(bin_of(c[j + 3]))];
    }
    for (; j < cn; ++j) ++hs[0][static_cast<std::size_t>(bin_of(c[j]))];
    Bits d = 0;  // the bin of the k-th largest (kNear: that far below the top or further)
    std::int64_t above = 0;
    for (;; ++d) {
      const auto i = static_cast<std::size_t>(d);
      const std::int64_t hd = hs[0][i] + hs[1][i] + hs[2][i] + hs[3][i];
      if (above + hd >= k || d == kNear) break;
      above += hd;
    }
    std::int64_t m = 0;
    for (j = 0; j < cn; ++j) {
      const Bits b = c[j];
      c[m] = b;
      m += bin_of(b) == d;
    }
    return refine(m, k - above, d < kNear ? kShift0 : kWidth - 1);
  }

 private:
  static constexpr int kWidth = 8 * sizeof(T);
  static constexpr int kLevelBits = 11;
  static constexpr int kShift0 = kWidth - 1 - kLevelBits;  // float: exponent + 3 mantissa bits
  static constexpr Bits kNear = 63;

  /// The need-th largest of the cn candidates, whose bits above `shift` agree.
  Cut refine(std::int64_t cn, std::int64_t need, int shift) {
    constexpr Bits kMask = (Bits{1} << kLevelBits) - 1;
    Bits* c = cand_.data();
    while (cn > 64 && shift > 0) {
      shift = std::max(0, shift - kLevelBits);
      hist_.assign(static_cast<std::size_t>(kMask) + 1, 0);
      Bits mx = 0;
      for (std::int64_t j = 0; j < cn; ++j) {
        ++hist_[static_cast<std::size_t>((c[j] >> shift) & kMask)];
        mx = std::max(mx, c[j]);
      }
      auto bin = static_cast<std::size_t>((mx >> shift) & kMask);
      while (static_cast<std::int64_t>(hist_[bin]) < need) {
        need -= static_cast<std::int64_t>(hist_[bin--]);
      }
      std::int64_t m = 0;
      for (std::int64_t j = 0; j < cn; ++j) {
        const Bits b = c[j];
        c[m] = b;
        m += static_cast<std::size_t>((b >> shift) & kMask) == bin;
      }
      cn = m;
    }
    std::nth_element(c, c + (need - 1), c + cn, std::greater<Bits>());
    const Bits thr = c[need - 1];
    std::int64_t gt = 0, eq = 0;
    for (std::int64_t j = 0; j < cn; ++j) {
      gt += c[j] > thr;
      eq += c[j] == thr;
    }
    return {thr, need - gt, need - gt == eq, false};
  }

  std::vector<std::uint64_t> hist_;
  std::vector<Bits> cand_;
};

/// Runs fn(row index, the row's bits, the row's Cut) over the rows of s2 [rows, n] in parallel;
/// with `scale` ([n], defined) over the rows of s2·scale, formed one row at a time.
template <typename T, typename Fn>
void for_each_row_cut(const at::Tensor& s2, const at::Tensor& scale, std::int64_t k, const Fn& fn) {
  using Bits = typename PositiveTopK<T>::Bits;
  const std::int64_t n = s2.size(1);
  const T* s = s2.data_ptr<T>();
  const T* sc = scale.defined() ? scale.data_ptr<T>() : nullptr;
  at::parallel_for(0, s2.size(0), std::max<std::int64_t>(1, 8192 / n),
                   [&](std::int64_t begin, std::int64_t end) {
                     PositiveTopK<T> sel;
                     std::vector<T> scaled(sc != nullptr ? static_cast<std::size_t>(n) : 0);
                     for (std::int64_t r = begin; r < end; ++r) {
                       const T* row = s + r * n;
                       if (sc != nullptr) {
                         for (std::int64_t j = 0; j < n; ++j) scaled[j] = row[j] * sc[j];
                         row = scaled.data();
                       }
                       const auto* bits = reinterpret_cast<const Bits*>(row);
                       fn(r, bits, sel.select(bits, n, k));
                     }
                   });
}

/// Writes row r's selection (the Cut) into `out` [n] as 0/1.
template <typename Bits, typename Cut>
void write_row_mask(const Bits* row, std::int64_t n, const Cut& cut, bool* out) {
  if (cut.all_positive) {
    for (std::int64_t j = 0; j < n; ++j) out[j] = row[j] > 0;
  } else if (cut.exact) {
    for (std::int64_t j = 0; j < n; ++j) out[j] = row[j] >= cut.thr;
  } else {
    std::int64_t ties = cut.ties;
    for (std::int64_t j = 0; j < n; ++j) out[j] = row[j] > cut.thr;
    for (std::int64_t j = 0; j < n && ties > 0; ++j) {
      if (row[j] == cut.thr) {
        out[j] = true;
        --ties;
      }
    }
  }
}

template <typename T>
at::Tensor row_top_k_mask(const at::Tensor& s2, const at::Tensor& scale, std::int64_t k) {
  const std::int64_t n = s2.size(1);
  at::Tensor mask = at::empty(s2.sizes(), s2.options().dtype(at::kBool));
  bool* m = mask.data_ptr<bool>();
  for_each_row_cut<T>(s2, scale, k, [&](std::int64_t r, const auto* row, const auto& cut) {
    write_row_mask(row, n, cut, m + r * n);
  });
  return mask;
}

/// row_top_k on the CPU kernels: the selected columns in column order, padded with the first
/// unselected columns (entries <= 0) to k.
template <typename T>
std::tuple<at::Tensor, at::Tensor> row_top_k_kernel(const at::Tensor& s2, std::int64_t k) {
  const std::int64_t n = s2.size(1);
  at::Tensor vals = at::empty({s2.size(0), k}, s2.options());
  at::Tensor idx = at::empty({s2.size(0), k}, s2.options().dtype(at::kLong));
  T* pv = vals.data_ptr<T>();
  std::int64_t* pi = idx.data_ptr<std::int64_t>();
  const T* ps = s2.data_ptr<T>();
  for_each_row_cut<T>(s2, at::Tensor(), k, [&](std::int64_t r, const auto* row, const auto& cut) {
    thread_local std::vector<std::uint8_t> chosen;  // the row's mask, as write_row_mask selects
    chosen.resize(static_cast<std::size_t>(n));
    write_row_mask(row, n, cut, reinterpret_cast<bool*>(chosen.data()));
    std::int64_t* out = pi + r * k;
    std::int64_t c = 0;
    for (std::int64_t j = 0; j < n && c < k; ++j) {  // few taken: the branch predicts well
      if (chosen[static_cast<std::size_t>(j)] != 0) out[c++] = j;
    }
    for (std::int64_t j = 0; j < n && c < k; ++j) {  // pad with the unselected columns
      if (chosen[static_cast<std::size_t>(j)] == 0) out[c++] = j;
    }
    for (std::int64_t i = 0; i < k; ++i) pv[r * k + i] = ps[r * n + out[i]];
  });
  return {vals, idx};
}

/// Mask of the k largest entries of ReLU(s) along the last dim of `s2` ([rows, n]), and s > 0.
at::Tensor top_entries(const at::Tensor& s2, std::int64_t k, SparseBackend backend) {
  const std::int64_t n = s2.size(-1);
  SAES_CHECK(k >= 1 && k <= n, ConfigError, "top-k: k must be in 1..{}, got {}", n, k);
  if (use_kernels(backend, s2) && s2.dim() == 2) {
    const at::Tensor s = s2.contiguous();
    return s.scalar_type() == at::kFloat ? row_top_k_mask<float>(s, {}, k)
                                         : row_top_k_mask<double>(s, {}, k);
  }
  const at::Tensor idx = std::get<1>(at::topk(at::relu(s2), k, -1, true, false));
  at::Tensor mask = at::zeros(s2.sizes(), s2.options().dtype(at::kBool));
  mask.scatter_(-1, idx, true);
  return at::logical_and(mask, at::gt(s2, 0));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> row_top_k(const at::Tensor& scores, std::int64_t k) {
  SAES_CHECK(scores.dim() == 2 && k >= 1 && k <= scores.size(1), ConfigError,
             "top-k: expected [rows, m] scores and k in 1..m, got {} dims and k {}", scores.dim(),
             k);
  if (use_kernels(SparseBackend::kAuto, scores)) {
    const at::Tensor s = scores.contiguous();
    return s.scalar_type() == at::kFloat ? row_top_k_kernel<float>(s, k)
                                         : row_top_k_kernel<double>(s, k);
  }
  return at::topk(scores, k, -1, true, false);
}

at::Tensor scaled_top_k_mask(const at::Tensor& h, const at::Tensor& scale, std::int64_t k) {
  SAES_CHECK(h.dim() == 2 && k >= 1 && k <= h.size(1), ConfigError,
             "top-k: expected [rows, m] scores and k in 1..m, got {} dims and k {}", h.dim(), k);
  if (!use_kernels(SparseBackend::kAuto, h)) {
    return top_entries(scale.defined() ? h * scale : h, k, SparseBackend::kAuto);
  }
  const at::Tensor s = h.contiguous();
  const at::Tensor sc = scale.defined() ? scale.to(s.scalar_type()).contiguous() : at::Tensor();
  return s.scalar_type() == at::kFloat ? row_top_k_mask<float>(s, sc, k)
                                       : row_top_k_mask<double>(s, sc, k);
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

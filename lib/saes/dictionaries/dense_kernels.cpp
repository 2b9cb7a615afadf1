// Fused CPU sweeps of the dense SAE step: rows are split into a fixed number of blocks (per thread
// count) and columns into tiles, so each tile's column sums stay in L1; block partials (double) are
// added in block order, so a thread count always gives the same bits.
#include "saes/dictionaries/dense_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include "saes/core/error.h"

namespace saes::dictionaries {
namespace {

constexpr std::int64_t kTile = 256;

// The row kernels select with masks after unconditional arithmetic; GCC vectorizes such selects
// only without trapping-math (saes never reads floating-point exception flags).
#if defined(__GNUC__) && !defined(__clang__)
#define SAES_VECTORIZE_SELECTS __attribute__((optimize("no-trapping-math")))
#else
#define SAES_VECTORIZE_SELECTS
#endif

enum class Penalty { kNone, kL1, kPow, kTanh, kTanhQuad };

Penalty penalty_of(const LossSettings& ls) {
  if (ls.sparsity == SparsityPenalty::kNone || ls.l1_coefficient == 0) return Penalty::kNone;
  if (ls.sparsity == SparsityPenalty::kPower) {
    SAES_CHECK(ls.p >= 1, ConfigError, "trainer.p: expected >= 1, got {}", ls.p);
    return ls.p == 1 ? Penalty::kL1 : Penalty::kPow;
  }
  return ls.sparsity == SparsityPenalty::kTanh ? Penalty::kTanh : Penalty::kTanhQuad;
}

/// Row blocks of the sweeps and their per-block column partials.
struct Blocks {
  std::int64_t n_rows, n_cols, n_blocks, rows_per_block;
  Blocks(std::int64_t n, std::int64_t s)
      : n_rows(n),
        n_cols(s),
        n_blocks(std::max<std::int64_t>(1, std::min<std::int64_t>(n, 4 * at::get_num_threads()))),
        rows_per_block((n + n_blocks - 1) / n_blocks) {}
  /// fn(block, row begin, row end) for every block, in parallel.
  template <typename Fn>
  void run(const Fn& fn) const {
    at::parallel_for(0, n_blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        fn(b, std::min(b * rows_per_block, n_rows), std::min((b + 1) * rows_per_block, n_rows));
      }
    });
  }
};

/// Column partial sums of one quantity: [n_blocks × S] doubles, reduced in block order.
struct Partials {
  std::vector<double> data;
  std::int64_t n_cols = 0;
  Partials(const Blocks& b, bool used)
      : data(used ? static_cast<std::size_t>(b.n_blocks * b.n_cols) : 0), n_cols(b.n_cols) {}
  double* block(std::int64_t b) { return data.empty() ? nullptr : data.data() + b * n_cols; }
  /// Σ over blocks as a [S] tensor of `like`'s dtype.
  at::Tensor total(const at::Tensor& like) const {
    at::Tensor out = at::zeros({n_cols}, like.options().dtype(at::kDouble));
    double* sum = out.data_ptr<double>();
    for (std::size_t o = 0; o < data.size(); o += static_cast<std::size_t>(n_cols)) {
      for (std::int64_t i = 0; i < n_cols; ++i) sum[i] += data[o + static_cast<std::size_t>(i)];
    }
    return out.to(like.scalar_type());
  }
};

/// The gate, or ones when there is no gating (one code path for both).
at::Tensor gate_or_ones(const DenseSweep& sw) {
  return sw.gate.defined() ? sw.gate.contiguous() : at::ones({sw.h.size(1)}, sw.h.options());
}

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

double ipow(double x, std::int64_t p) {
  double r = 1.0;
  for (std::int64_t i = 0; i < p; ++i) r *= x;
  return r;
}

/// One row's tile of the forward sweep (branch-free, vectorizable): f, Σ counts·1[f>0], Σ w·f.
/// kAct: 0 ReLU (h > 0), 1 JumpReLU (h·gate > θ), 2 a given selection.
template <typename T, int kAct>
SAES_VECTORIZE_SELECTS void forward_row(std::int64_t n, const T* __restrict h,
                                        const T* __restrict gate, const T* __restrict th,
                                        const bool* __restrict sel, T* __restrict f,
                                        T* __restrict fired, T* __restrict fw, T ct, T wt) {
  if constexpr (kAct == 2) {  // the selection as 0/1 factors: GCC vectorizes no select on bool
    const auto* __restrict sel8 = reinterpret_cast<const std::uint8_t*>(sel);
    for (std::int64_t i = 0; i < n; ++i) {
      const T m = static_cast<T>(sel8[i]);
      const T fv = h[i] * m + T(0);  // + 0: no −0 where h < 0
      f[i] = fv;
      fired[i] += m * ct;
      fw[i] += wt * fv;
    }
    return;
  }
  for (std::int64_t i = 0; i < n; ++i) {
    bool a;
    if constexpr (kAct == 0) {
      a = h[i] > 0;
    } else {
      a = h[i] * gate[i] > th[i];
    }
    const T fv = a ? h[i] : T(0);
    f[i] = fv;
    fired[i] += a ? ct : T(0);
    fw[i] += wt * fv;
  }
}

/// One row's tile of the backward sweep without L_p/Aux-K and with no penalty or L1 (l1 = λ·w_t):
/// ∂f → ∂h in place, Σ ∂h, Σ ∂L/∂n (kGn) and the JumpReLU window sum (kSte).
template <typename T, bool kSte, bool kGn>
SAES_VECTORIZE_SELECTS void backward_row(std::int64_t n, const T* __restrict f,
                                         const T* __restrict h, const T* __restrict gate,
                                         const T* __restrict th, T* __restrict df, T* __restrict gb,
                                         T* __restrict gn, T* __restrict glog, T l1, T half_win) {
  // masks as 0/1 factors (as the op path's multiplications by the masks): branch-free, vectorized
  for (std::int64_t i = 0; i < n; ++i) {
    const T fv = f[i];
    const T m = fv > T(0) ? T(1) : T(0);
    const T gv = df[i] + m * (l1 * gate[i]);
    if constexpr (kGn) gn[i] += l1 * fv;
    if constexpr (kSte) {
      const T sv = h[i] * gate[i];
      const T in_window = std::abs(sv - th[i]) < half_win ? T(1) : T(0);
      glog[i] += in_window * (sv > T(0) ? T(1) : T(0)) * (gv / gate[i]);
    }
    const T dh = m * gv;
    gb[i] += dh;
    df[i] = dh;
  }
}

/// Tile accumulators (T) of `count` quantities, flushed into the block partials (double).
template <typename T>
struct TileAcc {
  std::vector<T> data;
  explicit TileAcc(int count) : data(static_cast<std::size_t>(count * kTile)) {}
  T* operator[](int q) { return data.data() + q * kTile; }
  void zero() { std::fill(data.begin(), data.end(), T(0)); }
  void flush(int q, double* partial, std::int64_t c0, std::int64_t n) {
    if (partial == nullptr) return;
    for (std::int64_t i = 0; i < n; ++i) partial[c0 + i] += static_cast<double>((*this)[q][i]);
  }
};

template <typename T>
DenseForward forward_impl(const DenseSweep& sw) {
  const LossSettings& ls = *sw.loss;
  const Penalty pen = penalty_of(ls);
  const std::int64_t N = sw.h.size(0), S = sw.h.size(1);
  const Blocks blocks(N, S);
  DenseForward out;
  out.f = at::empty({N, S}, sw.h.options());
  const at::Tensor gate_t = gate_or_ones(sw);
  const T *h = sw.h.data_ptr<T>(), *gate = gate_t.data_ptr<T>(), *th = ptr_or_null<T>(sw.theta);
  const T *w = sw.w.data_ptr<T>(), *cnt = ptr_or_null<T>(sw.counts);
  const bool* sel = ptr_or_null<bool>(sw.selected);
  T* f = out.f.data_ptr<T>();
  const ActFn act = sw.act_fn;
  const T c = static_cast<T>(ls.tanh_stretch_coefficient);
  Partials fired(blocks, true), fw(blocks, true), colT(blocks, pen == Penalty::kTanhQuad);
  std::vector<double> row(static_cast<std::size_t>(N), 0.0);
  blocks.run([&](std::int64_t b, std::int64_t r0, std::int64_t r1) {
    double *fired_b = fired.block(b), *fw_b = fw.block(b), *colT_b = colT.block(b);
    TileAcc<T> acc(2);
    for (std::int64_t c0 = 0; c0 < S; c0 += kTile) {
      const std::int64_t c1 = std::min(c0 + kTile, S);
      acc.zero();
      for (std::int64_t t = r0; t < r1; ++t) {
        T* ft = f + t * S;
        const double wt = static_cast<double>(w[t]), ct = cnt ? static_cast<double>(cnt[t]) : 1.0;
        const std::int64_t o = t * S + c0, n = c1 - c0;
        const T ctT = static_cast<T>(ct), wtT = static_cast<T>(wt);
        if (act == ActFn::kRelu) {
          forward_row<T, 0>(n, h + o, gate + c0, th, sel, f + o, acc[0], acc[1], ctT, wtT);
        } else if (act == ActFn::kJumpRelu) {
          forward_row<T, 1>(n, h + o, gate + c0, th + c0, sel, f + o, acc[0], acc[1], ctT, wtT);
        } else {
          forward_row<T, 2>(n, h + o, gate + c0, th, sel + o, f + o, acc[0], acc[1], ctT, wtT);
        }
        if (pen != Penalty::kPow && pen != Penalty::kTanh && pen != Penalty::kTanhQuad) continue;
        double racc = 0.0;
        for (std::int64_t i = c0; i < c1; ++i) {
          if (!(ft[i] > 0)) continue;
          const double u = static_cast<double>(ft[i] * gate[i]);
          if (pen == Penalty::kPow) racc += ipow(u, ls.p);
          if (pen == Penalty::kTanh || pen == Penalty::kTanhQuad) {
            const double tv = std::tanh(static_cast<double>(c * ft[i] * gate[i]));
            if (pen == Penalty::kTanh) racc += tv;
            if (pen == Penalty::kTanhQuad) colT_b[i] += tv;
          }
        }
        row[static_cast<std::size_t>(t)] += racc;
      }
      acc.flush(0, fired_b, c0, c1 - c0);
      acc.flush(1, fw_b, c0, c1 - c0);
    }
  });
  out.fired = fired.total(sw.w).round().to(at::kLong);
  const double lam = ls.l1_coefficient;
  switch (pen) {
    case Penalty::kNone:
      break;
    case Penalty::kL1: {
      const at::Tensor fws = fw.total(sw.w);
      out.l_sparsity = lam * (fws * gate_t).sum().template item<double>();
      break;
    }
    case Penalty::kPow:
    case Penalty::kTanh: {
      out.row_coef = at::empty({N}, sw.w.options());
      T* rc = out.row_coef.data_ptr<T>();
      const double p = static_cast<double>(ls.p);
      double total = 0.0;
      for (std::int64_t t = 0; t < N; ++t) {
        const double r = row[static_cast<std::size_t>(t)], wt = static_cast<double>(w[t]);
        const double P = pen == Penalty::kPow ? std::pow(r, 1.0 / p) : r;
        total += wt * P;
        rc[t] = static_cast<T>(pen == Penalty::kTanh ? lam * wt
                               : P > 0               ? lam * wt * std::pow(P, 1.0 - p)
                                                     : 0.0);
      }
      out.l_sparsity = lam * total;
      break;
    }
    case Penalty::kTanhQuad: {
      const double sc = ls.frequency_scale, n = static_cast<double>(N);
      const at::Tensor ph = colT.total(sw.w.to(at::kDouble)) / n;
      out.l_sparsity = lam * (ph * (1 + ph / sc)).sum().template item<double>();
      out.col_coef = ((1 + ph * (2.0 / sc)) * (lam / n)).to(sw.w.scalar_type());
      break;
    }
  }
  return out;
}

template <typename T>
DenseBackward backward_impl(const DenseSweep& sw, const DenseForward& fwd, const at::Tensor& df_t,
                            const at::Tensor& aux_df_t, const at::Tensor& aux_sel_t) {
  const LossSettings& ls = *sw.loss;
  const Penalty pen = penalty_of(ls);
  const std::int64_t N = sw.h.size(0), S = sw.h.size(1);
  const Blocks blocks(N, S);
  const bool jump = sw.act_fn == ActFn::kJumpRelu;
  const bool lp = jump && ls.lp_coefficient > 0;
  const at::Tensor gate_t = gate_or_ones(sw);
  const T *h = sw.h.data_ptr<T>(), *f = fwd.f.data_ptr<T>(), *gate = gate_t.data_ptr<T>();
  const T *th = ptr_or_null<T>(sw.theta), *nrm = ptr_or_null<T>(sw.norms), *w = sw.w.data_ptr<T>();
  const T *rc = ptr_or_null<T>(fwd.row_coef), *cc = ptr_or_null<T>(fwd.col_coef);
  const T* aux_df = ptr_or_null<T>(aux_df_t);
  const bool* aux_sel = ptr_or_null<bool>(aux_sel_t);
  T* df = df_t.data_ptr<T>();
  const T lam = static_cast<T>(ls.l1_coefficient), c = static_cast<T>(ls.tanh_stretch_coefficient);
  const T half_win = static_cast<T>(sw.window / 2.0), lpc = static_cast<T>(ls.lp_coefficient);
  const bool penalised = pen != Penalty::kNone;
  const bool simple = (pen == Penalty::kNone || pen == Penalty::kL1) && !lp && aux_df == nullptr;
  Partials gb(blocks, true), gn(blocks, penalised), glog(blocks, jump), relu_w(blocks, lp),
      ind_w(blocks, lp);
  blocks.run([&](std::int64_t b, std::int64_t r0, std::int64_t r1) {
    double *gb_b = gb.block(b), *gn_b = gn.block(b), *glog_b = glog.block(b);
    double *rw_b = relu_w.block(b), *iw_b = ind_w.block(b);
    TileAcc<T> acc(3);
    for (std::int64_t c0 = 0; c0 < S; c0 += kTile) {
      const std::int64_t c1 = std::min(c0 + kTile, S);
      acc.zero();
      for (std::int64_t t = r0; t < r1; ++t) {
        const std::int64_t o = t * S;
        const T wt = w[t], lam_w = lam * wt, rct = rc ? rc[t] : T(0);
        if (simple) {  // no penalty or L1, no L_p, no Aux-K: branch-free row kernels
          const T l1 = pen == Penalty::kL1 ? lam_w : T(0);
          const std::int64_t n = c1 - c0, oc = o + c0;
          T *gb_t = acc[0], *gn_t = acc[1], *glog_t = acc[2];
          const T* th_c = jump ? th + c0 : nullptr;
          if (jump && penalised) {
            backward_row<T, true, true>(n, f + oc, h + oc, gate + c0, th_c, df + oc, gb_t, gn_t,
                                        glog_t, l1, half_win);
          } else if (jump) {
            backward_row<T, true, false>(n, f + oc, h + oc, gate + c0, th_c, df + oc, gb_t, gn_t,
                                         glog_t, l1, half_win);
          } else if (penalised) {
            backward_row<T, false, true>(n, f + oc, h + oc, gate + c0, th_c, df + oc, gb_t, gn_t,
                                         glog_t, l1, half_win);
          } else {
            backward_row<T, false, false>(n, f + oc, h + oc, gate + c0, th_c, df + oc, gb_t, gn_t,
                                          glog_t, l1, half_win);
          }
          continue;
        }
        for (std::int64_t i = c0; i < c1; ++i) {
          const T fv = f[o + i], g = gate[i];
          const bool a = fv > 0;
          T gv = df[o + i];
          if (penalised) {
            T du = 0;
            if (pen == Penalty::kL1) {
              du = a ? lam_w : T(0);
            } else if (pen == Penalty::kPow) {
              du = a ? static_cast<T>(ipow(static_cast<double>(fv * g), ls.p - 1)) * rct : T(0);
            } else {
              const T tv = a ? std::tanh(c * fv * g) : T(0);
              du = (1 - tv * tv) * c * (pen == Penalty::kTanh ? rct : cc[i]);
            }
            gv += du * g;
            if (gn_b) gn_b[i] += static_cast<double>(du * fv);
          }
          if (jump) {
            const T s = h[o + i] * g;
            const bool win = std::abs(s - th[i]) < half_win && s > 0;
            glog_b[i] += win ? static_cast<double>(gv / g) : 0.0;
          }
          T dh = a ? gv : T(0);
          if (lp) {
            const T gap = th[i] - h[o + i];
            if (gap > 0) {
              rw_b[i] += static_cast<double>(gap * wt);
              iw_b[i] += static_cast<double>(wt);
              dh -= wt * nrm[i] * lpc;
            }
          }
          if (aux_df && aux_sel[o + i]) dh += aux_df[o + i];
          gb_b[i] += static_cast<double>(dh);
          df[o + i] = dh;
        }
      }
      acc.flush(0, gb_b, c0, c1 - c0);
      acc.flush(1, gn_b, c0, c1 - c0);
      acc.flush(2, glog_b, c0, c1 - c0);
    }
  });
  DenseBackward out;
  out.gb_E = gb.total(sw.w);
  out.gn = penalised && sw.gate.defined() ? gn.total(sw.w) : at::zeros({S}, sw.w.options());
  if (jump) {
    const at::Tensor theta = sw.theta;
    out.glog_threshold = glog.total(sw.w) * theta * theta * (-1.0 / sw.window);
    if (lp) {
      const at::Tensor rw = relu_w.total(sw.w);
      out.l_p = ls.lp_coefficient * (rw * sw.norms).sum().template item<double>();
      out.glog_threshold.add_(ind_w.total(sw.w) * sw.norms * theta, ls.lp_coefficient);
      out.gn.add_(rw, ls.lp_coefficient);
    }
  }
  return out;
}

}  // namespace

bool dense_kernels_apply(const at::Tensor& t) {
  return t.device().is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}

DenseForward dense_forward(const DenseSweep& sw) {
  SAES_ASSERT(sw.loss != nullptr && dense_kernels_apply(sw.h) && sw.h.is_contiguous(),
              "dense_forward needs CPU float/double contiguous inputs and loss settings");
  return sw.h.scalar_type() == at::kFloat ? forward_impl<float>(sw) : forward_impl<double>(sw);
}

DenseBackward dense_backward(const DenseSweep& sw, const DenseForward& fwd, const at::Tensor& df,
                             const at::Tensor& aux_df, const at::Tensor& aux_selected) {
  SAES_ASSERT(df.is_contiguous() && df.sizes() == sw.h.sizes(), "dense_backward: bad df");
  return sw.h.scalar_type() == at::kFloat
             ? backward_impl<float>(sw, fwd, df, aux_df, aux_selected)
             : backward_impl<double>(sw, fwd, df, aux_df, aux_selected);
}

}  // namespace saes::dictionaries

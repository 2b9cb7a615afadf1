// The parts of a sparse training step that every variant shares (sparse_step_parts.h).
#include "saes/dictionaries/sparse_step_parts.h"

#include <algorithm>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/div.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/dense_kernels.h"
#include "saes/dictionaries/feature_parallel.h"

namespace saes::dictionaries::detail {

/// Flat positions (row·m + column, ascending) of the `kk` largest entries of `score` [N, m]
/// overall. A 1-D topk over N·m entries runs on one thread; instead take each row's top
/// `kBatchTopKRowFactor`·k in parallel and select among those. The result is exact unless a row
/// gives all its candidates to the selection (it might hold more): then the full 1-D topk runs.
at::Tensor batch_top_positions(const at::Tensor& score, std::int64_t k, std::int64_t kk) {
  constexpr std::int64_t kBatchTopKRowFactor = 4;
  const std::int64_t m = score.size(1);
  const std::int64_t k1 = std::min(k * kBatchTopKRowFactor, m);
  if (k1 < m) {
    const auto [vals, cols] = at::topk(score, k1, -1, true, false);
    const at::Tensor pick = std::get<1>(at::topk(vals.reshape({-1}), kk, 0, true, false));
    const at::Tensor rows = at::div(pick, k1, "floor");
    const bool saturated = at::bincount(rows, {}, score.size(0)).max().item<std::int64_t>() >= k1;
    if (!saturated) {
      return std::get<0>(at::sort(rows * m + cols.reshape({-1}).index_select(0, pick)));
    }
  }
  return std::get<0>(at::sort(std::get<1>(at::topk(score.reshape({-1}), kk, 0, true, false))));
}

/// Candidate entries of `score` [N, m] (values = the scores): the k largest per row (TopK), the
/// k·N largest overall (BatchTopK), or the positive ones (ReLU); for a sharded dictionary
/// (`group` set) selected over the whole dictionary (feature_parallel.h).
SparseActs candidates(ActFn act_fn, const at::Tensor& score, std::int64_t k,
                      distributed::Communicator* group) {
  const std::int64_t n = score.size(0), m = score.size(1);
  if (group != nullptr && is_topk_family(act_fn)) {
    const at::Tensor flat = sharded_top_positions(act_fn, score, k, *group);
    return sparse_from_flat(flat, score.reshape({-1}).index_select(0, flat), n, m);
  }
  if (act_fn == ActFn::kTopK) {
    const auto [vals, idx] = row_top_k(score, k);
    return sparse_from_topk(idx, vals, m);
  }
  const at::Tensor flat_scores = score.reshape({-1});
  at::Tensor flat;
  if (act_fn == ActFn::kRelu) {
    flat = at::nonzero(at::gt(flat_scores, 0)).squeeze(1);
  } else {
    SAES_ASSERT(act_fn == ActFn::kBatchTopK, "no sparse step for this activation function");
    const std::int64_t kk = std::min(k * n, score.numel());
    flat = dense_kernels_apply(score)  // CPU: the parallel radix select (exact, flat-order ties)
               ? at::nonzero(batch_top_k_mask(score, kk).reshape({-1})).squeeze(1)
               : batch_top_positions(score, k, kk);
  }
  return sparse_from_flat(flat, flat_scores.index_select(0, flat), n, m);
}

/// Turns candidate scores into f's entries: active = score > 0, values = h·active with
/// h = score / n when the score was gated by the decoder norms `n` (then n > 0 wherever active),
/// else h = score. `feature_of` maps the candidates' columns to features (Aux-K's dead columns).
Selected finish(SparseActs a, const at::Tensor& n, const at::Tensor& feature_of) {
  if (feature_of.defined()) a.indices = feature_of.index_select(0, a.indices);
  Selected s;
  const at::Tensor active = at::gt(a.values, 0);
  s.active = active.to(a.values.scalar_type());
  a.values = n.defined() ? at::where(active, a.values / n.index_select(0, a.indices),
                                     at::zeros_like(a.values))
                         : a.values * s.active;
  s.a = std::move(a);
  return s;
}

/// The sparsity penalty (spec §3.4) on f's entries: returns λ·penalty, adds ∂/∂f to `df` and,
/// with gating (ng_e defined: the decoder norm of each entry's feature), ∂/∂n to `gn`.
/// `sum_rows` sums per-token partial sums over the model group (identity when not sharded); the
/// value returned is this rank's share of the sum over the group (see finish_sums).
double penalty(const LossSettings& ls, const SparseActs& a, const at::Tensor& w_tok,
               const at::Tensor& ng_e, at::Tensor& df, at::Tensor& gn,
               const std::function<void(at::Tensor&)>& sum_rows, bool counts_whole,
               double frequency_rows) {
  if (ls.sparsity == SparsityPenalty::kNone || ls.l1_coefficient == 0) return 0.0;
  const double lam = ls.l1_coefficient;
  const std::int64_t N = a.n_rows, S = a.n_features;
  const bool gating = ng_e.defined();
  const at::Tensor& f = a.values;
  const at::Tensor w_e = w_tok.index_select(0, a.rows);
  const at::Tensor u = gating ? f * ng_e : f;
  if (ls.sparsity == SparsityPenalty::kPower && ls.p == 1) {
    df.add_(gating ? w_e * ng_e : w_e, lam);
    if (gating && gn.defined()) gn.add_(sparse_feature_sum(a.indices, f * w_e, S), lam);
    return lam * at::sum(u * w_e).item<double>();
  }
  double value = 0.0;
  at::Tensor du;
  if (ls.sparsity == SparsityPenalty::kPower) {
    SAES_CHECK(ls.p >= 1, ConfigError, "trainer.p: expected >= 1, got {}", ls.p);
    const double p = static_cast<double>(ls.p);
    at::Tensor P = at::zeros({N}, f.options()).index_add_(0, a.rows, at::pow(u, p));
    sum_rows(P);
    P = at::pow(P, 1.0 / p);
    value = counts_whole ? lam * at::sum(P * w_tok).item<double>() : 0.0;
    const at::Tensor P_e = P.index_select(0, a.rows);
    du = at::where(at::gt(P_e, 0), at::pow(u, p - 1) * at::pow(P_e, 1 - p), at::zeros_like(u));
    du.mul_(w_e * lam);
  } else {
    const double c = ls.tanh_stretch_coefficient;
    const at::Tensor T = at::tanh(u * c);
    const at::Tensor dT = (1 - T * T) * c;
    if (ls.sparsity == SparsityPenalty::kTanh) {
      value = lam * at::sum(T * w_e).item<double>();
      du = dT * (w_e * lam);
    } else {  // tanh-quad: batch-level over all tokens, as the dense step
      const double sc = ls.frequency_scale;
      const double rows = frequency_rows > 0 ? frequency_rows : static_cast<double>(N);
      const at::Tensor ph = sparse_feature_sum(a.indices, T, S) / rows;
      value = lam * at::sum(ph * (1 + ph / sc)).item<double>();
      du = dT * ((1 + ph.index_select(0, a.indices) * (2.0 / sc)) * (lam / rows));
    }
  }
  df.add_(gating ? du * ng_e : du);
  if (gating && gn.defined()) gn.add_(sparse_feature_sum(a.indices, du * f, S));
  return value;
}

}  // namespace saes::dictionaries::detail

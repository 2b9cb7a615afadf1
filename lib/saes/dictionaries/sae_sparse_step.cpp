// SparseAutoEncoder's sparse training step for k-sparse activations (TopK, BatchTopK, sparse
// ReLU): the encoder GEMM is the only dense product; decode, ∂L/∂f, Aux-K and both weight
// gradients touch only the active entries (sparse_kernels.h). Same maths as the dense step.
#include <algorithm>
#include <functional>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/cat.h>
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
#include "saes/dictionaries/sae.h"
#include "saes/dictionaries/sparse_kernels.h"

namespace saes::dictionaries {
namespace {

/// Active entries of one activation function: f's entries (values = h·active) and the 0/1 mask.
struct Selected {
  SparseActs a;
  at::Tensor active;  ///< [nnz] float: 1 where the entry is active (an entry may be a TopK pick
                      ///< with score ≤ 0, which the dense mask drops too)
};

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
               const std::function<void(at::Tensor&)>& sum_rows, bool counts_whole) {
  if (ls.sparsity == SparsityPenalty::kNone || ls.l1_coefficient == 0) return 0.0;
  const double lam = ls.l1_coefficient;
  const std::int64_t N = a.n_rows, S = a.n_features;
  const bool gating = ng_e.defined();
  const at::Tensor& f = a.values;
  const at::Tensor w_e = w_tok.index_select(0, a.rows);
  const at::Tensor u = gating ? f * ng_e : f;
  if (ls.sparsity == SparsityPenalty::kPower && ls.p == 1) {
    df.add_(gating ? w_e * ng_e : w_e, lam);
    if (gating) gn.add_(sparse_feature_sum(a.indices, f * w_e, S), lam);
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
      const at::Tensor ph = sparse_feature_sum(a.indices, T, S) / static_cast<double>(N);
      value = lam * at::sum(ph * (1 + ph / sc)).item<double>();
      du = dT * ((1 + ph.index_select(0, a.indices) * (2.0 / sc)) * (lam / static_cast<double>(N)));
    }
  }
  df.add_(gating ? du * ng_e : du);
  if (gating) gn.add_(sparse_feature_sum(a.indices, du * f, S));
  return value;
}

}  // namespace

StepResult SparseAutoEncoder::sparse_step(const StepState& st, const LossSettings& ls) {
  const at::Tensor &x = st.x, &y = st.y, &w = st.w, &n = st.n, &h = st.pre;
  const std::int64_t N = x.size(0), S = local_d_sae();
  distributed::Communicator* group = shard_.sharded() ? shard_.group : nullptr;
  const bool gating = cfg_.sparsity_include_decoder_norm;
  const bool relu = cfg_.act_fn == ActFn::kRelu;
  StepResult out;
  out.n_tokens = st.n_valid;

  // ---- forward: select (on s = h·n, computed in place: h is not needed again), decode ----
  const bool gated = gating && !relu;  // gating is a no-op for ReLU (§2.1)
  const at::Tensor score = gated ? h.mul_(n) : h;
  Selected m = finish(candidates(cfg_.act_fn, score, st.k, group), gated ? n : at::Tensor(), {});
  const SparseActs& a = m.a;
  const at::Tensor xhat = sparse_decode_sum(a, b_D_);
  const at::Tensor r = xhat - y;
  out.l_rec = at::sum(at::sum(r * r, {1}, true) * w).item<double>();
  at::Tensor G = r * (2.0 * w);

  // ---- Aux-K (spec §3.5) over the dead features' columns only ----
  Selected aux;
  at::Tensor Gq;
  if (ls.auxk_coefficient > 0 && is_topk_family(cfg_.act_fn) && st.dead.defined()) {
    const at::Tensor dead_idx =
        at::nonzero(st.dead.to(x.device()).to(at::kBool).reshape({S})).squeeze(1);
    const auto n_dead =
        static_cast<std::int64_t>(sum_over_features({static_cast<double>(dead_idx.numel())})[0]);
    if (n_dead > 0) {
      const at::Tensor s_aux = score.index_select(1, dead_idx);
      aux = finish(candidates(cfg_.act_fn, s_aux, std::min(ls.k_aux, n_dead), group),
                   gated ? n : at::Tensor(), dead_idx);
      aux.a.n_features = S;
      const at::Tensor q = sparse_decode_sum(aux.a, {}).add_(r);  // ê − e
      out.l_aux = ls.auxk_coefficient * at::sum(at::sum(q * q, {1}, true) * w).item<double>();
      Gq = q * (2.0 * ls.auxk_coefficient * w);
      if (!ls.auxk_detach_residual) G = G + Gq;
    }
  }

  // ---- backward into f's entries ----
  at::Tensor df = sparse_row_dot(a, G, W_D_);
  at::Tensor gn = at::zeros_like(n);
  const bool penalised = ls.sparsity != SparsityPenalty::kNone && ls.l1_coefficient != 0;
  const at::Tensor w_tok = w.view({N});
  out.l_sparsity = penalty(
      ls, a, w_tok, gating ? n.index_select(0, a.indices) : at::Tensor(), df, gn,
      [this](at::Tensor& t) { sum_over_features(t); }, shard_.rank() == 0);
  at::Tensor rows = a.rows, features = a.indices, dh = df.mul_(m.active);
  if (Gq.defined()) {
    rows = at::cat({rows, aux.a.rows});
    features = at::cat({features, aux.a.indices});
    dh = at::cat({dh, sparse_row_dot(aux.a, Gq, W_D_).mul_(aux.active)});
  }

  // ---- into the parameters: scatter-adds into the used rows/columns ----
  sparse_weight_grad(gW_E_.t(), rows, features, dh, x);
  gb_E_.copy_(sparse_feature_sum(features, dh, S));
  if (Gq.defined()) {
    sparse_weight_grad(gW_D_, at::cat({a.rows, aux.a.rows + N}),
                       at::cat({a.indices, aux.a.indices}), at::cat({a.values, aux.a.values}),
                       at::cat({G, Gq}));
  } else {
    sparse_weight_grad(gW_D_, a.rows, a.indices, a.values, G);
  }
  if (penalised && gating) {
    gW_D_.add_(W_D_ * at::where(at::gt(n, 0), gn / n, at::zeros_like(n)).unsqueeze(1));
  }
  if (b_D_.defined()) at::sum_out(gb_D_, G, {0});

  // ---- metrics ----
  const at::Tensor counted =
      st.mask.defined() ? m.active * (w_tok * st.n_valid).index_select(0, a.rows) : m.active;
  out.fired = sparse_feature_sum(a.indices, counted, S).round().to(at::kLong);
  finish_sums(out, st.n_valid);
  out.sparse_feature_acts = m.a;
  out.reconstructed = xhat;
  out.label = y;
  return out;
}

}  // namespace saes::dictionaries

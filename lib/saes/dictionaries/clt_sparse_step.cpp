// CrossLayerTranscoder's sparse training step and sparse decode (TopK family, ReLU): the encoder
// GEMMs are the only dense products. f's entries are held once, by token, with features numbered
// layer-major (l·d_sae + i); target layer t reads the entries of source layers l <= t, i.e. the
// features below (t+1)·d_sae, which are exactly the rows of W_D[t] viewed as [(t+1)·d_sae, d].
// Decode, ∂L/∂f, the penalty and both weight gradients touch only those entries
// (sparse_kernels.h). Same maths as the dense step (clt_step.cpp).
#include <utility>
#include <vector>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/count_nonzero.h>
#include <ATen/ops/div.h>
#include <ATen/ops/eq.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/lt.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/remainder.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros_like.h>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/clt.h"
#include "saes/dictionaries/sparse_kernels.h"
#include "saes/dictionaries/sparse_step_parts.h"

namespace saes::distributed {
class Communicator;
}  // namespace saes::distributed

namespace saes::dictionaries {
namespace {

/// The entries of `a` whose feature is below `n_features` (target t: n_features = (t+1)·d_sae),
/// and their positions in `a` (undefined when every entry is kept).
std::pair<SparseActs, at::Tensor> below(const SparseActs& a, std::int64_t n_features) {
  const at::Tensor pos = at::nonzero(at::lt(a.indices, n_features)).squeeze(1);
  if (pos.numel() == a.nnz()) {
    SparseActs all = a;
    all.n_features = n_features;
    return {all, at::Tensor()};
  }
  return {sparse_from_coo(a.rows.index_select(0, pos), a.indices.index_select(0, pos),
                  a.values.index_select(0, pos), a.n_rows, n_features),
          pos};
}

/// Candidate entries (values: the scores) of the gating scores `s` [N, L, S] for act_fn, by
/// token with features l·S + i: per (token, layer) for topk, per layer over the batch for
/// batchtopk, over all layers jointly for the layer variants, the positive ones for ReLU.
SparseActs select_entries(ActFn act, const at::Tensor& s, std::int64_t k,
                          distributed::Communicator* group) {
  const std::int64_t N = s.size(0), L = s.size(1), S = s.size(2);
  switch (act) {
    case ActFn::kRelu:
      return detail::candidates(ActFn::kRelu, s.view({N, L * S}), 0, nullptr);
    case ActFn::kLayerTopK:
      return detail::candidates(ActFn::kTopK, s.view({N, L * S}), k, group);
    case ActFn::kBatchLayerTopK:
      return detail::candidates(ActFn::kBatchTopK, s.view({N, L * S}), k, group);
    case ActFn::kTopK: {  // rows n·L + l of [N·L, S]
      const SparseActs c = detail::candidates(ActFn::kTopK, s.view({N * L, S}), k, group);
      return sparse_from_coo(at::div(c.rows, L, "floor"), c.indices + at::remainder(c.rows, L) * S,
                     c.values, N, L * S);
    }
    case ActFn::kBatchTopK: {
      std::vector<at::Tensor> flat, values;
      for (std::int64_t l = 0; l < L; ++l) {
        const SparseActs c = detail::candidates(ActFn::kBatchTopK, s.select(1, l), k, group);
        flat.push_back(c.rows * (L * S) + (l * S) + c.indices);
        values.push_back(c.values);
      }
      const auto [sorted, order] = at::sort(at::cat(flat));
      return sparse_from_flat(sorted, at::cat(values).index_select(0, order), N, L * S);
    }
    case ActFn::kJumpRelu:
      break;
  }
  SAES_ASSERT(false, "no sparse clt step for this activation function");
  return {};
}

}  // namespace

double CrossLayerTranscoder::density_threshold() const {
  return cfg_.decode_with_csr ? cfg_.sparsity_threshold_for_csr : kSparseMaxDensity;
}

bool CrossLayerTranscoder::decodes_sparsely(const at::Tensor& f) const {
  const SparseKernels mode = cfg_.sparse_kernels;
  if (mode == SparseKernels::kOff) return false;
  if (mode == SparseKernels::kOn) return true;
  if (auto_prefers_dense()) return false;
  const auto active = static_cast<double>(at::count_nonzero(f).item<std::int64_t>());
  return active <= density_threshold() * static_cast<double>(f.numel());
}

bool CrossLayerTranscoder::uses_sparse_step(const at::Tensor& s, std::int64_t k) const {
  const SparseKernels mode = cfg_.sparse_kernels;
  if (mode == SparseKernels::kOff || cfg_.act_fn == ActFn::kJumpRelu) return false;
  if (mode == SparseKernels::kOn) return true;
  if (auto_prefers_dense()) return false;
  const double S = static_cast<double>(local_d_sae()), L = static_cast<double>(n_layers());
  switch (cfg_.act_fn) {
    case ActFn::kTopK:
    case ActFn::kBatchTopK:
      return static_cast<double>(k) / S <= density_threshold();
    case ActFn::kLayerTopK:
    case ActFn::kBatchLayerTopK:
      return static_cast<double>(k) / (S * L) <= density_threshold();
    default:
      break;
  }
  // ReLU: the density over the whole dictionary, so that every rank of a model group agrees
  const std::vector<double> counts = sum_over_features(
      {static_cast<double>(at::count_nonzero(at::gt(s, 0)).item<std::int64_t>()),
       static_cast<double>(s.numel())});
  return counts[0] <= density_threshold() * counts[1];
}

at::Tensor CrossLayerTranscoder::decode_sparse(const SparseActs& a) const {
  const std::int64_t L = n_layers(), S = local_d_sae();
  SAES_CHECK(a.n_features == L * S, DataError,
             "sparse feature acts have {} features, expected L·d_sae = {}", a.n_features, L * S);
  std::vector<at::Tensor> out;
  for (std::int64_t t = 0; t < L; ++t) {
    const SparseActs sub = below(a, (t + 1) * S).first;
    out.push_back(sparse_decode(sub, W_D_[t].view({(t + 1) * S, cfg_.d_model}),
                                shard_.sharded() ? at::Tensor() : b_D_[t]));
  }
  at::Tensor yhat = at::stack(out, 0);
  if (shard_.sharded()) add_decoder_biases(yhat);
  return yhat;
}

StepResult CrossLayerTranscoder::sparse_step(const StepState& st, const LossSettings& ls) {
  const at::Tensor &x = st.x, &y = st.y, &w = st.w, &n = st.n;
  const std::int64_t N = x.size(0), L = n_layers(), S = local_d_sae(), d = cfg_.d_model;
  const bool gating = cfg_.sparsity_include_decoder_norm;
  distributed::Communicator* group = shard_.sharded() ? shard_.group : nullptr;
  StepResult out;
  out.n_tokens = st.n_valid;

  // ---- forward: select on s (over the whole dictionary when sharded), f's entries = h at the
  // active entries (exactly the dense f) ----
  SparseActs a = select_entries(cfg_.act_fn, st.s, st.k, group);
  const at::Tensor active = at::gt(a.values, 0).to(a.values.scalar_type());
  a.values = st.h.view({-1}).index_select(0, a.rows * (L * S) + a.indices) * active;
  const at::Tensor layer = at::div(a.indices, S, "floor");  // each entry's source layer
  std::vector<std::pair<SparseActs, at::Tensor>> targets;  // entries read by each target layer
  std::vector<at::Tensor> yhat_t;
  for (std::int64_t t = 0; t < L; ++t) {
    targets.push_back(below(a, (t + 1) * S));
    yhat_t.push_back(sparse_decode(targets.back().first, W_D_[t].view({(t + 1) * S, d}),
                                   group != nullptr ? at::Tensor() : b_D_[t]));
  }
  at::Tensor yhat = at::stack(yhat_t, 0);  // [L, N, d]
  if (group != nullptr) add_decoder_biases(yhat);
  const at::Tensor r = yhat - y;
  out.l_rec = at::sum(at::sum(r * r, {2}) * w).item<double>() / static_cast<double>(L);
  const at::Tensor G = r * (w.view({1, N, 1}) * (2.0 / static_cast<double>(L)));

  // ---- backward into f's entries: ∂f_e = Σ_{t >= l_e} ⟨G[t][n_e], W_D[t][feature_e]⟩ ----
  at::Tensor df = at::zeros_like(a.values);
  for (std::int64_t t = 0; t < L; ++t) {
    const auto& [sub, pos] = targets[static_cast<std::size_t>(t)];
    const at::Tensor dot = sparse_row_dot(sub, G[t], W_D_[t].view({(t + 1) * S, d}));
    if (pos.defined()) {
      df.index_add_(0, pos, dot);
    } else {
      df.add_(dot);
    }
  }
  // ---- the penalty on u = f·N per (token, layer) row, weight w/L; p̂ over tokens and layers ----
  if (ls.sparsity != SparsityPenalty::kNone && ls.l1_coefficient != 0) {
    SparseActs rows_tl;
    rows_tl.rows = a.rows * L + layer;
    rows_tl.indices = a.indices - layer * S;
    rows_tl.values = a.values;
    rows_tl.n_rows = N * L;
    rows_tl.n_features = S;
    const at::Tensor w_rows = (w / static_cast<double>(L)).view({N, 1}).expand({N, L}).reshape(-1);
    at::Tensor no_norm_grad;
    out.l_sparsity = detail::penalty(
        ls, rows_tl, w_rows, gating ? n.view({-1}).index_select(0, a.indices) : at::Tensor(), df,
        no_norm_grad, [this](at::Tensor& t) { sum_over_features(t); }, shard_.rank() == 0);
  }
  const at::Tensor dh = df.mul_(active);

  // ---- into the parameters: scatter-adds into the used rows ----
  for (std::int64_t l = 0; l < L; ++l) {
    const at::Tensor sel = at::nonzero(at::eq(layer, l)).squeeze(1);
    sparse_weight_grad(gW_E_[l].t(), a.rows.index_select(0, sel),
                       a.indices.index_select(0, sel) - l * S, dh.index_select(0, sel),
                       x.select(1, l));
  }
  gb_E_.view({-1}).copy_(sparse_feature_sum(a.indices, dh, L * S));
  for (std::int64_t t = 0; t < L; ++t) {
    const SparseActs& sub = targets[static_cast<std::size_t>(t)].first;
    sparse_weight_grad(gW_D_[t].view({(t + 1) * S, d}), sub.rows, sub.indices, sub.values, G[t]);
    if (b_D_[t].defined()) at::sum_out(gb_D_[t], G[t], {0});
  }

  // ---- metrics ----
  const at::Tensor counted =
      st.mask.defined() ? active * (w * st.n_valid).index_select(0, a.rows) : active;
  out.fired = sparse_feature_sum(a.indices, counted, L * S).round().to(at::kLong);
  const std::vector<double> sums = sum_over_features(
      {out.l_sparsity, static_cast<double>(at::sum(out.fired).item<std::int64_t>())});
  out.l_sparsity = sums[0];
  out.l0 = sums[1] / st.n_valid;
  out.loss = out.l_rec + out.l_sparsity;
  out.sparse_feature_acts = std::move(a);
  out.reconstructed = yhat;
  out.label = y;
  return out;
}

}  // namespace saes::dictionaries

// Internal to dictionaries/: the parts of a sparse training step that the variants share — the
// selection of the active entries of an activation function, f's entries from the selected
// scores, and the sparsity penalty on those entries with its gradient (spec §3.3, §3.4).
#pragma once

#include <cstdint>
#include <functional>

#include <ATen/core/Tensor.h>

#include "saes/dictionaries/config.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/dictionaries/sparse_kernels.h"

namespace saes::distributed {
class Communicator;
}  // namespace saes::distributed

namespace saes::dictionaries::detail {

/// Active entries of one activation function: f's entries (values = h·active) and the 0/1 mask.
struct Selected {
  SparseActs a;
  at::Tensor active;  ///< [nnz] float: 1 where the entry is active (an entry may be a TopK pick
                      ///< with score ≤ 0, which the dense mask drops too)
};

/// Flat positions (row·m + column, ascending) of the `kk` largest entries of `score` [N, m]
/// overall (exact; rows' candidates in parallel, see the definition).
at::Tensor batch_top_positions(const at::Tensor& score, std::int64_t k, std::int64_t kk);

/// Candidate entries of `score` [N, m] (values = the scores): the k largest per row (TopK), the
/// k·N largest overall (BatchTopK), or the positive ones (ReLU); for a sharded dictionary
/// (`group` set) selected over the whole dictionary (feature_parallel.h).
SparseActs candidates(ActFn act_fn, const at::Tensor& score, std::int64_t k,
                      distributed::Communicator* group);

/// Turns candidate scores into f's entries: active = score > 0, values = h·active with
/// h = score / n when the score was gated by the decoder norms `n` (then n > 0 wherever active),
/// else h = score. `feature_of` maps the candidates' columns to features (Aux-K's dead columns).
Selected finish(SparseActs a, const at::Tensor& n, const at::Tensor& feature_of);

/// The sparsity penalty (spec §3.4) on f's entries `a` (rows: the penalty's rows, each with the
/// weight w_tok[row]; tanh-quad's p̂ is over a.n_rows rows): returns λ·penalty, adds ∂/∂f to `df`
/// and, with gating (ng_e defined: the decoder norm of each entry's feature), ∂/∂n to `gn` when
/// `gn` is defined (undefined: the norms are constants of the step). `sum_rows` sums per-row
/// partial sums over the model group (identity when not sharded); the value returned is this
/// rank's share of the sum over the group (counts_whole: the rank that counts row terms).
/// `frequency_rows` > 0: tanh-quad's p̂ averages over that many rows instead (Lorsa: the real
/// tokens of the mask; padding rows never fire).
double penalty(const LossSettings& ls, const SparseActs& a, const at::Tensor& w_tok,
               const at::Tensor& ng_e, at::Tensor& df, at::Tensor& gn,
               const std::function<void(at::Tensor&)>& sum_rows, bool counts_whole,
               double frequency_rows = 0.0);

}  // namespace saes::dictionaries::detail

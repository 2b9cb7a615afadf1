// Feature shards and the exact distributed TopK / BatchTopK selection (local top candidates, one
// all-gather, the top of the merged candidates).
#include "saes/dictionaries/feature_parallel.h"

#include <algorithm>
#include <tuple>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/div.h>
#include <ATen/ops/eq.h>
#include <ATen/ops/full.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/lt.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/remainder.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>

#include "saes/core/error.h"
#include "saes/distributed/communicator.h"

namespace saes::dictionaries {

bool FeatureShard::sharded() const { return group != nullptr && group->size() > 1; }
int FeatureShard::rank() const { return sharded() ? group->rank() : 0; }
int FeatureShard::size() const { return sharded() ? group->size() : 1; }
bool FeatureShard::heads_sharded() const { return head_group != nullptr && head_group->size() > 1; }
int FeatureShard::head_rank() const { return heads_sharded() ? head_group->rank() : 0; }
int FeatureShard::head_size() const { return heads_sharded() ? head_group->size() : 1; }

std::int64_t FeatureShard::count(std::int64_t d_sae) const {
  SAES_CHECK(d_sae % size() == 0, ConfigError,
             "model_parallel_size {} must divide d_sae {} (features are split evenly)", size(),
             d_sae);
  return d_sae / size();
}

std::int64_t FeatureShard::offset(std::int64_t d_sae) const { return rank() * count(d_sae); }

namespace {

/// t[rows[i], cols[i]] for a 2-D t: [n].
at::Tensor at2(const at::Tensor& t, const at::Tensor& rows, const at::Tensor& cols) {
  return t.reshape({-1}).index_select(0, rows * t.size(1) + cols);
}

/// Which of this rank's candidates the global top `kk` keeps, per row. cand_values: [rows, c]
/// candidate scores ≥ 0 (c may differ per rank). Every rank pads its candidates to width `kk`
/// with −1 (below any real score) so that the gathered shapes agree. Returns (row, candidate
/// column) of the kept candidates of this rank.
std::pair<at::Tensor, at::Tensor> merged_selection(const at::Tensor& cand_values, std::int64_t kk,
                                                   distributed::Communicator& group) {
  const std::int64_t rows = cand_values.size(0), c = cand_values.size(1);
  const std::int64_t M = group.size();
  at::Tensor padded = at::full({rows, kk}, -1.0, cand_values.options());
  padded.narrow(1, 0, std::min(c, kk)).copy_(cand_values.narrow(1, 0, std::min(c, kk)));
  const at::Tensor all = group
                             .all_gather(padded)  // [M·rows, kk], rank-major
                             .view({M, rows, kk})
                             .permute({1, 0, 2})
                             .reshape({rows, M * kk});
  const at::Tensor pick = std::get<1>(at::topk(all, kk, -1, true, false));  // [rows, kk]
  const at::Tensor rank_of = at::div(pick, kk, "floor");
  const at::Tensor cand = at::remainder(pick, kk);
  const at::Tensor mine =
      at::nonzero(at::logical_and(at::eq(rank_of, group.rank()), at::lt(cand, c)));
  const at::Tensor sel_rows = mine.select(1, 0);
  return {sel_rows, at2(cand, sel_rows, mine.select(1, 1))};
}

}  // namespace

at::Tensor sharded_top_positions(ActFn act_fn, const at::Tensor& score, std::int64_t k,
                                 distributed::Communicator& group) {
  SAES_CHECK(score.dim() == 2, DataError, "sharded top-k: expected [tokens, features] scores");
  SAES_CHECK(act_fn == ActFn::kTopK || act_fn == ActFn::kBatchTopK, UnsupportedError,
             "feature-parallel selection is defined for topk and batchtopk only");
  SAES_CHECK(k >= 1, ConfigError, "top-k: k must be >= 1, got {}", k);
  const std::int64_t N = score.size(0), m = score.size(1);
  const at::Tensor r = at::relu(score);
  if (act_fn == ActFn::kTopK) {
    const auto [vals, cols] = at::topk(r, std::min(k, m), -1, true, false);  // [N, ≤k]
    const auto [sel_rows, sel_cand] = merged_selection(vals, k, group);
    return std::get<0>(at::sort(sel_rows * m + at2(cols, sel_rows, sel_cand)));
  }
  const std::int64_t kk = k * N;  // ≤ the whole batch's entries (k ≤ features of all ranks)
  const auto [vals, pos] = at::topk(r.reshape({1, N * m}), std::min(kk, N * m), -1, true, false);
  const auto [sel_rows, sel_cand] = merged_selection(vals, kk, group);
  return std::get<0>(at::sort(at2(pos, sel_rows, sel_cand)));
}

at::Tensor sharded_activation_mask(ActFn act_fn, const at::Tensor& score, std::int64_t k,
                                   distributed::Communicator& group) {
  at::Tensor mask = at::zeros({score.numel()}, score.options().dtype(at::kBool));
  mask.index_fill_(0, sharded_top_positions(act_fn, score, k, group), true);
  return at::logical_and(mask.view(score.sizes()), at::gt(score, 0));
}

}  // namespace saes::dictionaries

// Feature (model) parallelism of a dictionary (issue #5, spec §9): which features a rank holds and
// the exact distributed TopK / BatchTopK selection over the feature-sharded scores.
#pragma once

#include <cstdint>

#include "saes/dictionaries/config.h"

namespace at {
class Tensor;
}  // namespace at

namespace saes::distributed {
class Communicator;
}  // namespace saes::distributed

namespace saes::dictionaries {

/// The features of d_sae this rank holds: [rank·d_sae/M, (rank+1)·d_sae/M) of the model group of
/// size M (the group's rank order). No group, or a group of one rank: all features, unsharded.
/// A crosscoder's heads are split likewise over `head_group` (head parallelism, P ranks: heads
/// [head_rank·H/P, (head_rank+1)·H/P)); every other variant refuses a head group of > 1 rank.
struct FeatureShard {
  distributed::Communicator* group = nullptr;       ///< non-owning; must outlive the dictionary
  distributed::Communicator* head_group = nullptr;  ///< non-owning, as group

  bool heads_sharded() const;
  int head_rank() const;
  int head_size() const;

  bool sharded() const;
  int rank() const;
  int size() const;
  /// Features on this rank; throws ConfigError unless `size()` divides d_sae.
  std::int64_t count(std::int64_t d_sae) const;
  std::int64_t offset(std::int64_t d_sae) const;
};

/// Flat positions (row·m + column, ascending) in this rank's block `score` [N, m] of the global
/// selection over the feature group's scores (the blocks of all ranks side by side; m may differ
/// per rank, as for Aux-K's dead columns; N may not):
///  - topk:      per row, the k largest of ReLU(score) over all blocks;
///  - batchtopk: the k·N largest of ReLU(score) over the whole batch.
/// k: 1..(the columns of all ranks together).
/// Exact: each rank proposes its own top candidates (k per row, or k·N overall), the candidates
/// of all ranks are gathered (k·M per row, k·N·M overall) and the top of those is the global top.
/// Ties at the last selected value are broken by rank, then by the local candidate order — a
/// different choice among equal values than one process makes, never a different count.
/// Callers keep only entries with score > 0, as activation_mask does. Collective over `group`.
at::Tensor sharded_top_positions(ActFn act_fn, const at::Tensor& score, std::int64_t k,
                                 distributed::Communicator& group);

/// The same selection as a bool mask of score's shape, and only where score > 0.
at::Tensor sharded_activation_mask(ActFn act_fn, const at::Tensor& score, std::int64_t k,
                                   distributed::Communicator& group);

}  // namespace saes::dictionaries

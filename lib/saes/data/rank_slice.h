// Data-parallel sharding by slicing: every rank reads the same deterministic global stream and
// keeps its contiguous slice of each global batch, so N ranks see exactly the single process's
// batches between them (docs/distributed.md, "Splitting the data").
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "saes/data/activation_stream.h"

namespace saes::data {

/// Rows [n·rank/world, n·(rank+1)/world) along dim 0 of every tensor of `batch` (tokens of a 1-D
/// batch, sequences of a 2-D one); n_tokens scaled to the slice. Throws ConfigError for a rank
/// outside [0, world) and DataError when the tensors disagree on dim 0.
ActivationBatch slice_for_rank(const ActivationBatch& batch, int rank, int world);

/// Wraps a global stream (owning): next() is this rank's slice of the global stream's next batch;
/// state()/restore() are the global stream's, hence equal on every rank and independent of world.
class RankSliceStream final : public ActivationStream {
 public:
  RankSliceStream(std::unique_ptr<ActivationStream> global, int rank, int world);
  std::optional<ActivationBatch> next() override;
  std::string state() const override;
  void restore(const std::string& state) override;
  StreamStats stats() const override;

 private:
  std::unique_ptr<ActivationStream> global_;
  int rank_;
  int world_;
};

}  // namespace saes::data

// slice_for_rank and RankSliceStream: each data-parallel rank's contiguous share of a global batch.
#include "saes/data/rank_slice.h"

#include <utility>

#include <ATen/core/Tensor.h>

#include "saes/core/error.h"

namespace saes::data {
namespace {

std::int64_t leading_rows(const ActivationBatch& batch) {
  if (batch.tokens.defined()) return batch.tokens.size(0);
  SAES_CHECK(!batch.acts.empty(), DataError, "rank slice: the batch has neither tokens nor acts");
  return batch.acts.begin()->second.size(0);
}

at::Tensor rows_of(const at::Tensor& t, std::int64_t n, std::int64_t begin, std::int64_t end,
                   const std::string& what) {
  if (!t.defined()) return t;
  SAES_CHECK(t.dim() > 0 && t.size(0) == n, DataError,
             "rank slice: {} has {} rows along dim 0, the batch has {}", what,
             t.dim() > 0 ? t.size(0) : 0, n);
  return t.narrow(0, begin, end - begin);
}

}  // namespace

ActivationBatch slice_for_rank(const ActivationBatch& batch, int rank, int world) {
  SAES_CHECK(world >= 1 && rank >= 0 && rank < world, ConfigError,
             "rank slice: rank {} is outside [0, {})", rank, world);
  const std::int64_t n = leading_rows(batch);
  const std::int64_t begin = n * rank / world;
  const std::int64_t end = n * (rank + 1) / world;
  ActivationBatch out;
  for (const auto& [hook, acts] : batch.acts) out.acts[hook] = rows_of(acts, n, begin, end, hook);
  out.tokens = rows_of(batch.tokens, n, begin, end, "tokens");
  out.mask = rows_of(batch.mask, n, begin, end, "mask");
  out.n_tokens = n > 0 ? batch.n_tokens * (end - begin) / n : 0;
  return out;
}

RankSliceStream::RankSliceStream(std::unique_ptr<ActivationStream> global, int rank, int world)
    : global_(std::move(global)), rank_(rank), world_(world) {
  SAES_ASSERT(global_ != nullptr, "RankSliceStream needs a stream");
  SAES_CHECK(world >= 1 && rank >= 0 && rank < world, ConfigError,
             "rank slice: rank {} is outside [0, {})", rank, world);
}

std::optional<ActivationBatch> RankSliceStream::next() {
  auto batch = global_->next();
  if (!batch) return std::nullopt;
  return slice_for_rank(*batch, rank_, world_);
}

std::string RankSliceStream::state() const { return global_->state(); }

void RankSliceStream::restore(const std::string& state) { global_->restore(state); }

StreamStats RankSliceStream::stats() const { return global_->stats(); }

}  // namespace saes::data

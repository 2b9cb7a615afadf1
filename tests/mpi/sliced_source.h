// The deterministic batch source of the distributed training tests: global batch i is
// [kSlicedSequences, kSlicedContext, d] activations (seed seed_base + i) with a mask that gives
// each sequence a different number of valid tokens; every rank builds the same batches and gets
// its data-parallel slice (the whole batch with one data rank).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "saes/data/rank_slice.h"
#include "saes/training/trainer.h"

namespace saes::testing {

inline constexpr std::int64_t kSlicedSequences = 8;
inline constexpr std::int64_t kSlicedContext = 6;

class SlicedSource : public saes::training::BatchSource {
 public:
  SlicedSource(std::string hook, std::int64_t dim, std::uint64_t seed_base, int rank, int size)
      : hook_(std::move(hook)), dim_(dim), seed_base_(seed_base), rank_(rank), size_(size) {}
  std::optional<saes::training::TrainBatch> next() override {
    auto gen =
        at::make_generator<at::CPUGeneratorImpl>(seed_base_ + static_cast<std::uint64_t>(index_));
    saes::data::ActivationBatch global;
    global.acts[hook_] = at::randn({kSlicedSequences, kSlicedContext, dim_}, gen, at::kFloat);
    const at::Tensor lengths =
        at::arange(kSlicedSequences, at::kLong).add(index_).remainder(kSlicedContext).add(1);
    global.mask = at::arange(kSlicedContext, at::kLong).unsqueeze(0).lt(lengths.unsqueeze(1));
    global.tokens = at::zeros({kSlicedSequences, kSlicedContext}, at::kLong);
    global.n_tokens = kSlicedSequences * kSlicedContext;
    ++index_;
    const saes::data::ActivationBatch local = saes::data::slice_for_rank(global, rank_, size_);
    saes::training::TrainBatch b;
    b.acts = local.acts;
    b.mask = local.mask;
    b.tokens = local.tokens;
    b.n_tokens = local.n_tokens;
    return b;
  }
  std::string state() const override { return std::to_string(index_); }
  void restore(const std::string& state) override { index_ = std::stoll(state); }

 private:
  std::string hook_;
  std::int64_t dim_;
  std::uint64_t seed_base_;
  int rank_;
  int size_;
  std::int64_t index_ = 0;
};

}  // namespace saes::testing

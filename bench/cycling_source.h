// The batch source of the training benchmarks: a few pre-drawn random global batches [batch, d]
// (drawing them every step would dominate small workloads), cycled; each rank gets its
// data-parallel slice (the whole batch with one data rank).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/randn.h>

#include "saes/data/rank_slice.h"
#include "saes/training/trainer.h"

namespace saes::bench {

class CyclingSource : public saes::training::BatchSource {
 public:
  CyclingSource(const std::string& hook, std::int64_t d, std::int64_t batch, int rank = 0,
                int world = 1) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    for (int i = 0; i < 4; ++i) {
      saes::data::ActivationBatch global;
      global.acts[hook] = at::randn({batch, d}, gen, at::kFloat);
      global.n_tokens = batch;
      batches_.push_back(saes::data::slice_for_rank(global, rank, world));
    }
  }
  std::optional<saes::training::TrainBatch> next() override {
    const saes::data::ActivationBatch& b = batches_[index_++ % batches_.size()];
    saes::training::TrainBatch out;
    out.acts = b.acts;
    out.n_tokens = b.n_tokens;
    return out;
  }
  std::string state() const override { return std::to_string(index_); }
  void restore(const std::string&) override {}

 private:
  std::vector<saes::data::ActivationBatch> batches_;
  std::size_t index_ = 0;
};

}  // namespace saes::bench

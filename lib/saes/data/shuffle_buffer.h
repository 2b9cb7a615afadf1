// RowBatcher: the batchler of spec §6.1 — re-batches rows to batch_size, optionally through a
// seeded online shuffle buffer (fill to buffer_size, permute, emit while ≥ buffer_size/2 remain).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <random>

#include "saes/data/activation_rows.h"

namespace saes::data {

class RowBatcher {
 public:
  using Pull = std::function<std::optional<Rows>()>;

  /// buffer_size: nullopt = no shuffling; otherwise must be ≥ batch_size (ConfigError).
  RowBatcher(std::int64_t batch_size, std::optional<std::int64_t> buffer_size,
             std::uint64_t perm_seed);

  /// The next batch of batch_size rows (the last may be shorter), pulling chunks as needed;
  /// nullopt when `pull` is exhausted and the buffer is empty. The rows and permutations depend
  /// only on the sequence of chunk sizes pulled and the seed, so ghost rows replay them exactly.
  std::optional<Rows> next(const Pull& pull);

  /// Every buffered row's id, in buffer order (for resume).
  at::Tensor buffered_ids() const;
  /// Replaces the buffered rows by `rows` (same ids, same order): materializes a ghost replay.
  void replace_buffer(Rows rows);

 private:
  Rows take_front(std::int64_t n);
  void fill(const Pull& pull, std::int64_t target);
  void permute();

  std::int64_t batch_size_;
  std::optional<std::int64_t> buffer_size_;
  std::mt19937_64 rng_;
  std::deque<Rows> pieces_;
  std::int64_t size_ = 0;
  bool exhausted_ = false;
  bool permuted_ = false;  ///< shuffle mode: the buffer was permuted since its last refill
};

}  // namespace saes::data

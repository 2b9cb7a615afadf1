// RowBatcher: piecewise row buffer with front slicing, refill and whole-buffer permutation.
#include "saes/data/shuffle_buffer.h"

#include <algorithm>
#include <vector>

#include <ATen/ops/cat.h>
#include <ATen/ops/from_blob.h>

#include "saes/core/error.h"

namespace saes::data {

RowBatcher::RowBatcher(std::int64_t batch_size, std::optional<std::int64_t> buffer_size,
                       std::uint64_t perm_seed)
    : batch_size_(batch_size), buffer_size_(buffer_size), rng_(perm_seed) {
  SAES_CHECK(batch_size > 0, ConfigError, "batch_size must be > 0, got {}", batch_size);
  SAES_CHECK(!buffer_size || *buffer_size >= batch_size, ConfigError,
             "buffer_size ({}) must be >= batch_size ({})", buffer_size.value_or(0), batch_size);
}

void RowBatcher::fill(const Pull& pull, std::int64_t target) {
  while (size_ < target && !exhausted_) {
    auto rows = pull();
    if (!rows) {
      exhausted_ = true;
    } else if (rows->size() > 0) {
      size_ += rows->size();
      pieces_.push_back(std::move(*rows));
    }
  }
}

void RowBatcher::permute() {
  std::vector<Rows> all(pieces_.begin(), pieces_.end());
  Rows joined = cat_rows(all);
  pieces_.clear();
  if (size_ == 0) return;
  auto perm = seeded_permutation(size_, rng_);
  at::Tensor index =
      at::from_blob(perm.data(), {size_}, at::TensorOptions().dtype(at::kLong)).clone();
  pieces_.push_back(index_rows(joined, index));
}

Rows RowBatcher::take_front(std::int64_t n) {
  std::vector<Rows> parts;
  while (n > 0) {
    Rows& front = pieces_.front();
    const std::int64_t take = std::min(n, front.size());
    if (take == front.size()) {
      parts.push_back(std::move(front));
      pieces_.pop_front();
    } else {
      parts.push_back(slice_rows(front, 0, take));
      front = slice_rows(front, take, front.size() - take);
    }
    n -= take;
    size_ -= take;
  }
  return cat_rows(parts);
}

std::optional<Rows> RowBatcher::next(const Pull& pull) {
  if (!buffer_size_) {
    fill(pull, batch_size_);
    if (size_ == 0) return std::nullopt;
    return take_front(std::min(batch_size_, size_));
  }
  while (true) {
    if (permuted_ && 2 * size_ >= *buffer_size_ && size_ >= batch_size_) {
      return take_front(batch_size_);
    }
    if (permuted_ && exhausted_) {
      if (size_ == 0) return std::nullopt;
      return take_front(std::min(batch_size_, size_));
    }
    fill(pull, *buffer_size_);
    permute();
    permuted_ = true;
  }
}

at::Tensor RowBatcher::buffered_ids() const {
  std::vector<at::Tensor> ids;
  for (const auto& piece : pieces_) ids.push_back(piece.ids);
  if (ids.empty()) return at::Tensor();
  return at::cat(ids, 0);
}

void RowBatcher::replace_buffer(Rows rows) {
  SAES_ASSERT(rows.size() == size_, "replacement must keep the buffer size");
  pieces_.clear();
  if (size_ > 0) pieces_.push_back(std::move(rows));
}

}  // namespace saes::data

// ShardBufferPool: recycles the memory behind decoded shard tensors. Fresh memory costs a page
// fault and a kernel page clear on first write (about a fifth of a shard's decode time); a stream
// that decodes shard after shard of the same size can reuse the buffers of the ones dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "saes/core/dtype.h"

namespace at {
class Tensor;
}

namespace saes::io {

class ShardBufferPool : public std::enable_shared_from_this<ShardBufferPool> {
 public:
  /// A pool that keeps at most `max_free_buffers` returned buffers for reuse.
  static std::shared_ptr<ShardBufferPool> create(std::size_t max_free_buffers);
  ~ShardBufferPool();
  ShardBufferPool(const ShardBufferPool&) = delete;
  ShardBufferPool& operator=(const ShardBufferPool&) = delete;

  /// An uninitialised contiguous CPU tensor. Its memory is a returned buffer of at least its size
  /// (and at most twice it) when there is one; when the last reference to the tensor goes, the
  /// memory comes back to the pool (or is freed when the pool is full or gone).
  at::Tensor empty(const std::vector<std::int64_t>& shape, DType dtype);
  /// Buffers waiting for reuse.
  std::size_t free_buffers() const;

 private:
  explicit ShardBufferPool(std::size_t max_free_buffers);
  void give_back(void* data, std::size_t bytes);

  mutable std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;  ///< capacity → buffer
  std::size_t max_free_buffers_;
};

}  // namespace saes::io

// ShardBufferPool: 64-byte aligned malloc'd buffers handed out as at::from_blob tensors whose
// deleter returns them to the pool (a weak reference, so tensors may outlive the pool).
#include "saes/io/shard_buffers.h"

#include <cstdlib>
#include <new>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

namespace saes::io {
namespace {

constexpr std::size_t kAlignment = 64;

}  // namespace

std::shared_ptr<ShardBufferPool> ShardBufferPool::create(std::size_t max_free_buffers) {
  return std::shared_ptr<ShardBufferPool>(new ShardBufferPool(max_free_buffers));
}

ShardBufferPool::ShardBufferPool(std::size_t max_free_buffers)
    : max_free_buffers_(max_free_buffers) {}

ShardBufferPool::~ShardBufferPool() {
  for (const auto& [bytes, data] : free_) std::free(data);
}

at::Tensor ShardBufferPool::empty(const std::vector<std::int64_t>& shape, DType dtype) {
  const auto options = at::TensorOptions().dtype(to_torch(dtype));
  std::size_t bytes = dtype_size(dtype);
  for (auto d : shape) bytes *= static_cast<std::size_t>(d);
  if (bytes == 0) return at::empty(shape, options);
  void* data = nullptr;
  std::size_t capacity = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.lower_bound(bytes);
    if (it != free_.end() && it->first <= 2 * bytes) {
      capacity = it->first;
      data = it->second;
      free_.erase(it);
    }
  }
  if (data == nullptr) {
    capacity = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    data = std::aligned_alloc(kAlignment, capacity);
    if (data == nullptr) throw std::bad_alloc();
  }
  std::weak_ptr<ShardBufferPool> pool = weak_from_this();
  return at::from_blob(
      data, shape,
      [pool, capacity](void* p) {
        if (auto owner = pool.lock()) {
          owner->give_back(p, capacity);
        } else {
          std::free(p);
        }
      },
      options);
}

std::size_t ShardBufferPool::free_buffers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return free_.size();
}

void ShardBufferPool::give_back(void* data, std::size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.size() < max_free_buffers_) {
      free_.emplace(bytes, data);
      return;
    }
  }
  std::free(data);
}

}  // namespace saes::io

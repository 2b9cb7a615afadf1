// The block cache as a c10::Allocator. Large blocks are anonymous mappings of a multiple of 2 MiB
// with MADV_HUGEPAGE; freed ones wait in a size-keyed free list. Small requests go to the replaced
// allocator untouched (its DataPtr, its deleter: no lock on the hot path). The raw interface needs
// one deleter for both kinds; it looks the pointer up among the live large blocks.
//
// LibTorch 1.13 declares `allocate` const; 2.3 and later declare it non-const and add a pure
// `copy_data`. The class defines both `allocate` overloads and `copy_data` without `override`, so
// it overrides the right one on either version (the other is a plain overload).
#include "saes/core/cpu_block_cache.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <sys/mman.h>

namespace saes {
namespace {

constexpr std::size_t kLargeBytes = std::size_t{32} << 20;  // glibc's largest mmap threshold
constexpr std::size_t kHugePage = std::size_t{2} << 20;

class CpuBlockCache final : public c10::Allocator {
 public:
  CpuBlockCache(c10::Allocator* base, c10::DeleterFnPtr base_deleter)
      : base_(base), base_deleter_(base_deleter) {}

  c10::DataPtr allocate(std::size_t n) const { return allocate_block(n); }
  c10::DataPtr allocate(std::size_t n) { return allocate_block(n); }
  c10::DeleterFnPtr raw_deleter() const { return &release_any; }
  void copy_data(void* dest, const void* src, std::size_t count) const {
    if (count > 0) std::memcpy(dest, src, count);
  }

  CpuBlockCacheStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  static CpuBlockCache* instance;

 private:
  c10::DataPtr allocate_block(std::size_t n) const {
    if (n < kLargeBytes) return base_->allocate(n);
    void* p = take_large((n + kHugePage - 1) / kHugePage * kHugePage);
    return {p, p, &release_large, c10::Device(c10::DeviceType::CPU)};
  }

  void* take_large(std::size_t bytes) const {
    std::unique_lock<std::mutex> lock(mutex_);
    auto hit = free_.find(bytes);
    if (hit != free_.end()) {
      void* p = hit->second;
      free_.erase(hit);
      stats_.cached_bytes -= bytes;
      ++stats_.hits;
      mark_live(p, bytes);
      return p;
    }
    // Unmap cached blocks, largest first, until the new block keeps everything mapped within
    // the largest live total seen so far (or the cache is empty).
    while (!free_.empty() &&
           stats_.live_bytes + stats_.cached_bytes + bytes > stats_.peak_live_bytes) {
      auto last = std::prev(free_.end());
      ::munmap(last->second, last->first);
      stats_.cached_bytes -= last->first;
      free_.erase(last);
    }
    ++stats_.misses;
    lock.unlock();
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    ::madvise(p, bytes, MADV_HUGEPAGE);  // fewer faults; a no-op where THP is off
    lock.lock();
    mark_live(p, bytes);
    return p;
  }

  void mark_live(void* p, std::size_t bytes) const {
    live_[p] = bytes;
    stats_.live_bytes += bytes;
    stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
  }

  static void release_large(void* p) { instance->give_back(p); }

  // raw_deallocate: a live large block goes back to the cache, anything else to the replaced
  // allocator.
  static void release_any(void* p) {
    if (p != nullptr && !instance->give_back(p)) instance->base_deleter_(p);
  }

  // Moves the live large block at `p` to the free list; false if `p` is not one.
  bool give_back(void* p) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) return false;
    const std::size_t bytes = it->second;
    live_.erase(it);
    stats_.live_bytes -= bytes;
    stats_.cached_bytes += bytes;
    free_.emplace(bytes, p);
    return true;
  }

  c10::Allocator* base_;
  c10::DeleterFnPtr base_deleter_;
  mutable std::mutex mutex_;
  mutable std::multimap<std::size_t, void*> free_;
  mutable std::unordered_map<void*, std::size_t> live_;
  mutable CpuBlockCacheStats stats_;
};

CpuBlockCache* CpuBlockCache::instance = nullptr;

}  // namespace

bool install_cpu_block_cache() {
  static const bool installed = [] {
    c10::Allocator* base = c10::GetCPUAllocator();
    c10::DeleterFnPtr base_deleter = base->raw_deleter();
    if (base_deleter == nullptr) return false;
    CpuBlockCache::instance = new CpuBlockCache(base, base_deleter);  // lives until exit
    c10::SetCPUAllocator(CpuBlockCache::instance, /*priority=*/1);
    return true;
  }();
  return installed;
}

CpuBlockCacheStats cpu_block_cache_stats() {
  return CpuBlockCache::instance != nullptr ? CpuBlockCache::instance->stats()
                                            : CpuBlockCacheStats{};
}

}  // namespace saes

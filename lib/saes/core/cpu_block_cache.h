// A cache of large CPU blocks under LibTorch's CPU allocator. glibc serves every allocation above
// 32 MiB with a fresh mmap and unmaps it on free, so a training step that allocates the same
// [tokens x d_sae] tensors every step (400 MB each at d_sae 24576, batch 4096) faults in and clears
// every page of them again at every step. The cache keeps freed blocks of 32 MiB and more (rounded
// to 2 MiB, on transparent huge pages) for the next request of the same size, and never lets
// mapped plus cached bytes exceed the largest amount ever live, so peak memory is unchanged.
#pragma once

#include <cstddef>
#include <cstdint>

namespace saes {

/// Installs the cache as LibTorch's CPU allocator; smaller requests go to the allocator it
/// replaces, unchanged. Once per process (later calls do nothing), before the work; tensors
/// allocated before keep their own deleters. Returns false, installing nothing, when the current
/// CPU allocator has no raw deleter to hand small blocks back to. keep_freed_memory() (threads.h)
/// calls it.
bool install_cpu_block_cache();

struct CpuBlockCacheStats {
  std::size_t live_bytes = 0;       ///< large blocks held by tensors
  std::size_t cached_bytes = 0;     ///< large blocks freed and kept for reuse
  std::size_t peak_live_bytes = 0;  ///< the most ever live at once; live + cached stays under it
  std::uint64_t hits = 0;           ///< large requests served from the cache
  std::uint64_t misses = 0;         ///< large requests that mapped a new block
};

/// The cache's counters (all zero when it is not installed).
CpuBlockCacheStats cpu_block_cache_stats();

}  // namespace saes

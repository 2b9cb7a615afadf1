// Torch thread count and a BLAS sanity check at start-up (env.md §4: torch defaults to 1 thread on
// these VMs, and Debian's libtorch silently uses the 50× slower reference BLAS without OpenBLAS).
#pragma once

#include <string>

namespace saes {

class Logger;

/// Cores this process may run on (sched_getaffinity), divided among the ranks of this node when
/// `local_ranks` > 1; at least 1.
int available_cores(int local_ranks = 1);

/// Keeps freed memory in the process instead of handing it back to the kernel at every free
/// (glibc: heap allocations up to 32 MiB instead of mmap from 128 KiB, no heap trimming below
/// 1 GiB). CPU LibTorch allocates every intermediate tensor fresh, so without this each training
/// step re-faults and re-zeroes its [tokens × d_sae] buffers (~10% of a small dictionary's step,
/// docs/benchmarks.md); PyTorch's CPU tuning guide gets the same from jemalloc/tcmalloc. Blocks
/// above glibc's largest threshold go to the CPU block cache (cpu_block_cache.h). Peak memory is
/// unchanged; RSS stays at its peak. Once per process, before the work.
/// SAES_KEEP_FREED_MEMORY=0 turns both off, SAES_CPU_BLOCK_CACHE=0 the cache only.
void keep_freed_memory();

/// Sets torch's intra-op thread count: `requested` > 0 is used as is; 0 means available_cores().
/// Returns the count set.
int set_torch_threads(int requested, int local_ranks = 1);

struct BlasReport {
  std::string library;     ///< path of the loaded BLAS shared object, or "" if none was seen
  double gflops = 0;       ///< measured float32 GEMM throughput (256³, all torch threads)
  bool reference = false;  ///< the netlib reference BLAS is loaded (or, with no BLAS library
                           ///< visible, the GEMM ran below 2 GFLOP/s)
};

/// Inspects the loaded BLAS (/proc/self/maps) and times a small GEMM (~10 ms).
BlasReport check_blas();

/// Runs check_blas() and logs a warning with the fix (`apt-get install libopenblas0-openmp`) when
/// the reference BLAS is in use. Returns the report.
BlasReport warn_if_reference_blas(Logger& logger);

}  // namespace saes

// Thread count and BLAS check.
#include "saes/core/threads.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/rand.h>
#include <c10/core/InferenceMode.h>
#include <sched.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "saes/core/cpu_block_cache.h"
#include "saes/core/logging.h"

namespace saes {

int available_cores(int local_ranks) {
  cpu_set_t set;
  CPU_ZERO(&set);
  int cores = 1;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
  return std::max(1, cores / std::max(1, local_ranks));
}

void keep_freed_memory() {
  const char* off = std::getenv("SAES_KEEP_FREED_MEMORY");
  if (off != nullptr && std::strcmp(off, "0") == 0) return;
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest allowed value on 64-bit
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  const char* cache_off = std::getenv("SAES_CPU_BLOCK_CACHE");
  if (cache_off == nullptr || std::strcmp(cache_off, "0") != 0) install_cpu_block_cache();
}

int set_torch_threads(int requested, int local_ranks) {
  int threads = requested > 0 ? requested : available_cores(local_ranks);
  at::set_num_threads(threads);
  return threads;
}

namespace {

std::string loaded_blas_library() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    auto name = path.substr(path.rfind('/') + 1);
    if (name.rfind("libblas.so", 0) == 0 || name.rfind("libopenblas", 0) == 0 ||
        name.rfind("libmkl_rt", 0) == 0) {
      return path;
    }
  }
  return "";
}

}  // namespace

BlasReport check_blas() {
  BlasReport report;
  report.library = loaded_blas_library();
  c10::InferenceMode guard;
  constexpr int64_t kN = 256;
  at::Tensor a = at::rand({kN, kN});
  at::Tensor b = at::rand({kN, kN});
  at::mm(a, b);  // warm-up
  auto start = std::chrono::steady_clock::now();
  constexpr int kReps = 4;
  for (int i = 0; i < kReps; ++i) at::mm(a, b);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.gflops = 2.0 * kN * kN * kN * kReps / std::max(seconds, 1e-9) / 1e9;
  // Debian's reference BLAS lives in .../blas/libblas.so.3; OpenBLAS in .../openblas*/. The timing
  // alone is noisy on a busy machine, so it only decides when no BLAS library is visible.
  bool reference_path = report.library.find("/blas/libblas.so") != std::string::npos;
  report.reference = reference_path || (report.library.empty() && report.gflops < 2.0);
  return report;
}

BlasReport warn_if_reference_blas(Logger& logger) {
  BlasReport report = check_blas();
  if (report.reference) {
    logger.warn(
        "slow BLAS: {} gives {:.1f} GFLOP/s on a small float32 GEMM; matmuls will be ~50x slower "
        "than with OpenBLAS. Fix: apt-get install libopenblas0-openmp",
        report.library.empty() ? std::string("the loaded BLAS") : report.library, report.gflops);
  } else {
    logger.debug("BLAS: {} ({:.1f} GFLOP/s on 256^3)", report.library, report.gflops);
  }
  return report;
}

}  // namespace saes

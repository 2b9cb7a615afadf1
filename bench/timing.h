// Timing helper shared by the benchmarks: the best wall time of a callable over repetitions.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>

namespace saes::bench {

/// Best wall seconds of `fn` over `reps` runs after one warm-up run.
inline double best_seconds(const std::function<void()>& fn, int reps) {
  fn();
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

}  // namespace saes::bench

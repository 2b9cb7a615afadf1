// Timing helper shared by the benchmarks: the best wall time of a callable over repetitions.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>

#include <fmt/format.h>

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

/// Runs bench/reference/<script> (PyTorch eager, $SAES_BENCH_PYTHON or /usr/bin/python3) with
/// --threads/--reps/--workloads and reads its `<workload> <wall_s> <cpu_s>` lines: workload →
/// wall seconds per step (empty when the reference could not run).
inline std::map<std::string, double> reference_seconds(const char* source_dir, const char* script,
                                                       int threads, int reps,
                                                       const std::string& spec) {
  std::map<std::string, double> out;
  const char* python = std::getenv("SAES_BENCH_PYTHON");
  const std::string command = fmt::format(
      "{} {}/bench/reference/{} --threads {} --reps {} --workloads {}",
      python != nullptr ? python : "/usr/bin/python3", source_dir, script, threads, reps, spec);
  if (std::FILE* pipe = popen(command.c_str(), "r")) {
    char key[256];
    double sec = 0, cpu = 0;
    while (std::fscanf(pipe, "%255s %lf %lf", key, &sec, &cpu) == 3) out[key] = sec;
    pclose(pipe);
  }
  return out;
}

}  // namespace saes::bench

// Read throughput and size of an existing activation run (e.g. one saes-generate wrote from real
// stories260K activations): decompressed GB/s of a ShardStream over every shard (what training
// reads) and of ShardReader::read_shard one shard at a time, wall clock and per CPU second (the
// latter less sensitive to other load on the machine), minor page faults per pass, and the run's
// bytes against the original's uncompressed fp16 safetensors layout (fp16 + int64 tokens).
// Usage: bench_shard_read_run RUN_DIR [decode_threads=default] [passes=10] [verify_decoded=0]
// (best pass of each is reported; without arguments the reader's default options are measured)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include <sys/resource.h>

#include "saes/core/logging.h"
#include "saes/io/shard_reader.h"

namespace {

struct Usage {
  double cpu_s;
  long minor_faults;
};

Usage usage_now() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec * 1e-6; };
  return {seconds(u.ru_utime) + seconds(u.ru_stime), u.ru_minflt};
}

std::uint64_t batch_bytes(const saes::io::ShardBatch& batch) {
  std::uint64_t bytes = batch.tokens.nbytes();
  for (const auto& [hook, t] : batch.activations) bytes += t.nbytes();
  return bytes;
}

// Runs `pass` (returning decoded bytes) `passes` times and prints the best wall and CPU rates.
void measure(const char* what, int passes, const std::function<std::uint64_t()>& pass) {
  double best_s = 1e30, best_cpu_s = 1e30;
  long faults = 0;
  std::uint64_t decoded = 0;
  for (int p = 0; p < passes; ++p) {
    const Usage before = usage_now();
    const auto start = std::chrono::steady_clock::now();
    decoded = pass();
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const Usage after = usage_now();
    best_s = std::min(best_s, wall);
    best_cpu_s = std::min(best_cpu_s, after.cpu_s - before.cpu_s);
    faults = after.minor_faults - before.minor_faults;
  }
  const double mb = static_cast<double>(decoded) / 1e6;
  std::printf(
      "%s: %.2f GB/s wall (%.1f MB in %.4f s, best of %d), %.2f GB per CPU-second, %ld minor "
      "faults in the last pass\n",
      what, mb / best_s / 1e3, mb, best_s, passes, mb / best_cpu_s / 1e3, faults);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: bench_shard_read_run RUN_DIR [decode_threads=default] [passes=10] "
                 "[verify_decoded=0]\n");
    return 2;
  }
  const auto reader = saes::io::ShardReader::open(argv[1]);
  saes::io::ShardReadOptions options;
  if (argc > 2) options.decode_threads = std::atoi(argv[2]);
  const int passes = argc > 3 ? std::max(1, std::atoi(argv[3])) : 10;
  if (argc > 4) options.verify_decoded_checksums = std::atoi(argv[4]) != 0;
  const auto& m = reader.manifest();
  std::uint64_t stored = 0;
  for (const auto& shard : m.shards) stored += shard.bytes;
  const auto n_shards = static_cast<std::int64_t>(m.shards.size());
  std::printf("run %s: %lld shards, %lld tokens, %zu hooks x d_model %lld, storage %s\n", argv[1],
              static_cast<long long>(n_shards), static_cast<long long>(m.n_tokens()),
              m.hook_points.size(), static_cast<long long>(m.d_model),
              std::string(saes::dtype_name(m.dtype)).c_str());
  std::printf("options: %d decode threads, decoded-bytes check %s, queue_depth %d\n",
              options.decode_threads, options.verify_decoded_checksums ? "on" : "off",
              options.queue_depth);
  saes::Logger logger(saes::LogLevel::kWarn);
  measure("ShardStream, every shard", passes, [&] {
    std::uint64_t decoded = 0;
    saes::io::ShardStream stream(reader, options, logger);
    while (auto batch = stream.next()) decoded += batch_bytes(*batch);
    return decoded;
  });
  measure("read_shard, one shard at a time", passes, [&] {
    std::uint64_t decoded = 0;
    for (std::int64_t i = 0; i < n_shards; ++i)
      decoded += batch_bytes(reader.read_shard(i, options));
    return decoded;
  });
  const double fp16_bytes = static_cast<double>(m.n_tokens()) *
                            (2.0 * static_cast<double>(m.d_model * m.hook_points.size()) + 8.0);
  std::printf("size: %.1f MB on disk vs %.1f MB raw fp16 safetensors layout = %.3fx\n",
              static_cast<double>(stored) / 1e6, fp16_bytes / 1e6,
              static_cast<double>(stored) / fp16_bytes);
  return 0;
}

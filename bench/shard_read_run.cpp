// Read throughput and size of an existing activation run (e.g. one saes-generate wrote from real
// stories260K activations): decompressed GB/s of ShardReader::read_shard and the run's bytes
// against the original's uncompressed fp16 safetensors layout (activations fp16 + int64 tokens).
// Usage: bench_shard_read_run RUN_DIR [decode_threads=1]
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "saes/io/shard_reader.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_shard_read_run RUN_DIR [decode_threads=1]\n");
    return 2;
  }
  const auto reader = saes::io::ShardReader::open(argv[1]);
  saes::io::ShardReadOptions options;
  options.decode_threads = argc > 2 ? std::atoi(argv[2]) : 1;
  const auto& m = reader.manifest();
  std::uint64_t stored = 0;
  for (const auto& shard : m.shards) stored += shard.bytes;
  const auto n_shards = static_cast<std::int64_t>(m.shards.size());
  double best_s = 1e30;
  std::uint64_t decoded = 0;
  for (int rep = 0; rep < 3; ++rep) {
    decoded = 0;
    const auto start = std::chrono::steady_clock::now();
    for (std::int64_t i = 0; i < n_shards; ++i) {
      const auto batch = reader.read_shard(i, options);
      decoded += batch.tokens.nbytes();
      for (const auto& [hook, t] : batch.activations) decoded += t.nbytes();
    }
    best_s = std::min(
        best_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const double fp16_bytes = static_cast<double>(m.n_tokens()) *
                            (2.0 * static_cast<double>(m.d_model * m.hook_points.size()) + 8.0);
  std::printf("run %s: %lld shards, %lld tokens, %zu hooks x d_model %lld, storage %s\n", argv[1],
              static_cast<long long>(n_shards), static_cast<long long>(m.n_tokens()),
              m.hook_points.size(), static_cast<long long>(m.d_model),
              std::string(saes::dtype_name(m.dtype)).c_str());
  std::printf("read (decompressed, best of 3): %.2f GB/s (%.1f MB in %.3f s, %d decode threads)\n",
              static_cast<double>(decoded) / best_s / 1e9, static_cast<double>(decoded) / 1e6,
              best_s, options.decode_threads);
  std::printf("size: %.1f MB on disk vs %.1f MB raw fp16 safetensors layout = %.3fx\n",
              static_cast<double>(stored) / 1e6, fp16_bytes / 1e6,
              static_cast<double>(stored) / fp16_bytes);
  return 0;
}

// Shard write/read throughput and size: zstd level 1/3, with and without byte shuffle, for fp32,
// fp16 and bf16 storage, against the original's uncompressed fp16 safetensors layout (spec §6.3).
// Data is SYNTHETIC (no model here): Gaussian activations with log-normal per-dimension scales, a
// few outlier dimensions and per-dimension means, which approximates residual-stream statistics.
// Usage: bench_shard_io [rows_per_shard=16384] [n_shards=2] [threads=1] [d_model=768]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <unistd.h>

#include "saes/core/logging.h"
#include "saes/io/atomic_file.h"
#include "saes/io/byte_shuffle.h"
#include "saes/io/checksum.h"
#include "saes/io/shard_reader.h"
#include "saes/io/shard_writer.h"

namespace {

namespace fs = std::filesystem;
using namespace saes;
using namespace saes::io;

struct Setup {
  std::int64_t rows = 16384;
  std::int64_t n_shards = 2;
  int threads = 1;
  std::int64_t d_model = 768;
};

struct Result {
  double write_gbps;
  double read_gbps;
  double write_cpu_gbps;
  double read_cpu_gbps;
  std::uint64_t bytes;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Process CPU seconds (user + system, all threads): rates per CPU-second stay meaningful when the
// machine is oversubscribed, where wall-clock rates do not.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// One shard's worth of rows: activations [rows, d_model] float32 (cast by the writer's caller).
ShardBatch synthetic_batch(const Setup& s, std::int64_t first_row, at::Generator& gen) {
  at::Tensor scale = at::exp(at::randn({s.d_model}, gen).mul(0.5));
  scale.narrow(0, 0, 4).mul_(20.0);  // a few outlier dimensions, as in real residual streams
  at::Tensor mean = at::randn({s.d_model}, gen).mul(0.3);
  ShardBatch b;
  b.activations["blocks.6.hook_resid_post"] =
      at::randn({s.rows, s.d_model}, gen).mul(scale).add(mean);
  b.tokens = at::randint(0, 50257, {s.rows}, gen, at::TensorOptions().dtype(at::kLong));
  b.doc_index = at::empty({s.rows}, at::TensorOptions().dtype(at::kLong));
  b.position = at::empty({s.rows}, at::TensorOptions().dtype(at::kLong));
  for (std::int64_t r = 0; r < s.rows; ++r) {
    b.doc_index.data_ptr<std::int64_t>()[r] = (first_row + r) / 1024;
    b.position.data_ptr<std::int64_t>()[r] = (first_row + r) % 1024;
  }
  return b;
}

Result run_config(const Setup& s, const std::vector<ShardBatch>& data, DType dtype,
                  ShardCodec codec, int level, const fs::path& dir) {
  {
    std::error_code ec;
    saes::io::remove_tree(dir, ec);
  }
  ShardWriterOptions o;
  o.dir = dir;
  o.model_name = "synthetic";
  o.hook_points = {"blocks.6.hook_resid_post"};
  o.dtype = dtype;
  o.d_model = s.d_model;
  o.rows_per_shard = s.rows;
  o.encode.codec = codec;
  o.encode.zstd_level = level;
  o.encode.threads = s.threads;
  std::vector<ShardBatch> cast = data;
  for (auto& b : cast) {
    for (auto& [hook, t] : b.activations) t = t.to(to_torch(dtype));
  }
  auto start = std::chrono::steady_clock::now();
  double cpu_start = cpu_seconds();
  ShardWriter writer = ShardWriter::create(o);
  for (const auto& b : cast) writer.append(b);
  writer.finish();
  double write_s = seconds_since(start);
  double write_cpu_s = cpu_seconds() - cpu_start;

  std::uint64_t raw = 0, bytes = 0;
  for (const auto& entry : writer.manifest().shards) bytes += entry.bytes;
  Logger logger(LogLevel::kWarn);
  double read_s = 1e30, read_cpu_s = 1e30;
  for (int pass = 0; pass < 3; ++pass) {  // best of 3: this machine's load is noisy
    raw = 0;
    start = std::chrono::steady_clock::now();
    cpu_start = cpu_seconds();
    ShardStream stream(ShardReader::open(dir), {.decode_threads = s.threads}, logger);
    while (auto batch = stream.next()) {
      // Stored row metadata: int32 token + int32 position + int64 doc_index = 16 bytes per row.
      raw += static_cast<std::uint64_t>(batch->n_rows()) * 16;
      for (const auto& [hook, t] : batch->activations) raw += t.nbytes();
    }
    read_s = std::min(read_s, seconds_since(start));
    read_cpu_s = std::min(read_cpu_s, cpu_seconds() - cpu_start);
  }
  return {raw / write_s / 1e9, raw / read_s / 1e9, raw / write_cpu_s / 1e9, raw / read_cpu_s / 1e9,
          bytes};
}

void print_primitive_rates() {
  std::vector<unsigned char> in(std::size_t{1} << 20), out(in.size());
  for (std::size_t i = 0; i < in.size(); ++i)
    in[i] = static_cast<unsigned char>(i * 2654435761u >> 13);
  std::uint64_t sink = 0;
  // GB/s of 200 passes of `fn` over the 1 MiB buffer.
  auto rate = [&](auto fn) {
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < 200; ++r) fn(r);
    return 200.0 * static_cast<double>(in.size()) / seconds_since(start) / 1e9;
  };
  const double xxh = rate([&](int r) { sink ^= xxh64(in.data(), in.size(), r); });
  const double crc = rate([&](int r) { sink ^= crc32c(in.data(), in.size(), r); });
  const double crc_portable =
      rate([&](int r) { sink ^= crc32c_portable(in.data(), in.size(), r); });
  const double unshuffle =
      rate([&](int) { byte_unshuffle(in.data(), out.data(), in.size() / 2, 2); });
  std::printf(
      "primitives (1 MiB, cache-resident): xxh64 %.1f GB/s, crc32c %.1f GB/s (%s; portable %.1f "
      "GB/s), byte_unshuffle(2) %.1f GB/s [%llx]\n",
      xxh, crc, crc32c_accelerated() ? "CPU instruction" : "portable", crc_portable, unshuffle,
      static_cast<unsigned long long>(sink & 0xf));
}

}  // namespace

int main(int argc, char** argv) {
  Setup s;
  if (argc > 1) s.rows = std::atoll(argv[1]);
  if (argc > 2) s.n_shards = std::atoll(argv[2]);
  if (argc > 3) s.threads = std::atoi(argv[3]);
  if (argc > 4) s.d_model = std::atoll(argv[4]);
  fs::path dir = fs::temp_directory_path() / ("saes-bench-shard-io-" + std::to_string(getpid()));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  std::vector<ShardBatch> data;
  for (std::int64_t i = 0; i < s.n_shards; ++i) data.push_back(synthetic_batch(s, i * s.rows, gen));
  // Original layout (spec §6.3), one hook, fp16: activation + tokens int64 + mask int32 +
  // attention_mask int32.
  double st_bytes = static_cast<double>(s.n_shards * s.rows) * (2.0 * s.d_model + 8 + 4 + 4);

  std::printf(
      "bench_shard_io: SYNTHETIC Gaussian activations (per-dim log-normal scales, 4 outlier dims), "
      "%lld shards x %lld rows x d_model %lld, 1 hook, 1-D target, %d thread(s), page-cache "
      "reads\n",
      static_cast<long long>(s.n_shards), static_cast<long long>(s.rows),
      static_cast<long long>(s.d_model), s.threads);
  print_primitive_rates();
  std::printf("%-9s %-13s %5s %11s %10s %11s %10s %9s %13s\n", "dtype", "codec", "level",
              "write GB/s", "(per CPU)", "read GB/s", "(per CPU)", "size/raw", "size/st-fp16");
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    double raw_bytes =
        static_cast<double>(s.n_shards * s.rows) * (dtype_size(dtype) * s.d_model + 16);
    struct Config {
      ShardCodec codec;
      int level;
    };
    for (Config c :
         {Config{ShardCodec::kRaw, 0}, Config{ShardCodec::kZstd, 1}, Config{ShardCodec::kZstd, 3},
          Config{ShardCodec::kZstdShuffle, 1}, Config{ShardCodec::kZstdShuffle, 3}}) {
      Result r = run_config(s, data, dtype, c.codec, c.level, dir);
      std::printf("%-9s %-13s %5d %11.2f %10.2f %11.2f %10.2f %9.3f %13.3f\n",
                  std::string(dtype_name(dtype)).c_str(),
                  std::string(shard_codec_name(c.codec)).c_str(), c.level, r.write_gbps,
                  r.write_cpu_gbps, r.read_gbps, r.read_cpu_gbps, r.bytes / raw_bytes,
                  r.bytes / st_bytes);
    }
  }
  {
    std::error_code ec;
    saes::io::remove_tree(dir, ec);
  }
  std::printf(
      "GB/s = decoded bytes (activations + tokens/doc_index/position) per wall second; (per CPU) = "
      "per "
      "process CPU second (user+sys, all threads); write includes fsync; size/raw = file bytes / "
      "decoded "
      "bytes; size/st-fp16 = file bytes / original fp16 safetensors chunks of the same rows\n");
  return 0;
}

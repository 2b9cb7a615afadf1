// Activation stream prefetch: how long a training loop waits for data. Writes SYNTHETIC fp16 shards
// (zstd) with the shard writer, then drains make_activation_stream (shuffle buffer on) twice: alone
// (producer rate) and with a simulated training step (a [batch, d] × [d, d_sae] matmul) per batch,
// reporting the fraction of wall time next() waited.
// Usage: bench_activation_stream [rows=65536] [d_model=768] [batch=4096] [d_sae=4096]
#include "saes/data/activation_stream.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ATen/ops/matmul.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <unistd.h>

#include "saes/core/logging.h"
#include "saes/io/atomic_file.h"
#include "saes/io/shard_writer.h"

namespace {

namespace fs = std::filesystem;
using namespace saes;

std::int64_t arg(int argc, char** argv, int i, std::int64_t fallback) {
  return argc > i ? std::atoll(argv[i]) : fallback;
}

void write_shards(const fs::path& dir, std::int64_t rows, std::int64_t d_model) {
  io::ShardWriterOptions o;
  o.dir = dir;
  o.model_name = "synthetic";
  o.hook_points = {"blocks.0.hook_resid_post"};
  o.dtype = DType::kFloat16;
  o.d_model = d_model;
  o.rows_per_shard = 8192;
  auto writer = io::ShardWriter::create(o);
  for (std::int64_t first = 0; first < rows; first += o.rows_per_shard) {
    io::ShardBatch b;
    b.tokens = at::zeros({o.rows_per_shard}, at::TensorOptions().dtype(at::kLong));
    b.doc_index = b.tokens;
    b.position = b.tokens;
    b.activations.emplace(o.hook_points[0], at::randn({o.rows_per_shard, d_model}));
    writer.append(b);
  }
  writer.finish();
}

struct Run {
  double seconds = 0;
  double waited = 0;
  std::int64_t batches = 0;
};

Run drain(const data::ActivationFactoryConfig& config, const at::Tensor* weight, Logger& logger) {
  data::StreamInputs inputs;
  inputs.seed = 1;
  auto stream = data::make_activation_stream(config, inputs, logger);
  const auto start = std::chrono::steady_clock::now();
  Run run;
  while (auto batch = stream->next()) {
    if (weight != nullptr) {
      const auto& x = batch->acts.begin()->second;
      (void)at::matmul(x.to(at::kFloat), *weight);
    }
    ++run.batches;
  }
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run.waited = stream->stats().wait_seconds;
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t rows = arg(argc, argv, 1, 65536);
  const std::int64_t d_model = arg(argc, argv, 2, 768);
  const std::int64_t batch = arg(argc, argv, 3, 4096);
  const std::int64_t d_sae = arg(argc, argv, 4, 4096);
  const fs::path dir =
      fs::temp_directory_path() / ("saes_bench_stream_" + std::to_string(getpid()));
  Logger logger(LogLevel::kWarn);
  write_shards(dir, rows, d_model);

  data::ActivationFactoryConfig config;
  data::ActivationSourceConfig source;
  source.type = data::SourceType::kActivations;
  source.name = "synthetic";
  source.path.root = dir;
  source.shuffle_shards = true;
  config.sources = {source};
  config.hook_points = {"blocks.0.hook_resid_post"};
  config.batch_size = batch;
  config.buffer_size = 4 * batch;
  config.buffer_shuffle = data::BufferShuffleConfig{};

  const Run alone = drain(config, nullptr, logger);
  const at::Tensor weight = at::randn({d_model, d_sae});
  const Run trained = drain(config, &weight, logger);
  {
    std::error_code ec;
    saes::io::remove_tree(dir, ec);
  }

  std::printf("activation stream: %lld rows x %lld (fp16 zstd shards), batch %lld, buffer %lld\n",
              static_cast<long long>(rows), static_cast<long long>(d_model),
              static_cast<long long>(batch), static_cast<long long>(4 * batch));
  std::printf("%-34s %10s %10s %12s %10s\n", "run", "batches", "wall s", "rows/s", "waited");
  const auto row = [&](const char* name, const Run& r) {
    std::printf("%-34s %10lld %10.3f %12.0f %9.1f%%\n", name, static_cast<long long>(r.batches),
                r.seconds, static_cast<double>(rows) / r.seconds, 100.0 * r.waited / r.seconds);
  };
  row("stream alone (producer rate)", alone);
  row("with matmul step [b,d]x[d,d_sae]", trained);
  return 0;
}

// ShardWriter: appends activation batches to a run directory, rolling to a new shard file every
// rows_per_shard rows; each shard and the manifest after it are written atomically, so a crash
// leaves a consistent run that open_for_resume() continues. Reading is in shard_reader.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "saes/core/logging.h"
#include "saes/io/shard_batch.h"
#include "saes/io/shard_file.h"
#include "saes/io/shard_format.h"

namespace saes::io {

struct ShardWriterOptions {
  std::filesystem::path dir;
  std::string model_name;
  std::vector<std::string> hook_points;
  DType dtype = DType::kFloat16;  ///< storage dtype: float32 | float16 | bfloat16
  std::int64_t d_model = 0;
  ShardTarget target = ShardTarget::kActivations1d;
  std::int64_t context_size = 0;  ///< 2-D only
  std::int64_t rows_per_shard = 65536;
  int rank = 0;
  int world = 1;  ///< > 1: this rank writes manifest.rank{rank}.json; rank 0 calls merge_manifests
  ShardEncodeOptions encode;
  std::string created_by;
  std::string config_yaml;
};

class ShardWriter {
 public:
  /// Starts a new run in options.dir (created if missing). Throws ConfigError if this rank's
  /// manifest already exists there (use open_for_resume) or the options are invalid.
  static ShardWriter create(ShardWriterOptions options);
  /// Continues the run in options.dir after its last complete shard: deletes this rank's temp files
  /// and shard files the manifest does not list (logging each), checks the options describe the
  /// same run (ConfigError naming the field otherwise). Without a manifest it starts a new run.
  static ShardWriter open_for_resume(ShardWriterOptions options, Logger& logger);

  ShardWriter(ShardWriter&&) = default;
  ShardWriter& operator=(ShardWriter&&) = default;

  /// Appends rows (see ShardBatch for shapes); writes every full shard. Throws ConfigError on a
  /// shape/hook mismatch, IoError on write failure.
  void append(const ShardBatch& batch);
  /// Writes the remaining rows as a last (shorter) shard and marks the manifest complete.
  void finish();

  const ShardManifest& manifest() const { return manifest_; }
  /// Rows and tokens in complete shards (what a resumed run has already produced).
  std::int64_t rows_done() const { return manifest_.n_rows(); }
  std::int64_t tokens_done() const { return manifest_.n_tokens(); }
  std::int64_t pending_rows() const { return pending_rows_; }
  std::filesystem::path manifest_path() const;

 private:
  explicit ShardWriter(ShardWriterOptions options);
  void write_shard(std::int64_t n_rows);

  ShardWriterOptions options_;
  ShardManifest manifest_;
  std::int64_t next_index_ = 0;
  std::vector<ShardBatch> pending_;
  std::int64_t pending_rows_ = 0;
};

}  // namespace saes::io

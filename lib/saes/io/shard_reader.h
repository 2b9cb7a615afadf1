// Reading activation shard runs: ShardReader (manifest + one-shard decode, all checks) and
// ShardStream (shards in manifest or seeded random order, decoded on a background thread into a
// bounded queue, corrupt shards raised or skipped). Legacy safetensors caches: legacy_chunks.h.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "saes/core/logging.h"
#include "saes/io/shard_batch.h"
#include "saes/io/shard_format.h"

namespace saes::io {

/// What to do with a shard that is missing, truncated or fails a checksum.
enum class OnCorrupt { kError, kSkip };

struct ShardReadOptions {
  std::vector<std::string> hooks{};  ///< hooks to decode; empty = all in the manifest
  std::optional<DType> dtype{};      ///< activation dtype returned; default: storage dtype
  std::vector<std::int64_t>
      shards{};          ///< manifest indices to read; empty = all (see shard_indices_for_rank)
  bool shuffle = false;  ///< visit the shards in a permutation drawn from `seed`
  std::uint64_t seed = 0;
  OnCorrupt on_corrupt = OnCorrupt::kError;
  int decode_threads = 1;  ///< frames decoded in parallel within one shard
  /// Also hash every decoded frame and compare with its raw XXH64 (guards against decoder and
  /// memory faults; the stored XXH64, always checked, already pins the file's bytes). Off saves
  /// about 12% of the read CPU time (docs/shard-format.md §5).
  bool verify_raw_checksums = true;
  int queue_depth = 2;  ///< decoded shards buffered ahead of the consumer
};

class ShardReader {
 public:
  /// Loads and validates `dir`/manifest.json. Throws IoError/DataError naming the manifest.
  static ShardReader open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const ShardManifest& manifest() const { return manifest_; }

  /// Throws ConfigError if a hook is not in the run (listing the available hooks), the dtype is not
  /// floating, or a shard index is out of range.
  void check_options(const ShardReadOptions& options) const;
  /// Manifest indices in the order a stream visits them: options.shards (or all), permuted with
  /// std::mt19937_64(seed) when shuffle is set. Deterministic for a given seed.
  std::vector<std::int64_t> shard_order(const ShardReadOptions& options) const;
  /// Reads shard `index` of the manifest and decodes it into CPU tensors, verifying size and
  /// checksum against the manifest and every frame's checksums. Throws IoError (missing file) or
  /// DataError naming the shard (and section).
  ShardBatch read_shard(std::int64_t index, const ShardReadOptions& options) const;

 private:
  std::filesystem::path dir_;
  ShardManifest manifest_;
};

/// Streams decoded shards. One background thread reads and decodes ahead; at most queue_depth
/// decoded shards wait in memory (plus the one being decoded and the one the caller holds).
class ShardStream {
 public:
  /// Checks the options (ConfigError) and starts the background thread. `logger` receives skip
  /// warnings from that thread and must outlive the stream.
  ShardStream(ShardReader reader, ShardReadOptions options, Logger& logger);
  ~ShardStream();
  ShardStream(const ShardStream&) = delete;
  ShardStream& operator=(const ShardStream&) = delete;

  /// The next shard's rows, or nullopt when all shards were read. Rethrows a background error
  /// (naming the shard) under OnCorrupt::kError.
  std::optional<ShardBatch> next();
  /// Shards skipped so far under OnCorrupt::kSkip.
  std::int64_t skipped() const;

 private:
  void run();

  ShardReader reader_;
  ShardReadOptions options_;
  Logger& logger_;
  std::vector<std::int64_t> order_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<ShardBatch> queue_;
  std::exception_ptr error_;
  bool done_ = false;
  bool stop_ = false;
  std::int64_t skipped_ = 0;
  std::thread thread_;
};

}  // namespace saes::io

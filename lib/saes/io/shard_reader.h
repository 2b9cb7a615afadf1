// Reading activation shard runs: ShardReader (manifest + one-shard decode, all checks) and
// ShardStream (shards in manifest or seeded random order, decoded ahead by a pipeline of worker
// threads, corrupt shards raised or skipped). Legacy safetensors caches: legacy_chunks.h.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "saes/core/logging.h"
#include "saes/io/shard_batch.h"
#include "saes/io/shard_format.h"

namespace saes::io {

class FrameDecoder;
class ShardBufferPool;

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
  /// Decoding threads. ShardStream: workers that decode the frames of several shards at once
  /// (one maps and checks the next shard while the other decodes); read_shard: the frames of the
  /// one shard are split among them.
  int decode_threads = 2;
  /// Also hash every decoded frame and compare it with its raw XXH64. Catches only decoder or
  /// memory faults: the stored XXH64 of every frame, always checked, already pins every byte of
  /// the file. Costs about 20% of the read CPU time (docs/shard-format.md §5).
  bool verify_decoded_checksums = false;
  int queue_depth = 2;  ///< decoded shards waiting for the consumer (plus one being decoded)
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
  /// Where decoded tensors get their memory: buffers of dropped batches are reused (shared by the
  /// copies of this reader and their streams).
  ShardBufferPool& buffers() const { return *buffers_; }

 private:
  std::filesystem::path dir_;
  ShardManifest manifest_;
  std::shared_ptr<ShardBufferPool> buffers_;
};

/// Streams decoded shards in order. decode_threads workers decode the frames of up to
/// queue_depth shards at once (a pipeline across shards: mapping and checking one shard overlaps
/// with decoding another); memory stays bounded by queue_depth decoded shards plus the one the
/// caller holds.
class ShardStream {
 public:
  /// Checks the options (ConfigError) and starts the workers. `logger` receives skip warnings
  /// from them and must outlive the stream.
  ShardStream(ShardReader reader, ShardReadOptions options, Logger& logger);
  ~ShardStream();
  ShardStream(const ShardStream&) = delete;
  ShardStream& operator=(const ShardStream&) = delete;

  /// The next shard's rows, or nullopt when all shards were read. Rethrows a decoding error
  /// (naming the shard) under OnCorrupt::kError once the shards before it were returned.
  std::optional<ShardBatch> next();
  /// Shards skipped so far under OnCorrupt::kSkip.
  std::int64_t skipped() const;

 private:
  struct Slot;
  void work();
  // The helpers below are called with `lock` (on mutex_) held; they release it while working.
  // Claims the next frame of the oldest open shard that has one left; false when none has.
  bool claim_frame(std::int64_t& seq, std::size_t& task);
  void decode_claimed(std::unique_lock<std::mutex>& lock, FrameDecoder& decoder, std::int64_t seq,
                      std::size_t task);
  void open_next(std::unique_lock<std::mutex>& lock);
  // After the last frame: the output tensors become the slot's batch.
  void finish(std::unique_lock<std::mutex>& lock, Slot& slot);
  // A failed slot with no frame in flight settles as skipped (kSkip) or as the stream's error.
  void settle_failed(Slot& slot);

  ShardReader reader_;
  ShardReadOptions options_;
  Logger& logger_;
  std::vector<std::int64_t> order_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::int64_t, std::unique_ptr<Slot>> slots_;  ///< by position in order_
  std::int64_t next_open_ = 0;  ///< position in order_ of the next shard to map
  std::int64_t next_out_ = 0;   ///< position in order_ of the next shard to return
  std::exception_ptr error_;    ///< returned error: next() rethrows it from then on
  int opening_ = 0;             ///< workers mapping a shard right now
  bool halted_ = false;         ///< a shard failed under kError: open no more
  bool stop_ = false;
  std::int64_t skipped_ = 0;
  std::vector<std::thread> workers_;
};

}  // namespace saes::io

// ShardSource / LegacySource: ChunkSources over saes shard runs (one chunk = one shard, decoded
// ahead by io::ShardStream) and over the original's per-hook safetensors chunks (spec §6.4).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saes/core/logging.h"
#include "saes/data/activation_rows.h"
#include "saes/io/legacy_chunks.h"
#include "saes/io/shard_reader.h"

namespace saes::data {

/// Where and how a source reads: rank r of `world` takes shards/chunks i with i % world == r;
/// `shuffle` visits them in a permutation drawn from `seed`.
struct ChunkOrder {
  int rank = 0;
  int world = 1;
  bool shuffle = false;
  std::uint64_t seed = 0;
};

class ShardSource final : public ChunkSource {
 public:
  /// Opens `dir` (IoError naming it when missing) and checks the hooks (ConfigError listing the
  /// available ones).
  ShardSource(std::int64_t index, const std::filesystem::path& dir, std::vector<std::string> hooks,
              std::optional<DType> dtype, ChunkOrder order, Logger& logger);

  std::optional<Rows> next_chunk(bool ghost) override;
  Rows load_chunk(std::int64_t seq) override;

  const io::ShardManifest& manifest() const { return reader_.manifest(); }
  std::string data_digest() const override;

 private:
  Rows to_rows(io::ShardBatch batch, std::int64_t seq) const;

  std::int64_t index_;
  io::ShardReader reader_;
  io::ShardReadOptions options_;
  Logger& logger_;
  std::vector<std::int64_t> order_;
  std::int64_t next_ = 0;
  std::unique_ptr<io::ShardStream> stream_;  ///< started lazily at next_
};

class LegacySource final : public ChunkSource {
 public:
  LegacySource(std::int64_t index, const std::filesystem::path& dir, std::vector<std::string> hooks,
               std::optional<DType> dtype, ChunkOrder order);

  std::optional<Rows> next_chunk(bool ghost) override;
  Rows load_chunk(std::int64_t seq) override;

  /// Width and kind of the chunks, from the first one this rank reads (nullopt: no chunk).
  std::optional<std::int64_t> d_model() const;

 private:
  std::int64_t index_;
  io::LegacyChunkReader reader_;
  std::optional<DType> dtype_;
  std::vector<std::int64_t> order_;
  std::int64_t next_ = 0;
};

/// Rows of a ShardBatch (ids of chunk `seq` of source `index`); masks become bool.
Rows shard_batch_rows(io::ShardBatch batch, std::int64_t index, std::int64_t seq);

}  // namespace saes::data

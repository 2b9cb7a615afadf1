// Reads the original's activation cache (spec §6.3/§6.4): one directory per hook point holding
// uncompressed safetensors chunks `[shard-<s>-]chunk-<n>.safetensors` (+ `.meta.json` for 2-D),
// so existing caches can be used without conversion. Our own format is in shard_reader.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "saes/core/dtype.h"
#include "saes/io/shard_batch.h"

namespace saes::io {

struct LegacyChunk {
  std::int64_t shard_id = 0;  ///< `s` of shard-<s>-chunk-*, 0 for plain chunk-* files
  std::int64_t chunk_id = 0;
  std::string file_name;  ///< the same in every hook directory
};

class LegacyChunkReader {
 public:
  /// Lists `<dir>/<hook>/` for every hook and orders chunks by (shard id, chunk id). Throws
  /// IoError if a hook directory is missing, DataError if the hooks' chunk lists differ,
  /// UnsupportedError for `.pt` chunks (torch pickles are not read).
  static LegacyChunkReader open(const std::filesystem::path& dir, std::vector<std::string> hooks);

  const std::vector<LegacyChunk>& chunks() const { return chunks_; }
  const std::vector<std::string>& hooks() const { return hooks_; }

  /// Chunk `index` for all hooks as a ShardBatch (leading n_samples_per_chunk dims flattened):
  /// tokens int64; 2-D chunks also mask (bool); doc_index = the `context_idx` of `.meta.json`
  /// per sequence when present, else -1; position = 0 for 2-D, -1 for 1-D (not recorded).
  /// Activations are returned in `dtype` when given. Throws DataError naming the chunk when a
  /// tensor is missing, shapes disagree, or tokens differ between hooks (spec §6.4).
  ShardBatch read_chunk(std::size_t index, std::optional<DType> dtype = std::nullopt) const;

 private:
  std::filesystem::path dir_;
  std::vector<std::string> hooks_;
  std::vector<LegacyChunk> chunks_;
};

}  // namespace saes::io

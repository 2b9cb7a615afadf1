// Activation shard runs: the constants, names and manifest (manifest.json) of the saes shard format
// (docs/shard-format.md). The binary layout of one shard file is in shard_file.h; writing and
// reading runs are in shard_writer.h / shard_reader.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "saes/core/dtype.h"

namespace saes::io {

inline constexpr int kShardFormatVersion = 1;
inline constexpr std::string_view kShardFormatName = "saes-activation-shards";
inline constexpr std::string_view kManifestFileName = "manifest.json";
inline constexpr std::string_view kShardFileExtension = ".saes";

/// "activations-1d": one row per kept token. "activations-2d": one row per context of
/// `context_size` tokens, with a mask (spec §6.1 target names).
enum class ShardTarget { kActivations1d, kActivations2d };
std::string_view shard_target_name(ShardTarget target);
std::optional<ShardTarget> try_parse_shard_target(std::string_view text);

/// One shard file as listed in a manifest.
struct ShardEntry {
  std::string file;         ///< name relative to the run directory
  int rank = 0;             ///< writer rank
  std::int64_t index = 0;   ///< index among that rank's shards
  std::int64_t n_rows = 0;  ///< rows (tokens for 1-D, contexts for 2-D)
  std::int64_t n_tokens =
      0;                    ///< tokens (1-D: n_rows; 2-D: n_rows * context_size, padding included)
  std::uint64_t bytes = 0;  ///< file size
  std::uint64_t checksum = 0;  ///< XXH64 of the file's header + directory (covers all sections)

  bool operator==(const ShardEntry&) const = default;
};

struct ShardManifest {
  int format_version = kShardFormatVersion;
  std::string created_by;
  std::string model_name;
  std::vector<std::string> hook_points;
  DType dtype = DType::kFloat16;  ///< activation storage dtype: float32 | float16 | bfloat16
  std::int64_t d_model = 0;
  ShardTarget target = ShardTarget::kActivations1d;
  std::int64_t context_size = 0;  ///< tokens per row for 2-D; 0 for 1-D
  bool complete = false;          ///< the writer finished (no more shards will be added)
  std::vector<ShardEntry> shards;
  std::string config_yaml;  ///< resolved run config, opaque text
  /// total_tokens the run was asked for (absent: no limit). n_tokens() below it means the text
  /// ran out first: the run is complete, with fewer tokens.
  std::optional<std::int64_t> requested_tokens;

  std::int64_t n_tokens() const;
  std::int64_t n_rows() const;
  bool operator==(const ShardManifest&) const = default;
};

/// Identifies the data a manifest describes: XXH64 over its layout (target, hooks, dtype, d_model,
/// context size) and every shard's file, row count and checksum (which covers the shard's frames).
/// Checkpoints record it so that --resume can refuse other data.
std::uint64_t manifest_digest(const ShardManifest& manifest);

/// `shard-r{rank:03d}-{index:06d}.saes`.
std::string shard_file_name(int rank, std::int64_t index);
/// `manifest.rank{rank}.json`: the per-rank manifest when several ranks write one run.
std::string rank_manifest_file_name(int rank);

std::string manifest_to_json(const ShardManifest& manifest);
/// Parses and validates; `source` (a path) names the manifest in errors, which also name the key.
/// Throws DataError.
ShardManifest manifest_from_json(std::string_view text, const std::string& source);

/// Writes atomically (temp + rename).
void save_manifest(const ShardManifest& manifest, const std::filesystem::path& path);
/// Throws IoError if unreadable, DataError if invalid.
ShardManifest load_manifest(const std::filesystem::path& path);

/// Rank 0 after all ranks finished: reads `manifest.rank{r}.json` for r < n_ranks, checks they
/// describe the same run (model, hooks, dtype, d_model, target, context_size) and writes
/// `manifest.json` listing every shard ordered by (rank, index). Returns the merged manifest.
ShardManifest merge_manifests(const std::filesystem::path& dir, int n_ranks);

/// Manifest indices assigned to `rank` of `world`: i with i % world == rank.
std::vector<std::int64_t> shard_indices_for_rank(std::int64_t n_shards, int rank, int world);

}  // namespace saes::io

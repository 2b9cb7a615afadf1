// Manifest JSON (nlohmann) read/write with key-naming validation, file naming and rank merging.
#include "saes/io/shard_format.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/checksum.h"

namespace saes::io {
namespace {

using nlohmann::json;

// Typed access to `object[key]` with errors naming the manifest and the key path.
class JsonReader {
 public:
  JsonReader(const json& object, std::string source, std::string path)
      : object_(object), source_(std::move(source)), path_(std::move(path)) {
    SAES_CHECK(object_.is_object(), DataError, "{}: {}: expected a JSON object, got {}", source_,
               path_.empty() ? "<root>" : path_, object_.type_name());
  }

  const json& at(const std::string& key, json::value_t type) const {
    auto it = object_.find(key);
    SAES_CHECK(it != object_.end(), DataError, "{}: missing key \"{}\"", source_, name(key));
    bool ok =
        it->type() == type || (type == json::value_t::number_integer && it->is_number_unsigned());
    SAES_CHECK(ok, DataError, "{}: key \"{}\": expected {}, got {}", source_, name(key),
               json(type).type_name(), it->type_name());
    return *it;
  }
  std::string str(const std::string& key) const {
    return at(key, json::value_t::string).get<std::string>();
  }
  std::int64_t int64(const std::string& key, std::int64_t min_value) const {
    auto value = at(key, json::value_t::number_integer).get<std::int64_t>();
    SAES_CHECK(value >= min_value, DataError, "{}: key \"{}\": expected >= {}, got {}", source_,
               name(key), min_value, value);
    return value;
  }
  std::uint64_t checksum(const std::string& key) const {
    auto text = str(key);
    auto value = try_parse_checksum_hex(text);
    SAES_CHECK(value.has_value(), DataError, "{}: key \"{}\": expected 16 hex digits, got \"{}\"",
               source_, name(key), text);
    return *value;
  }
  std::string name(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const std::string& source() const { return source_; }

 private:
  const json& object_;
  std::string source_;
  std::string path_;
};

ShardEntry parse_entry(const JsonReader& root, const json& item, std::size_t i) {
  JsonReader r(item, root.source(), fmt::format("shards[{}]", i));
  ShardEntry entry;
  entry.file = r.str("file");
  SAES_CHECK(!entry.file.empty() && entry.file.find('/') == std::string::npos, DataError,
             "{}: key \"{}\": expected a plain file name, got \"{}\"", r.source(), r.name("file"),
             entry.file);
  entry.rank = static_cast<int>(r.int64("rank", 0));
  entry.index = r.int64("index", 0);
  entry.n_rows = r.int64("n_rows", 0);
  entry.n_tokens = r.int64("n_tokens", 0);
  entry.bytes = static_cast<std::uint64_t>(r.int64("bytes", 0));
  entry.checksum = r.checksum("checksum");
  return entry;
}

json entry_to_json(const ShardEntry& entry) {
  return json{{"file", entry.file},
              {"rank", entry.rank},
              {"index", entry.index},
              {"n_rows", entry.n_rows},
              {"n_tokens", entry.n_tokens},
              {"bytes", entry.bytes},
              {"checksum", checksum_hex(entry.checksum)}};
}

void check_same_run(const ShardManifest& a, const ShardManifest& b, const std::string& source) {
  auto same = a.model_name == b.model_name && a.hook_points == b.hook_points &&
              a.dtype == b.dtype && a.d_model == b.d_model && a.target == b.target &&
              a.context_size == b.context_size;
  SAES_CHECK(
      same, DataError,
      "{}: describes a different run than rank 0 (model, hook_points, dtype, d_model, target "
      "or context_size differ)",
      source);
}

}  // namespace

std::string_view shard_target_name(ShardTarget target) {
  return target == ShardTarget::kActivations1d ? "activations-1d" : "activations-2d";
}

std::optional<ShardTarget> try_parse_shard_target(std::string_view text) {
  if (text == "activations-1d") return ShardTarget::kActivations1d;
  if (text == "activations-2d") return ShardTarget::kActivations2d;
  return std::nullopt;
}

std::int64_t ShardManifest::n_tokens() const {
  std::int64_t total = 0;
  for (const auto& shard : shards) total += shard.n_tokens;
  return total;
}

std::int64_t ShardManifest::n_rows() const {
  std::int64_t total = 0;
  for (const auto& shard : shards) total += shard.n_rows;
  return total;
}

std::uint64_t manifest_digest(const ShardManifest& manifest) {
  std::string text = fmt::format("{}|{}|{}|{}|{}", shard_target_name(manifest.target),
                                 dtype_name(manifest.dtype), manifest.d_model,
                                 manifest.context_size, manifest.hook_points.size());
  for (const auto& hook : manifest.hook_points) text += "|" + hook;
  for (const auto& shard : manifest.shards) {
    text += fmt::format("|{}:{}:{}", shard.file, shard.n_rows, checksum_hex(shard.checksum));
  }
  return xxh64(text.data(), text.size());
}

std::string shard_file_name(int rank, std::int64_t index) {
  return fmt::format("shard-r{:03d}-{:06d}{}", rank, index, kShardFileExtension);
}

std::string rank_manifest_file_name(int rank) { return fmt::format("manifest.rank{}.json", rank); }

std::string manifest_to_json(const ShardManifest& m) {
  json shards = json::array();
  for (const auto& entry : m.shards) shards.push_back(entry_to_json(entry));
  json root = {{"format", kShardFormatName},     {"format_version", m.format_version},
               {"created_by", m.created_by},     {"model_name", m.model_name},
               {"hook_points", m.hook_points},   {"dtype", dtype_name(m.dtype)},
               {"d_model", m.d_model},           {"target", shard_target_name(m.target)},
               {"context_size", m.context_size}, {"token_dtype", "int32"},
               {"complete", m.complete},         {"n_rows", m.n_rows()},
               {"n_tokens", m.n_tokens()},       {"shards", std::move(shards)},
               {"config", m.config_yaml}};
  if (m.requested_tokens) root["requested_tokens"] = *m.requested_tokens;
  return root.dump(1) + "\n";
}

ShardManifest manifest_from_json(std::string_view text, const std::string& source) {
  json root = json::parse(text, nullptr, false);
  SAES_CHECK(!root.is_discarded(), DataError, "{}: not valid JSON", source);
  JsonReader r(root, source, "");
  SAES_CHECK(r.str("format") == kShardFormatName, DataError,
             "{}: key \"format\": expected \"{}\", got \"{}\"", source, kShardFormatName,
             r.str("format"));
  ShardManifest m;
  m.format_version = static_cast<int>(r.int64("format_version", 1));
  SAES_CHECK(m.format_version <= kShardFormatVersion, UnsupportedError,
             "{}: key \"format_version\": {} is newer than this saes supports ({})", source,
             m.format_version, kShardFormatVersion);
  m.created_by = r.str("created_by");
  m.model_name = r.str("model_name");
  for (const auto& hook : r.at("hook_points", json::value_t::array)) {
    SAES_CHECK(hook.is_string() && !hook.get<std::string>().empty(), DataError,
               "{}: key \"hook_points\": expected non-empty strings", source);
    m.hook_points.push_back(hook.get<std::string>());
  }
  SAES_CHECK(!m.hook_points.empty(), DataError,
             "{}: key \"hook_points\": expected at least one hook", source);
  auto dtype = try_parse_dtype(r.str("dtype"));
  SAES_CHECK(dtype && (*dtype == DType::kFloat32 || *dtype == DType::kFloat16 ||
                       *dtype == DType::kBFloat16),
             DataError, "{}: key \"dtype\": expected float32, float16 or bfloat16, got \"{}\"",
             source, r.str("dtype"));
  m.dtype = *dtype;
  m.d_model = r.int64("d_model", 1);
  auto target = try_parse_shard_target(r.str("target"));
  SAES_CHECK(target.has_value(), DataError,
             "{}: key \"target\": expected activations-1d or activations-2d, got \"{}\"", source,
             r.str("target"));
  m.target = *target;
  m.context_size = r.int64("context_size", 0);
  SAES_CHECK((m.target == ShardTarget::kActivations2d) == (m.context_size > 0), DataError,
             "{}: key \"context_size\": must be > 0 exactly for activations-2d, got {}", source,
             m.context_size);
  m.complete = r.at("complete", json::value_t::boolean).get<bool>();
  const auto& shards = r.at("shards", json::value_t::array);
  for (std::size_t i = 0; i < shards.size(); ++i) m.shards.push_back(parse_entry(r, shards[i], i));
  m.config_yaml = r.str("config");
  if (root.contains("requested_tokens") && !root.at("requested_tokens").is_null()) {
    m.requested_tokens = r.int64("requested_tokens", 1);
  }
  return m;
}

void save_manifest(const ShardManifest& manifest, const std::filesystem::path& path) {
  write_file_atomic(path, manifest_to_json(manifest));
}

ShardManifest load_manifest(const std::filesystem::path& path) {
  return manifest_from_json(read_file(path), path.string());
}

ShardManifest merge_manifests(const std::filesystem::path& dir, int n_ranks) {
  SAES_CHECK(n_ranks >= 1, ConfigError, "merge_manifests: n_ranks must be >= 1, got {}", n_ranks);
  ShardManifest merged = load_manifest(dir / rank_manifest_file_name(0));
  for (int rank = 1; rank < n_ranks; ++rank) {
    auto path = dir / rank_manifest_file_name(rank);
    ShardManifest part = load_manifest(path);
    check_same_run(merged, part, path.string());
    merged.complete = merged.complete && part.complete;
    merged.shards.insert(merged.shards.end(), part.shards.begin(), part.shards.end());
  }
  std::sort(merged.shards.begin(), merged.shards.end(),
            [](const ShardEntry& a, const ShardEntry& b) {
              return a.rank != b.rank ? a.rank < b.rank : a.index < b.index;
            });
  save_manifest(merged, dir / kManifestFileName);
  return merged;
}

std::vector<std::int64_t> shard_indices_for_rank(std::int64_t n_shards, int rank, int world) {
  SAES_CHECK(world >= 1 && rank >= 0 && rank < world, ConfigError,
             "shard slicing: expected 0 <= rank < world, got rank {} of {}", rank, world);
  std::vector<std::int64_t> indices;
  for (std::int64_t i = rank; i < n_shards; i += world) indices.push_back(i);
  return indices;
}

}  // namespace saes::io

// LegacyChunkReader: directory listing + ordering of the original's chunks, and loading of one
// chunk across hooks through SafetensorsFile (built once the safetensors reader is merged).
#include "saes/io/legacy_chunks.h"

#include <algorithm>
#include <regex>

#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/safetensors.h"

namespace saes::io {
namespace {

namespace fs = std::filesystem;

// The chunks of one hook directory, sorted by (shard id, chunk id).
std::vector<LegacyChunk> list_chunks(const fs::path& hook_dir) {
  SAES_CHECK(fs::is_directory(hook_dir), IoError, "legacy cache: hook directory {} does not exist",
             hook_dir.string());
  static const std::regex kName(R"(^(?:shard-(\d+)-)?chunk-(\d+)\.(safetensors|pt)$)");
  std::vector<LegacyChunk> chunks;
  for (const auto& item : fs::directory_iterator(hook_dir)) {
    std::string name = item.path().filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, kName)) continue;
    SAES_CHECK(m[3] == "safetensors", UnsupportedError,
               "legacy cache {}: {} is a torch pickle chunk; only safetensors chunks can be read",
               hook_dir.string(), name);
    chunks.push_back({m[1].matched ? std::stoll(m[1]) : 0, std::stoll(m[2]), name});
  }
  std::sort(chunks.begin(), chunks.end(), [](const LegacyChunk& a, const LegacyChunk& b) {
    return a.shard_id != b.shard_id ? a.shard_id < b.shard_id : a.chunk_id < b.chunk_id;
  });
  return chunks;
}

// Merges the n_samples_per_chunk dim into the next one while tokens have >= 3 dims (spec §6.3).
at::Tensor flatten_leading(at::Tensor t, std::int64_t extra_dims) {
  for (std::int64_t i = 0; i < extra_dims; ++i) t = t.flatten(0, 1);
  return t;
}

// context_idx of every sequence in <chunk>.meta.json (a list of dicts, or a list of lists of
// dicts).
std::vector<std::int64_t> context_indices(const fs::path& meta_path) {
  nlohmann::json meta = nlohmann::json::parse(read_file(meta_path), nullptr, false);
  SAES_CHECK(meta.is_array(), DataError, "{}: expected a JSON list", meta_path.string());
  std::vector<std::int64_t> out;
  auto add = [&](const nlohmann::json& item) {
    auto it = item.is_object() ? item.find("context_idx") : item.end();
    out.push_back(it != item.end() && it->is_number_integer() ? it->get<std::int64_t>() : -1);
  };
  for (const auto& item : meta) {
    if (item.is_array()) {
      for (const auto& inner : item) add(inner);
    } else {
      add(item);
    }
  }
  return out;
}

}  // namespace

LegacyChunkReader LegacyChunkReader::open(const fs::path& dir, std::vector<std::string> hooks) {
  SAES_CHECK(!hooks.empty(), ConfigError, "legacy cache {}: no hook points given", dir.string());
  LegacyChunkReader reader;
  reader.dir_ = dir;
  reader.hooks_ = std::move(hooks);
  reader.chunks_ = list_chunks(dir / reader.hooks_[0]);
  SAES_CHECK(!reader.chunks_.empty(), DataError, "legacy cache {}: no chunk files",
             (dir / reader.hooks_[0]).string());
  for (std::size_t h = 1; h < reader.hooks_.size(); ++h) {
    auto other = list_chunks(dir / reader.hooks_[h]);
    bool same = other.size() == reader.chunks_.size() &&
                std::equal(other.begin(), other.end(), reader.chunks_.begin(),
                           [](const LegacyChunk& a, const LegacyChunk& b) {
                             return a.file_name == b.file_name;
                           });
    SAES_CHECK(same, DataError,
               "legacy cache {}: hook \"{}\" has {} chunks, \"{}\" has {} (or different names)",
               dir.string(), reader.hooks_[h], other.size(), reader.hooks_[0],
               reader.chunks_.size());
  }
  return reader;
}

ShardBatch LegacyChunkReader::read_chunk(std::size_t index, std::optional<DType> dtype) const {
  const LegacyChunk& chunk = chunks_.at(index);
  ShardBatch batch;
  batch.shard = chunk.file_name;
  for (const auto& hook : hooks_) {
    auto file = SafetensorsFile::open(dir_ / hook / chunk.file_name);
    for (const char* name : {"activation", "tokens"}) {
      SAES_CHECK(file.contains(name), DataError, "legacy chunk {}: no tensor \"{}\"",
                 file.path().string(), name);
    }
    at::Tensor tokens = file.tensor("tokens", TensorLoad::kCopy);
    std::int64_t extra = std::max<std::int64_t>(tokens.dim() - 2, 0);
    tokens = flatten_leading(tokens, extra).to(at::kLong);
    at::Tensor act = flatten_leading(file.tensor("activation", TensorLoad::kCopy), extra);
    SAES_CHECK(
        act.dim() == tokens.dim() + 1 && act.sizes().slice(0, tokens.dim()) == tokens.sizes(),
        DataError, "legacy chunk {}: activation shape does not extend tokens shape",
        file.path().string());
    batch.activations[hook] = dtype ? act.to(to_torch(*dtype)) : act;
    if (!batch.tokens.defined()) {
      batch.tokens = tokens;
      if (tokens.dim() == 2 && file.contains("mask")) {
        batch.mask = flatten_leading(file.tensor("mask", TensorLoad::kCopy), extra).to(at::kBool);
      }
    } else {
      SAES_CHECK(at::equal(batch.tokens, tokens), DataError,
                 "legacy chunk {}: tokens differ from hook \"{}\"", file.path().string(),
                 hooks_[0]);
    }
  }
  const std::int64_t n = batch.tokens.size(0);
  const bool two_d = batch.tokens.dim() == 2;
  batch.doc_index = at::full({n}, -1, at::TensorOptions().dtype(at::kLong));
  batch.position = two_d ? at::zeros({n}, at::TensorOptions().dtype(at::kLong))
                         : at::full({n}, -1, at::TensorOptions().dtype(at::kLong));
  fs::path meta =
      dir_ / hooks_[0] / (chunk.file_name.substr(0, chunk.file_name.size() - 12) + ".meta.json");
  if (two_d && fs::exists(meta)) {
    auto ids = context_indices(meta);
    SAES_CHECK(static_cast<std::int64_t>(ids.size()) == n, DataError,
               "{}: {} entries for {} sequences", meta.string(), ids.size(), n);
    std::copy(ids.begin(), ids.end(), batch.doc_index.data_ptr<std::int64_t>());
  }
  return batch;
}

}  // namespace saes::io

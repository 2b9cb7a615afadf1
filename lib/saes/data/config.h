// Data-side configs (spec §1.5, §6): DatasetConfig, ActivationFactoryConfig with its sources and
// shuffle buffer, ActivationWriterConfig. Field names and defaults follow the original.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "saes/core/dtype.h"

namespace saes::data {

/// How dataset text files are read: plain text (documents separated by `separator` lines) or JSONL
/// (one object per line, the document in `text_field`).
enum class DatasetFormat { kText, kJsonl };
inline constexpr std::array<std::string_view, 2> kDatasetFormatNames = {"text", "jsonl"};
constexpr std::span<const std::string_view> enum_names(DatasetFormat) {
  return kDatasetFormatNames;
}

struct DatasetConfig {
  std::string dataset_name_or_path = "openwebtext";
  std::optional<std::filesystem::path> cache_dir;
  bool is_dataset_on_disk = false;
  std::vector<std::string> paths;
  DatasetFormat format = DatasetFormat::kText;
  std::string text_field = "text";
  std::string separator = "<|endoftext|>";
  std::optional<std::int64_t> max_documents;

  /// The files/globs to read: `paths`, or `dataset_name_or_path` when `paths` is empty.
  std::vector<std::string> text_paths() const {
    return paths.empty() ? std::vector<std::string>{dataset_name_or_path} : paths;
  }

  template <class V>
  void visit_fields(V& v) {
    v("dataset_name_or_path", dataset_name_or_path,
      "dataset name or local path; saes reads it as one file/glob when `paths` is empty");
    v("cache_dir", cache_dir, "the original's download cache (not supported: exit 5 when set)");
    v("is_dataset_on_disk", is_dataset_on_disk,
      "the original's datasets-library folders (not supported: exit 5 when true)");
    v("paths", paths,
      "text files or glob patterns, read in this order (each pattern's matches sorted); saes "
      "addition");
    v("format", format, "text (documents separated by `separator` lines) | jsonl; saes addition");
    v("text_field", text_field, "jsonl: the string field holding the document; saes addition");
    v("separator", separator,
      "text: a line equal to this ends a document (empty: one document per file); saes addition");
    v("max_documents", max_documents,
      "read at most this many documents, all ranks together (null: all); saes addition");
  }
  bool operator==(const DatasetConfig&) const = default;
};

/// What the activation stream yields: raw token records, per-sequence activations [batch, seq_len,
/// d_model], or per-token activations [n_tokens, d_model] with pad/BOS/ignored tokens dropped.
enum class ActivationTarget { kTokens, kActivations2d, kActivations1d };
inline constexpr std::array<std::string_view, 3> kActivationTargetNames = {
    "tokens", "activations-2d", "activations-1d"};
constexpr std::span<const std::string_view> enum_names(ActivationTarget) {
  return kActivationTargetNames;
}

enum class SourceType { kDataset, kActivations };
inline constexpr std::array<std::string_view, 2> kSourceTypeNames = {"dataset", "activations"};
constexpr std::span<const std::string_view> enum_names(SourceType) { return kSourceTypeNames; }

/// Folders of a cached-activations source: one root (hook folders are `root/<hook_point>`) when
/// written as a string, or an explicit folder per hook point when written as a map.
struct HookPaths {
  std::filesystem::path root;
  std::map<std::string, std::filesystem::path> per_hook;

  std::filesystem::path for_hook(const std::string& hook_point) const {
    const auto it = per_hook.find(hook_point);
    return it != per_hook.end() ? it->second : root / hook_point;
  }
  bool operator==(const HookPaths&) const = default;
};

/// One input of the activation factory, discriminated by `type`; fields of the other type are
/// rejected. `dataset` sources run the language model, `activations` sources read cached chunks.
struct ActivationSourceConfig {
  SourceType type = SourceType::kDataset;
  std::string name;
  double sample_weights = 1.0;
  // type: activations
  HookPaths path;
  std::string device = "cpu";
  std::optional<DType> dtype;
  std::int64_t num_workers = 4;
  std::int64_t prefetch = 8;
  bool shuffle_shards = false;

  template <class V>
  void visit_fields(V& v) {
    v.required("type", type,
               "dataset (run the model on a dataset) | activations (read cached chunks)");
    v.required("name", name,
               "source name; for type dataset the key into `datasets` (or `dataset_name`)");
    v("sample_weights", sample_weights,
      "relative probability of drawing the next batch from this source");
    v.unsupported("is_dataset_tokenized", "it is unused upstream; remove it");
    v.unsupported("prepend_bos", "it is unused upstream; set model.prepend_bos instead");
    v.variant(type == SourceType::kActivations, "type: activations", [&] {
      v.required(
          "path", path,
          "cached activations: root folder (hook folders inside) or map hook point -> folder");
      v("device", device, "device the chunks are loaded to");
      v("dtype", dtype, "cast activations to this dtype on load (null: keep stored dtype)");
      v("num_workers", num_workers, "reader threads");
      v("prefetch", prefetch, "chunks read ahead");
      v("shuffle_shards", shuffle_shards,
        "visit shards/chunks in a random order drawn from the run seed (each rank its own slice)");
    });
  }
  bool operator==(const ActivationSourceConfig&) const = default;
};

struct BufferShuffleConfig {
  std::int64_t perm_seed = 42;
  std::optional<std::string> generator_device;

  template <class V>
  void visit_fields(V& v) {
    v("perm_seed", perm_seed, "seed of the shuffle permutation generator");
    v("generator_device", generator_device,
      "device of the permutation generator: null or cpu (the permutation is drawn on the CPU)");
  }
  bool operator==(const BufferShuffleConfig&) const = default;
};

struct ActivationFactoryConfig {
  std::vector<ActivationSourceConfig> sources;
  ActivationTarget target = ActivationTarget::kActivations1d;
  std::vector<std::string> hook_points;
  std::int64_t batch_size = 0;
  std::int64_t num_workers = 4;
  std::optional<std::int64_t> context_size;
  std::int64_t model_batch_size = 1;
  std::optional<DType> override_dtype;
  std::optional<std::int64_t> buffer_size;
  std::optional<BufferShuffleConfig> buffer_shuffle;
  std::optional<std::vector<std::int64_t>> ignore_token_ids;
  std::int64_t prefetch_batches = 4;
  bool packing = false;

  template <class V>
  void visit_fields(V& v) {
    v.required("sources", sources, "inputs, drawn from in proportion to their sample_weights");
    v.required("target", target,
               "tokens | activations-2d (per sequence) | activations-1d (per token)");
    v.required("hook_points", hook_points, "hook points to produce (TransformerLens names)");
    v.required("batch_size", batch_size,
               "rows per batch: tokens for activations-1d, sequences for 2-d");
    v("num_workers", num_workers, "dataset reader threads");
    v("context_size", context_size,
      "pad/truncate every context to this many tokens (null: no padding)");
    v("model_batch_size", model_batch_size, "contexts per language-model forward");
    v("override_dtype", override_dtype,
      "cast activations (never token ids or masks) to this dtype");
    v("buffer_size", buffer_size, "rows held for online shuffling (null: no shuffling)");
    v("buffer_shuffle", buffer_shuffle, "shuffle generator settings");
    v("ignore_token_ids", ignore_token_ids,
      "drop these token ids in activations-1d (null: drop pad and BOS via the mask)");
    v("prefetch_batches", prefetch_batches,
      "batches prepared ahead on a background thread (reading, decoding, model forward)");
    v("packing", packing,
      "dataset sources: concatenate documents (each followed by EOS) into full contexts instead "
      "of one padded, truncated document per context; saes addition");
  }
  bool operator==(const ActivationFactoryConfig&) const = default;
};

enum class ActivationFormat { kSafetensors, kPt };
inline constexpr std::array<std::string_view, 2> kActivationFormatNames = {"safetensors", "pt"};
constexpr std::span<const std::string_view> enum_names(ActivationFormat) {
  return kActivationFormatNames;
}

struct ActivationWriterConfig {
  std::vector<std::string> hook_points;
  std::optional<std::int64_t> total_generating_tokens;
  std::optional<std::int64_t> n_samples_per_chunk;
  std::filesystem::path cache_dir = "activations";
  ActivationFormat format = ActivationFormat::kSafetensors;
  std::optional<std::int64_t> num_workers;

  template <class V>
  void visit_fields(V& v) {
    v.required("hook_points", hook_points, "hook points to write, one folder each");
    v("total_generating_tokens", total_generating_tokens,
      "stop after this many tokens (null: whole dataset)");
    v("n_samples_per_chunk", n_samples_per_chunk,
      "rows per chunk file (null: one batch per chunk)");
    v("cache_dir", cache_dir, "output folder");
    v("format", format, "chunk file format");
    v("num_workers", num_workers, "writer threads (null: write inline)");
  }
  bool operator==(const ActivationWriterConfig&) const = default;
};

}  // namespace saes::data

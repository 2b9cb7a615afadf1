// Top-level settings of the four executables, mirroring upstream's runner settings (spec §1.6 and
// Appendix A): GenerateSettings, TrainSettings, AnalyzeSettings, ConvertSettings. Each is made of
// the modules' own config structs; config_loader.h reads/writes them as YAML.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "saes/analysis/config.h"
#include "saes/circuits/config.h"
#include "saes/convert/config.h"
#include "saes/core/config.h"
#include "saes/data/config.h"
#include "saes/dictionaries/config.h"
#include "saes/distributed/config.h"
#include "saes/lm/config.h"
#include "saes/training/config.h"

namespace saes::config {

inline constexpr std::string_view kNoWandbHint =
    "saes does not log to Weights & Biases; metrics go to metrics.jsonl in the output folder. "
    "Remove it";
inline constexpr std::string_view kNoMongoHint =
    "saes has no MongoDB support; results are written to files in the output folder. Remove it";
inline constexpr std::string_view kSeedHelp = "seed of every random generator of the run";
inline constexpr std::string_view kThreadsHelp = "CPU threads for torch and readers (0: all cores)";
inline constexpr std::string_view kDeviceTypeHelp =
    "device kind of multi-process runs: cuda (NCCL) or cpu (MPI); unused in a single process";

/// The run-wide keys every executable's settings end with: device kind, seed, threads, logging
/// (and the original's `mongo`, which saes rejects with a hint). `S` has the four members.
template <class V, class S>
void visit_run_fields(V& v, S& settings) {
  v("device_type", settings.device_type, kDeviceTypeHelp);
  v.unsupported("mongo", kNoMongoHint);
  v("seed", settings.seed, kSeedHelp);
  v("threads", settings.threads, kThreadsHelp);
  v("logging", settings.logging,
    "log level and progress display (saes-train: also TensorBoard event files)");
}

/// `saes-generate`: run a language model over a dataset and write activations (upstream
/// GenerateActivationsSettings).
struct GenerateSettings {
  std::string model_name;
  lm::LanguageModelConfig model;
  std::string dataset_name;
  data::DatasetConfig dataset;
  std::vector<std::string> hook_points;
  std::filesystem::path output_dir;
  data::ActivationTarget target = data::ActivationTarget::kActivations2d;
  std::int64_t context_size = 128;
  std::int64_t model_batch_size = 1;
  std::int64_t batch_size = 0;
  std::optional<std::int64_t> buffer_size;
  std::optional<data::BufferShuffleConfig> buffer_shuffle;
  std::optional<std::int64_t> total_tokens;
  data::ActivationFormat format = data::ActivationFormat::kSafetensors;
  std::optional<std::int64_t> n_samples_per_chunk;
  std::optional<std::int64_t> num_workers;
  std::optional<std::int64_t> n_shards;
  std::int64_t start_shard = 0;
  std::optional<std::vector<std::int64_t>> ignore_token_ids;
  std::optional<DType> override_dtype;
  bool packing = false;
  std::string compression = "zstd-shuffle";
  std::int64_t compression_level = 1;
  bool overwrite = false;
  std::string device_type = "cuda";
  std::int64_t seed = 42;
  std::int64_t threads = 0;
  LoggingConfig logging;

  template <class V>
  void visit_fields(V& v) {
    v.required("model_name", model_name, "model identifier written into every chunk's meta");
    v.required("model", model, "language model to run");
    v.required("dataset_name", dataset_name, "dataset identifier written into every chunk's meta");
    v.required("dataset", dataset, "dataset to read");
    v.required("hook_points", hook_points, "hook points to write, one folder each");
    v.required("output_dir", output_dir, "output folder");
    v("target", target, "activations-2d (per sequence) or activations-1d (per token)");
    v("context_size", context_size, "tokens per context (pad/truncate)");
    v("model_batch_size", model_batch_size, "contexts per language-model forward");
    v.required("batch_size", batch_size,
               "rows per chunk: tokens for activations-1d, sequences for 2-d");
    v("buffer_size", buffer_size, "rows held for online shuffling (null: no shuffling)");
    v("buffer_shuffle", buffer_shuffle, "shuffle generator settings");
    v("total_tokens", total_tokens, "stop after this many tokens (null: whole dataset)");
    v("format", format,
      "upstream chunk format; saes always writes its shard format (docs/shard-format.md) and "
      "rejects pt");
    v("n_samples_per_chunk", n_samples_per_chunk,
      "rows per shard file (null: batch_size rows per shard)");
    v("num_workers", num_workers, "shard compression threads per rank (null: 1)");
    v("n_shards", n_shards, "upstream dataset shards; saes splits text by rank (must be null)");
    v("start_shard", start_shard, "upstream first dataset shard; saes requires 0");
    v("ignore_token_ids", ignore_token_ids,
      "drop these token ids in activations-1d (null: drop pad and BOS)");
    v("override_dtype", override_dtype,
      "storage dtype of activations (null: model.dtype); token ids and masks are never cast");
    v("packing", packing,
      "concatenate documents (each followed by EOS) into full contexts instead of one padded "
      "document per context; saes addition");
    v("compression", compression, "shard codec: zstd-shuffle | zstd | raw; saes addition");
    v("compression_level", compression_level, "zstd level (1..19); saes addition");
    v("overwrite", overwrite,
      "replace a finished run in output_dir written with a different config; saes addition");
    visit_run_fields(v, *this);
  }
  bool operator==(const GenerateSettings&) const = default;
};

/// One dictionary of a sweep: several dictionaries trained on one activation stream (upstream
/// SweepSAESettings' items). Its settings are the top-level ones with `set` applied.
struct SweepItem {
  std::string sae_name;
  std::vector<std::string> set;

  template <class V>
  void visit_fields(V& v) {
    v.required("sae_name", sae_name, "dictionary name: its run sub-folder and metrics prefix");
    v("set", set,
      "overrides of sae.*, initializer.* and per-dictionary trainer.* keys, written as for "
      "--set (key.path=value), applied on top of the top-level settings");
  }
  bool operator==(const SweepItem&) const = default;
};

/// `saes-train`: train a sparse dictionary, or several on one stream (upstream TrainSAESettings,
/// SweepSAESettings).
struct TrainSettings {
  std::string sae_name;
  std::string sae_series;
  dictionaries::SparseDictionaryConfig sae;
  std::optional<training::InitializerConfig> initializer;
  training::TrainerConfig trainer;
  data::ActivationFactoryConfig activation_factory;
  bool eval = false;
  distributed::ParallelismConfig parallelism;
  std::optional<lm::LanguageModelConfig> model;
  std::optional<std::string> model_name;
  std::map<std::string, data::DatasetConfig> datasets;
  std::vector<SweepItem> sweep;
  std::string device_type = "cuda";
  bool fold_activation_scale = true;
  bool overwrite = false;
  bool resume_allow_data_change = false;
  std::int64_t seed = 42;
  std::int64_t threads = 0;
  training::TrainLoggingConfig logging;

  template <class V>
  void visit_fields(V& v) {
    v.required("sae_name", sae_name, "name of the trained dictionary");
    v.required("sae_series", sae_series, "series (group) the dictionary belongs to");
    v.required("sae", sae, "dictionary to train");
    v("initializer", initializer, "initialization (null: load sae.sae_pretrained_name_or_path)");
    v.required("trainer", trainer, "optimization and schedules");
    v.required("activation_factory", activation_factory, "training activations");
    v("eval", eval, "evaluate during training (not implemented yet: must be false)");
    parallelism.visit_fields(v);
    v("model", model, "language model, needed by `dataset` sources");
    v("model_name", model_name, "model identifier (meta of generated activations)");
    v("datasets", datasets, "datasets of `dataset` sources, by source name");
    v("fold_activation_scale", fold_activation_scale,
      "fold dataset-wise scaling into the saved weights (recorded, so it is never applied twice)");
    v("sweep", sweep,
      "train one dictionary per item on the shared stream, each in its own sub-folder (empty: "
      "train `sae` alone)");
    v("overwrite", overwrite,
      "a new run into a trainer.exp_result_path that holds a run replaces that run's files "
      "(weights, metrics, checkpoints); false: refused (continue it with --resume instead)");
    v("resume_allow_data_change", resume_allow_data_change,
      "--resume continues on activation shards other than the checkpoint's (their manifest "
      "digest is recorded in every checkpoint); false: refused");
    v.unsupported("wandb", kNoWandbHint);
    visit_run_fields(v, *this);
  }
  bool operator==(const TrainSettings&) const = default;
};

/// `saes-analyze`: top-activating contexts per feature, optional evaluation (upstream
/// AnalyzeSAESettings; results go to files, never MongoDB).
struct AnalyzeSettings {
  dictionaries::PretrainedSaeConfig sae;
  std::string sae_name;
  std::string sae_series;
  data::ActivationFactoryConfig activation_factory;
  std::optional<lm::LanguageModelConfig> model;
  std::optional<std::string> model_name;
  std::map<std::string, data::DatasetConfig> datasets;
  analysis::FeatureAnalyzerConfig analyzer;
  std::optional<analysis::EvalConfig> eval;
  DType amp_dtype = DType::kBFloat16;
  std::string feature_analysis_name = "default";
  std::filesystem::path output_dir;
  distributed::ParallelismConfig parallelism;
  std::string device_type = "cuda";
  std::int64_t seed = 42;
  std::int64_t threads = 0;
  LoggingConfig logging;

  template <class V>
  void visit_fields(V& v) {
    v.required("sae", sae, "trained dictionary to analyze");
    v.required("sae_name", sae_name, "name of the dictionary");
    v.required("sae_series", sae_series, "series (group) of the dictionary");
    v.required("activation_factory", activation_factory, "activations to analyze (activations-2d)");
    v("model", model, "language model, needed by `dataset` sources");
    v("model_name", model_name, "model identifier");
    v("datasets", datasets, "datasets of `dataset` sources, by source name");
    v.required("analyzer", analyzer, "feature analysis");
    v("eval", eval, "also evaluate the dictionary (null: skip)");
    v("amp_dtype", amp_dtype, "autocast dtype of the dictionary forward");
    v("feature_analysis_name", feature_analysis_name, "name of this analysis");
    v.required("output_dir", output_dir, "output folder");
    parallelism.visit_fields(v);
    visit_run_fields(v, *this);
  }
  bool operator==(const AnalyzeSettings&) const = default;
};

/// `saes-analyze attribute`: the attribution graph of one prompt through a replacement model
/// (transcoders per MLP layer, or a CLT), pruned, written as circuit-tracer JSON and into the
/// graph store beside the analysis databases (docs/circuits.md). A saes addition.
struct AttributeSettings {
  std::string model_name;
  lm::LanguageModelConfig model;
  std::optional<std::string> prompt;
  std::optional<std::vector<std::int64_t>> prompt_ids;
  std::vector<std::filesystem::path> dictionaries;
  circuits::AttributionConfig attribution;
  std::string graph_name;
  std::filesystem::path output_dir;
  bool overwrite = false;
  std::string device_type = "cuda";
  std::int64_t seed = 42;
  std::int64_t threads = 0;
  LoggingConfig logging;

  template <class V>
  void visit_fields(V& v) {
    v.required("model_name", model_name, "model identifier (the graph's `scan`)");
    v.required("model", model, "language model to trace");
    v("prompt", prompt, "the text to trace (BOS prepended as model.prepend_bos says)");
    v("prompt_ids", prompt_ids, "or its token ids, as given (BOS included if wanted)");
    v.required("dictionaries", dictionaries,
               "the replacement: a transcoder per replaced MLP layer, or one clt, and optionally "
               "a lorsa per replaced attention layer (run folders or weights files)");
    v("attribution", attribution, "targets, batching, budget and pruning");
    v.required("graph_name", graph_name, "the graph's id (slug): <output_dir>/<graph_name>.json");
    v.required("output_dir", output_dir, "folder of the graph JSON files and graphs.sqlite");
    v("overwrite", overwrite, "replace a graph of the same name (refused otherwise)");
    visit_run_fields(v, *this);
  }
  bool operator==(const AttributeSettings&) const = default;
};

/// `saes-convert`: change a checkpoint's layout (native <-> SAELens), TopK -> JumpReLU, scale
/// folding, dtype. The conversion knobs are written flat (`to: saelens`).
struct ConvertSettings {
  std::filesystem::path input;
  std::filesystem::path output;
  convert::ConversionConfig conversion;
  std::string device = "cpu";
  std::optional<data::ActivationFactoryConfig> activation_factory;
  std::optional<lm::LanguageModelConfig> model;
  std::optional<std::string> model_name;
  std::map<std::string, data::DatasetConfig> datasets;
  distributed::ParallelismConfig parallelism;
  std::string device_type = "cuda";
  std::int64_t seed = 42;
  std::int64_t threads = 0;
  LoggingConfig logging;

  template <class V>
  void visit_fields(V& v) {
    v.required("input", input, "checkpoint to convert (folder or file; native or SAELens)");
    v.required("output", output, "output folder");
    conversion.visit_fields(v);
    v("device", device, "device used for the conversion");
    v("activation_factory", activation_factory, "activations for topk_to_jumprelu");
    v("model", model, "language model, needed by `dataset` sources");
    v("model_name", model_name, "model identifier");
    v("datasets", datasets, "datasets of `dataset` sources, by source name");
    parallelism.visit_fields(v);
    visit_run_fields(v, *this);
  }
  bool operator==(const ConvertSettings&) const = default;
};

}  // namespace saes::config

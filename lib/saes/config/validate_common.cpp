// Semantic validation, the shared checks (validate_checks.h) and the settings of saes-generate,
// saes-analyze (and attribute) and saes-convert: every problem is collected, none thrown here.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "saes/config/field_traits.h"
#include "saes/config/validate_checks.h"
#include "saes/config/yaml_writer.h"
#include "saes/core/error.h"

namespace saes::config::detail {


using data::ActivationTarget;
using data::SourceType;
using dictionaries::ActFn;

std::string at(const std::string& parent, std::string_view key) {
  return join_key_path(parent, key);
}

void check_positive(Problems& p, const std::string& path, double value) {
  p.check(value > 0 && std::isfinite(value), path, fmt::format("expected > 0, got {}", value));
}
void check_non_negative(Problems& p, const std::string& path, double value) {
  p.check(value >= 0 && std::isfinite(value), path, fmt::format("expected >= 0, got {}", value));
}
void check_positive_if_set(Problems& p, const std::string& path,
                           const std::optional<std::int64_t>& value) {
  if (value) check_positive(p, path, static_cast<double>(*value));
}
void check_floating(Problems& p, const std::string& path, DType dtype) {
  p.check(dtype_is_floating(dtype), path,
          fmt::format("expected a floating dtype (float32, float16, bfloat16, float64), got {}",
                      dtype_name(dtype)));
}
void check_not_empty(Problems& p, const std::string& path, const std::string& text) {
  p.check(!text.empty(), path, "must not be empty");
}
void check_device(Problems& p, const std::string& path, const std::string& device) {
  try {
    parse_device(device);
  } catch (const ConfigError&) {
    p.check(false, path, fmt::format("expected cpu, cuda or cuda:N, got \"{}\"", device));
  }
}
void check_device_type(Problems& p, const std::string& device_type) {
  p.check(device_type == "cpu" || device_type == "cuda", "device_type",
          fmt::format("expected cpu or cuda, got \"{}\"", device_type));
}
void check_token_ids(Problems& p, const std::string& path,
                     const std::optional<std::vector<std::int64_t>>& ids) {
  if (!ids) return;
  for (std::size_t i = 0; i < ids->size(); ++i) {
    check_non_negative(p, fmt::format("{}[{}]", path, i), static_cast<double>((*ids)[i]));
  }
}
void check_steps(Problems& p, const std::string& path, const training::StepsOrFraction& value) {
  if (value.is_fraction) {
    p.check(value.fraction >= 0 && value.fraction <= 1, path,
            fmt::format("a fraction of the total steps must be in [0, 1], got {} (write an integer "
                        "for a step count)",
                        value.fraction));
  } else {
    check_non_negative(p, path, static_cast<double>(value.steps));
  }
}

void check_run(Problems& p, std::int64_t threads, const LoggingConfig& logging) {
  check_non_negative(p, "threads", static_cast<double>(threads));
  check_positive(p, "logging.progress_interval_s", logging.progress_interval_s);
}

void check_lm(Problems& p, const std::string& path, const lm::LanguageModelConfig& lm) {
  check_not_empty(p, at(path, "model_name"), lm.model_name);
  check_positive(p, at(path, "max_length"), static_cast<double>(lm.max_length));
  check_device(p, at(path, "device"), lm.device);
  check_floating(p, at(path, "dtype"), lm.dtype);
  for (const auto& [key, id] :
       {std::pair{"bos_token_id", lm.bos_token_id}, std::pair{"eos_token_id", lm.eos_token_id},
        std::pair{"pad_token_id", lm.pad_token_id}}) {
    if (id) check_non_negative(p, at(path, key), static_cast<double>(*id));
  }
}

bool has_dataset_source(const data::ActivationFactoryConfig& factory) {
  return std::any_of(factory.sources.begin(), factory.sources.end(),
                     [](const auto& source) { return source.type == SourceType::kDataset; });
}

/// model.checkpoints and the run's hook points (`hooks` at `hooks_path`): with checkpoints, each
/// hook point is "<listed checkpoint>:<hook>"; without, a hook the model computes (`model_runs`:
/// generate, or a dataset source) names no checkpoint (shards may hold prefixed hooks).
void check_checkpoints(Problems& p, const std::string& path, const lm::LanguageModelConfig& lm,
                       const std::string& hooks_path, const std::vector<std::string>& hooks,
                       bool model_runs) {
  std::string names;
  for (const auto& [name, weights] : lm.checkpoints) {
    const std::string key = at(at(path, "checkpoints"), name);
    p.check(
        !name.empty() && name.find(lm::kCheckpointSeparator) == std::string::npos, key,
        fmt::format("a checkpoint name is non-empty and holds no '{}'", lm::kCheckpointSeparator));
    p.check(!weights.empty(), key, "expected the checkpoint's weights path, got an empty path");
    names += (names.empty() ? "" : ", ") + name;
  }
  for (std::size_t i = 0; i < hooks.size(); ++i) {
    const std::string key = fmt::format("{}[{}]", hooks_path, i);
    const auto parts = lm::split_checkpoint_hook(hooks[i]);
    if (lm.checkpoints.empty()) {
      p.check(!parts || !model_runs, key,
              fmt::format("\"{}\" names checkpoint \"{}\", but {}.checkpoints is not set", hooks[i],
                          parts ? parts->checkpoint : "", path));
    } else if (!parts) {
      p.check(false, key,
              fmt::format("\"{}\" names no checkpoint: with {}.checkpoints set, write "
                          "<checkpoint>{}<hook> (checkpoints: {})",
                          hooks[i], path, lm::kCheckpointSeparator, names));
    } else {
      p.check(lm.checkpoints.count(parts->checkpoint) > 0, key,
              fmt::format("\"{}\" names checkpoint \"{}\", which {}.checkpoints lacks "
                          "(checkpoints: {})",
                          hooks[i], parts->checkpoint, path, names));
      p.check(!parts->hook.empty(), key, fmt::format("\"{}\" names no hook", hooks[i]));
    }
  }
}

void check_source(Problems& p, const std::string& path, const data::ActivationSourceConfig& source,
                  const data::ActivationFactoryConfig& factory) {
  check_not_empty(p, at(path, "name"), source.name);
  check_positive(p, at(path, "sample_weights"), source.sample_weights);
  if (source.type != SourceType::kActivations) return;
  p.check(factory.target != ActivationTarget::kTokens, path,
          "cached activations cannot produce target tokens; use activations-2d or activations-1d");
  if (source.path.per_hook.empty()) {
    p.check(!source.path.root.empty(), at(path, "path"), "must not be empty");
  } else {
    for (const std::string& hook : factory.hook_points) {
      p.check(source.path.per_hook.count(hook) > 0, at(path, "path"),
              fmt::format("has no folder for hook point \"{}\"", hook));
    }
  }
  check_device(p, at(path, "device"), source.device);
  if (source.dtype) check_floating(p, at(path, "dtype"), *source.dtype);
  check_non_negative(p, at(path, "num_workers"), static_cast<double>(source.num_workers));
  check_non_negative(p, at(path, "prefetch"), static_cast<double>(source.prefetch));
}

/// `has_model`/`datasets`: what the settings provide to `dataset` sources.
void check_factory(Problems& p, const std::string& path,
                   const data::ActivationFactoryConfig& factory, bool has_model,
                   const std::map<std::string, data::DatasetConfig>& datasets) {
  p.check(!factory.sources.empty(), at(path, "sources"), "needs at least one source");
  std::set<std::string> names;
  for (std::size_t i = 0; i < factory.sources.size(); ++i) {
    const auto& source = factory.sources[i];
    const std::string source_path = fmt::format("{}[{}]", at(path, "sources"), i);
    check_source(p, source_path, source, factory);
    p.check(names.insert(source.name).second, at(source_path, "name"),
            fmt::format("duplicate source name \"{}\"", source.name));
    if (source.type == SourceType::kDataset) {
      p.check(has_model, source_path, "a dataset source needs a language model: set `model`");
      p.check(datasets.count(source.name) > 0, source_path,
              fmt::format(
                  "a dataset source needs `datasets.{}` (datasets are looked up by source name)",
                  source.name));
    }
  }
  p.check(!factory.hook_points.empty(), at(path, "hook_points"), "needs at least one hook point");
  for (std::size_t i = 0; i < factory.hook_points.size(); ++i) {
    check_not_empty(p, fmt::format("{}[{}]", at(path, "hook_points"), i), factory.hook_points[i]);
  }
  check_positive(p, at(path, "batch_size"), static_cast<double>(factory.batch_size));
  check_non_negative(p, at(path, "num_workers"), static_cast<double>(factory.num_workers));
  check_positive_if_set(p, at(path, "context_size"), factory.context_size);
  check_positive(p, at(path, "model_batch_size"), static_cast<double>(factory.model_batch_size));
  if (factory.override_dtype)
    check_floating(p, at(path, "override_dtype"), *factory.override_dtype);
  if (factory.buffer_size) {
    p.check(*factory.buffer_size >= factory.batch_size, at(path, "buffer_size"),
            fmt::format("must be >= batch_size ({}), got {}", factory.batch_size,
                        *factory.buffer_size));
  }
  check_token_ids(p, at(path, "ignore_token_ids"), factory.ignore_token_ids);
}

/// head_parallel_size > 1 splits a crosscoder's heads: other variants have none, and each head
/// rank holds whole heads.

void check_parallelism(Problems& p, const distributed::ParallelismConfig& parallelism) {
  check_positive(p, "data_parallel_size", static_cast<double>(parallelism.data_parallel_size));
  check_positive(p, "model_parallel_size", static_cast<double>(parallelism.model_parallel_size));
  check_positive(p, "head_parallel_size", static_cast<double>(parallelism.head_parallel_size));
}

/// The hooks of a clt: both lists set, of one length, no empty or repeated entry; no single-hook
/// keys. An sae: hook_point_in/out set, no clt lists.

std::vector<Problem> find_problems(const GenerateSettings& s) {
  Problems p;
  check_not_empty(p, "model_name", s.model_name);
  check_lm(p, "model", s.model);
  check_checkpoints(p, "model", s.model, "hook_points", s.hook_points, true);
  check_not_empty(p, "dataset_name", s.dataset_name);
  check_not_empty(p, "dataset.dataset_name_or_path", s.dataset.dataset_name_or_path);
  for (std::size_t i = 0; i < s.dataset.paths.size(); ++i) {
    check_not_empty(p, fmt::format("dataset.paths[{}]", i), s.dataset.paths[i]);
  }
  check_positive_if_set(p, "dataset.max_documents", s.dataset.max_documents);
  check_not_empty(p, "dataset.text_field", s.dataset.text_field);
  p.check(s.compression == "zstd-shuffle" || s.compression == "zstd" || s.compression == "raw",
          "compression",
          fmt::format("expected zstd-shuffle, zstd or raw, got \"{}\"", s.compression));
  p.check(s.compression_level >= 1 && s.compression_level <= 19, "compression_level",
          fmt::format("expected 1..19, got {}", s.compression_level));
  p.check(!s.model.prepend_bos || s.context_size >= 2, "context_size",
          "must be >= 2 with model.prepend_bos");
  p.check(s.hook_points.size() ==
              std::set<std::string>(s.hook_points.begin(), s.hook_points.end()).size(),
          "hook_points", "lists a hook point twice");
  p.check(!s.hook_points.empty(), "hook_points", "needs at least one hook point");
  check_not_empty(p, "output_dir", s.output_dir.string());
  p.check(s.target != ActivationTarget::kTokens, "target",
          "generate writes activations: expected activations-2d or activations-1d");
  check_positive(p, "context_size", static_cast<double>(s.context_size));
  check_positive(p, "model_batch_size", static_cast<double>(s.model_batch_size));
  check_positive(p, "batch_size", static_cast<double>(s.batch_size));
  if (s.buffer_size) {
    p.check(*s.buffer_size >= s.batch_size, "buffer_size",
            fmt::format("must be >= batch_size ({}), got {}", s.batch_size, *s.buffer_size));
  }
  check_positive_if_set(p, "total_tokens", s.total_tokens);
  check_positive_if_set(p, "n_samples_per_chunk", s.n_samples_per_chunk);
  if (s.num_workers) check_non_negative(p, "num_workers", static_cast<double>(*s.num_workers));
  check_positive_if_set(p, "n_shards", s.n_shards);
  check_non_negative(p, "start_shard", static_cast<double>(s.start_shard));
  if (s.n_shards) {
    p.check(s.start_shard < *s.n_shards, "start_shard",
            fmt::format("must be < n_shards ({}), got {}", *s.n_shards, s.start_shard));
  }
  check_token_ids(p, "ignore_token_ids", s.ignore_token_ids);
  if (s.override_dtype) check_floating(p, "override_dtype", *s.override_dtype);
  check_device_type(p, s.device_type);
  check_run(p, s.threads, s.logging);
  return p.take();
}

std::vector<Problem> find_problems(const AnalyzeSettings& s) {
  Problems p;
  check_not_empty(p, "sae.pretrained_name_or_path", s.sae.pretrained_name_or_path);
  check_device(p, "sae.device", s.sae.device);
  check_floating(p, "sae.dtype", s.sae.dtype);
  check_not_empty(p, "sae_name", s.sae_name);
  check_not_empty(p, "sae_series", s.sae_series);
  check_factory(p, "activation_factory", s.activation_factory, s.model.has_value(), s.datasets);
  p.check(s.activation_factory.target == ActivationTarget::kActivations2d,
          "activation_factory.target", "analysis samples whole contexts: expected activations-2d");
  if (s.model) {
    check_lm(p, "model", *s.model);
    check_checkpoints(p, "model", *s.model, "activation_factory.hook_points",
                      s.activation_factory.hook_points, has_dataset_source(s.activation_factory));
  }
  check_positive(p, "analyzer.total_analyzing_tokens",
                 static_cast<double>(s.analyzer.total_analyzing_tokens));
  p.check(!s.analyzer.subsamples.empty(), "analyzer.subsamples", "needs at least one subsample");
  for (const auto& [name, band] : s.analyzer.subsamples) {
    const std::string path = at("analyzer.subsamples", name);
    p.check(band.proportion > 0 && band.proportion <= 1, at(path, "proportion"),
            fmt::format("expected in (0, 1], got {}", band.proportion));
    check_positive(p, at(path, "n_samples"), static_cast<double>(band.n_samples));
    check_positive_if_set(p, at(path, "max_length"), band.max_length);
  }
  check_token_ids(p, "analyzer.ignore_token_ids", s.analyzer.ignore_token_ids);
  if (s.eval)
    check_positive(p, "eval.total_eval_tokens", static_cast<double>(s.eval->total_eval_tokens));
  check_floating(p, "amp_dtype", s.amp_dtype);
  check_not_empty(p, "feature_analysis_name", s.feature_analysis_name);
  check_not_empty(p, "output_dir", s.output_dir.string());
  check_parallelism(p, s.parallelism);
  check_device_type(p, s.device_type);
  check_run(p, s.threads, s.logging);
  return p.take();
}

std::vector<Problem> find_problems(const AttributeSettings& s) {
  Problems p;
  check_not_empty(p, "model_name", s.model_name);
  check_lm(p, "model", s.model);
  p.check(s.prompt.has_value() != s.prompt_ids.has_value(), "prompt",
          "set exactly one of prompt (text) and prompt_ids (token ids)");
  if (s.prompt) check_not_empty(p, "prompt", *s.prompt);
  if (s.prompt_ids) {
    p.check(!s.prompt_ids->empty(), "prompt_ids", "needs at least one token id");
    check_token_ids(p, "prompt_ids", s.prompt_ids);
  }
  p.check(!s.dictionaries.empty(), "dictionaries",
          "needs the replacement: a transcoder per replaced MLP layer, or one clt (and "
          "optionally a lorsa per replaced attention layer)");
  for (std::size_t i = 0; i < s.dictionaries.size(); ++i) {
    check_not_empty(p, fmt::format("dictionaries[{}]", i), s.dictionaries[i].string());
  }
  const auto& a = s.attribution;
  p.check(a.desired_logit_prob > 0 && a.desired_logit_prob <= 1, "attribution.desired_logit_prob",
          fmt::format("expected in (0, 1], got {}", a.desired_logit_prob));
  check_positive(p, "attribution.max_n_logits", static_cast<double>(a.max_n_logits));
  check_positive(p, "attribution.batch_size", static_cast<double>(a.batch_size));
  p.check(a.max_feature_nodes >= 0, "attribution.max_feature_nodes",
          fmt::format("expected >= 0 (0: every active feature), got {}", a.max_feature_nodes));
  p.check(!a.target_tokens || !a.target_tokens->empty(), "attribution.target_tokens",
          "needs at least one token (null: the salient logits)");
  p.check(a.node_threshold > 0 && a.node_threshold <= 1, "attribution.node_threshold",
          fmt::format("expected in (0, 1], got {}", a.node_threshold));
  p.check(a.edge_threshold > 0 && a.edge_threshold <= 1, "attribution.edge_threshold",
          fmt::format("expected in (0, 1], got {}", a.edge_threshold));
  for (std::size_t i = 0; i < a.target_features.size(); ++i) {
    const auto& t = a.target_features[i];
    const std::string at = fmt::format("attribution.target_features[{}]", i);
    p.check(t.layer >= 0, at + ".layer", fmt::format("expected >= 0, got {}", t.layer));
    p.check(t.index >= 0, at + ".index", fmt::format("expected >= 0, got {}", t.index));
    if (t.dictionary) check_not_empty(p, at + ".dictionary", *t.dictionary);
  }
  p.check(a.qk_top_fraction > 0 && a.qk_top_fraction <= 1, "attribution.qk_top_fraction",
          fmt::format("expected in (0, 1], got {}", a.qk_top_fraction));
  check_positive(p, "attribution.qk_topk", static_cast<double>(a.qk_topk));
  check_positive(p, "attribution.update_interval", static_cast<double>(a.update_interval));
  check_not_empty(p, "graph_name", s.graph_name);
  p.check(s.graph_name.find_first_of("/\\") == std::string::npos && s.graph_name != "." &&
              s.graph_name != "..",
          "graph_name", fmt::format("is a file name, not a path: got \"{}\"", s.graph_name));
  check_not_empty(p, "output_dir", s.output_dir.string());
  check_device_type(p, s.device_type);
  check_run(p, s.threads, s.logging);
  return p.take();
}

std::vector<Problem> find_problems(const ConvertSettings& s) {
  Problems p;
  check_not_empty(p, "input", s.input.string());
  check_not_empty(p, "output", s.output.string());
  p.check(s.conversion.saelens_version == 5 || s.conversion.saelens_version == 6, "saelens_version",
          fmt::format("expected 5 or 6, got {}", s.conversion.saelens_version));
  if (s.conversion.dtype) check_floating(p, "dtype", *s.conversion.dtype);
  p.check(!s.conversion.sparsity_from || s.conversion.to == convert::ConvertFormat::kSaeLens,
          "sparsity_from", "sparsity.safetensors belongs to the SAELens layout: needs to: saelens");
  p.check(!s.conversion.topk_to_jumprelu || s.activation_factory.has_value(), "activation_factory",
          "topk_to_jumprelu measures thresholds on activations: set activation_factory");
  if (s.activation_factory) {
    check_factory(p, "activation_factory", *s.activation_factory, s.model.has_value(), s.datasets);
  }
  if (s.model) {
    check_lm(p, "model", *s.model);
    if (s.activation_factory) {
      check_checkpoints(p, "model", *s.model, "activation_factory.hook_points",
                        s.activation_factory->hook_points,
                        has_dataset_source(*s.activation_factory));
    }
  }
  check_device(p, "device", s.device);
  check_parallelism(p, s.parallelism);
  check_device_type(p, s.device_type);
  check_run(p, s.threads, s.logging);
  return p.take();
}

}  // namespace saes::config::detail

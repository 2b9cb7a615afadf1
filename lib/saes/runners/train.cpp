// run_train (spec Appendix D "train"): activation stream → dictionaries (one, or one per `sweep`
// item; initialized or loaded, dataset norms from the first batches) → Trainer with one member per
// dictionary → final weights in the run folder (docs/train.md). Data- and feature-parallel
// ranks: train_distributed.h.
#include <algorithm>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/scalar_tensor.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "saes/config/config_loader.h"
#include "saes/convert/formats.h"
#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/data/activation_stream.h"
#include "saes/dictionaries/registry.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/distributed/communicator.h"
#include "saes/io/safetensors.h"
#include "saes/lm/hf_folder.h"
#include "saes/runners/activation_input.h"
#include "saes/runners/runners.h"
#include "saes/runners/train_distributed.h"
#include "saes/training/checkpoint.h"
#include "saes/training/dictionary_module.h"
#include "saes/training/initializer.h"
#include "saes/training/model_init.h"
#include "saes/training/stop_signal.h"
#include "saes/training/tensorboard.h"
#include "saes/training/trainer.h"

namespace saes::runners {
namespace {

namespace fs = std::filesystem;
using config::TrainSettings;

void check_supported(const TrainSettings& s) {
  SAES_CHECK(!s.eval, UnsupportedError,
             "eval: evaluation during training is not implemented yet; set eval: false");
  SAES_CHECK(!s.logging.tensorboard || training::tensorboard_available(), UnsupportedError,
             "logging.tensorboard: this build writes no TensorBoard files (configured without "
             "protobuf: install libprotobuf-dev and protobuf-compiler and rebuild, or set "
             "logging.tensorboard: false)");
}

/// How messages name the model: its path, else model_name.
std::string model_label(const TrainSettings& s) {
  if (s.model && s.model->model_from_pretrained_path) {
    return s.model->model_from_pretrained_path->string();
  }
  if (s.model_name) return *s.model_name;
  return s.model ? s.model->model_name : std::string("(no model configured)");
}

/// saes has no autocast: the dictionary computes in sae.dtype, so amp_dtype must name it.
void check_amp_dtype(const TrainSettings& s, std::string_view where) {
  SAES_CHECK(!s.trainer.amp_dtype || *s.trainer.amp_dtype == s.sae.dtype, UnsupportedError,
             "{}trainer.amp_dtype: mixed-precision autocast is not implemented, the dictionary "
             "computes in sae.dtype ({}); set trainer.amp_dtype: {} or null (got {})",
             where, dtype_name(s.sae.dtype), dtype_name(s.sae.dtype),
             dtype_name(s.trainer.amp_dtype.value_or(s.sae.dtype)));
}

/// Batches the preparation of `s` reads: kDatasetNormBatches for dataset-wise norms, one for the
/// initializer's search, none otherwise.
int preparation_batches(const TrainSettings& s) {
  if (s.sae.norm_activation == dictionaries::NormActivation::kDatasetWise) {
    return dictionaries::kDatasetNormBatches;
  }
  return s.initializer.has_value() ? 1 : 0;
}

/// The first `n` batches, read from a separate stream so that training still starts at batch 0.
std::vector<data::ActivationBatch> first_batches(const ActivationStreams& streams, int n) {
  std::vector<data::ActivationBatch> batches;
  if (n == 0) return batches;
  auto stream = streams.make();
  while (static_cast<int>(batches.size()) < n) {
    auto b = stream->next();
    if (!b) break;
    batches.push_back(std::move(*b));
  }
  SAES_CHECK(!batches.empty(), DataError,
             "the activation stream yielded no batch; check activation_factory.sources");
  return batches;
}

/// Dataset norms from the first kDatasetNormBatches batches, the model-informed inits (`model`:
/// null unless training::needs_model) and the initializer's search on the first batch.
void prepare_dictionary(const TrainSettings& s, const std::vector<data::ActivationBatch>& batches,
                        const lm::Transformer* model, dictionaries::SparseDictionary& dict,
                        Logger& logger) {
  if (s.sae.norm_activation == dictionaries::NormActivation::kDatasetWise) {
    const auto n = std::min<std::size_t>(batches.size(), dictionaries::kDatasetNormBatches);
    for (const auto& hook : dict.hook_points()) {
      std::vector<at::Tensor> rows;
      for (std::size_t i = 0; i < n; ++i) rows.push_back(batch_rows(batches[i], hook));
      // Rounded to the dtype checkpoints store it in, so a resumed run computes with this value.
      const double norm = at::scalar_tensor(dictionaries::average_activation_norm(rows),
                                            at::TensorOptions().dtype(dict.dtype()))
                              .item<double>();
      dict.set_dataset_norm(hook, norm);
      logger.info("dataset norm of {}: {:.4f} (over {} batches)", hook, norm, n);
    }
  }
  if (s.initializer) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(s.seed));
    training::initialize_parameters(dict, *s.initializer, gen);
    std::map<std::string, at::Tensor> raw;
    for (const auto& hook : dict.hook_points()) {
      raw[hook] = dict.reads_sequences() ? batches.front().acts.at(hook)
                                         : batch_rows(batches.front(), hook);
    }
    training::initialize_from_model(dict, *s.initializer, model, model_label(s), raw, logger);
    training::initialization_search(dict, *s.initializer, raw, logger);
  }
}

void load_pretrained(const TrainSettings& s, dictionaries::SparseDictionary& dict) {
  SAES_CHECK(s.sae.sae_pretrained_name_or_path.has_value(), ConfigError,
             "initializer is null, so the weights come from sae.sae_pretrained_name_or_path, "
             "which is not set; set one of them");
  fs::path path = *s.sae.sae_pretrained_name_or_path;
  if (fs::is_directory(path)) path /= training::kWeightsFileName;
  SAES_CHECK(fs::exists(path), IoError, "sae.sae_pretrained_name_or_path: {} does not exist",
             path.string());
  dict.load(path);
}

/// One dictionary of the run: its resolved settings (sweep item applied), the dictionary and its
/// trainer adapter.
struct Member {
  std::string name;  ///< run sub-folder and metrics prefix; empty for the single-`sae` form
  TrainSettings settings;
  std::unique_ptr<dictionaries::SparseDictionary> dict;
  std::unique_ptr<training::DictionaryModule> module;
};

bool overrides_member_key(std::string_view assignment) {
  const std::string_view key = assignment.substr(0, assignment.find('='));
  for (std::string_view section : {"sae", "initializer", "trainer"}) {
    if (key == section ||
        (key.starts_with(section) && key.size() > section.size() && key[section.size()] == '.')) {
      return true;
    }
  }
  return false;
}

/// The trainer keys shared by all dictionaries of a run; a sweep item may not change them.
void check_run_level(const training::TrainerConfig& item, const training::TrainerConfig& run,
                     const std::string& name) {
  const auto check = [&](bool same, const char* key) {
    SAES_CHECK(same, ConfigError,
               "sweep item {}: trainer.{} is shared by every dictionary of the run; set it at the "
               "top level, not in the item",
               name, key);
  };
  check(item.total_training_tokens == run.total_training_tokens, "total_training_tokens");
  check(item.log_frequency == run.log_frequency, "log_frequency");
  check(item.eval_frequency == run.eval_frequency, "eval_frequency");
  check(item.n_checkpoints == run.n_checkpoints, "n_checkpoints");
  check(item.check_point_save_mode == run.check_point_save_mode, "check_point_save_mode");
  check(item.keep_last_checkpoints == run.keep_last_checkpoints, "keep_last_checkpoints");
  check(item.from_pretrained_path == run.from_pretrained_path, "from_pretrained_path");
  check(item.exp_result_path == run.exp_result_path, "exp_result_path");
}

/// The settings of each dictionary: `s` itself, or per sweep item the top-level settings with the
/// item's overrides applied (parsed and validated like --set).
std::vector<Member> resolve_members(const TrainSettings& s) {
  std::vector<Member> members;
  if (s.sweep.empty()) {
    members.push_back(Member{"", s, nullptr, nullptr});
    return members;
  }
  TrainSettings base = s;
  base.sweep.clear();
  const std::string base_yaml = config::dump_yaml(base);
  for (const config::SweepItem& item : s.sweep) {
    for (const std::string& assignment : item.set) {
      SAES_CHECK(overrides_member_key(assignment), ConfigError,
                 "sweep item {}: '{}' is not a sae.*, initializer.* or trainer.* key; the other "
                 "settings are shared by the whole run",
                 item.sae_name, assignment);
    }
    TrainSettings m = config::parse_train_settings(
        base_yaml, fmt::format("sweep item {}", item.sae_name), item.set);
    check_run_level(m.trainer, s.trainer, item.sae_name);
    SAES_CHECK(m.sae.d_model == s.sae.d_model, ConfigError,
               "sweep item {}: sae.d_model {} differs from the stream's d_model {} (top-level "
               "sae.d_model)",
               item.sae_name, m.sae.d_model, s.sae.d_model);
    m.sae_name = item.sae_name;
    members.push_back(Member{item.sae_name, std::move(m), nullptr, nullptr});
  }
  return members;
}

/// Builds each member's dictionary: loaded (initializer null) or initialized, with dataset norms,
/// the model-informed inits (the stream's model, or `model` loaded for them and released after)
/// and the initializer's search on the first batches of the shared stream; each holds the
/// features of `shard`.
void build_dictionaries(std::vector<Member>& members, const TrainSettings& s,
                        const ActivationStreams& streams, const dictionaries::FeatureShard& shard,
                        bool resuming, Logger& logger) {
  int wanted = 0;
  bool model_needed = false;
  for (Member& m : members) {
    m.dict = dictionaries::make_dictionary(m.settings.sae, shard);
    if (!resuming && !m.settings.initializer) load_pretrained(m.settings, *m.dict);
    if (!resuming) wanted = std::max(wanted, preparation_batches(m.settings));
    model_needed = model_needed || (!resuming && m.settings.initializer &&
                                    training::needs_model(*m.settings.initializer, m.settings.sae));
  }
  SAES_CHECK(!model_needed || !s.model || s.model->checkpoints.empty(), UnsupportedError,
             "initializer: the model-informed inits read one model's layer, and model.checkpoints "
             "lists several: not supported; initialize without them (initialize_tc_with_mlp, "
             "initialize_lorsa_with_mhsa, a lorsa's initialize_W_D_with_active_subspace)");
  std::optional<lm::LanguageModel> loaded;
  const lm::Transformer* model = streams.model() ? &streams.model()->model : nullptr;
  if (model_needed && model == nullptr) {
    SAES_CHECK(s.model.has_value(), ConfigError,
               "initializer: initialize_lorsa_with_mhsa, initialize_tc_with_mlp and a lorsa's "
               "initialize_W_D_with_active_subspace read the language model: set model "
               "(model_from_pretrained_path)");
    logger.info("loading the model for the initialization: {}", model_label(s));
    loaded.emplace(lm::load_language_model(*s.model));
    model = &loaded->model;
  }
  const auto batches = first_batches(streams, wanted);
  for (Member& m : members) {
    if (!resuming && preparation_batches(m.settings) > 0) {
      prepare_dictionary(m.settings, batches, model, *m.dict, logger);
    }
    m.module = std::make_unique<training::DictionaryModule>(*m.dict, m.settings.trainer);
  }
}

/// config.resolved.yaml of the run, and of each sweep member in its sub-folder (re-runnable alone:
/// its exp_result_path is that sub-folder).
void save_configs(const TrainSettings& s, const std::vector<Member>& members,
                  const fs::path& run_dir) {
  fs::create_directories(run_dir);
  config::save_resolved_config(s, run_dir);
  for (const Member& m : members) {
    if (m.name.empty()) continue;
    TrainSettings alone = m.settings;
    alone.trainer.exp_result_path = run_dir / m.name;
    config::save_resolved_config(alone, run_dir / m.name);
  }
}

/// What saes-train writes into a run folder (and a sweep into each member's sub-folder).
bool is_run_file(const fs::path& name, const std::vector<Member>& members) {
  static const std::vector<std::string> kRunFiles = {std::string(config::kResolvedConfigName),
                                                     "metrics.jsonl", training::kWeightsFileName,
                                                     "checkpoints"};
  const std::string n = name.string();
  if (std::find(kRunFiles.begin(), kRunFiles.end(), n) != kRunFiles.end()) return true;
  if (n.rfind(training::kTensorBoardFilePrefix, 0) == 0) return true;  // logging.tensorboard
  return std::any_of(members.begin(), members.end(),
                     [&](const Member& m) { return !m.name.empty() && m.name == n; });
}

/// A new run needs an empty (or absent) run folder: one that holds a run is refused, or with
/// overwrite: true that run's files are removed first (by the primary rank; a folder with files
/// saes-train did not write is refused either way). Checked on every rank before any work.
void prepare_run_folder(const TrainSettings& s, const std::vector<Member>& members,
                        bool primary, Logger& logger) {
  const fs::path& dir = s.trainer.exp_result_path;
  if (!fs::exists(dir)) return;
  SAES_CHECK(fs::is_directory(dir), ConfigError,
             "trainer.exp_result_path: {} exists and is not a folder", dir.string());
  std::vector<std::string> ours, others;
  for (const auto& entry : fs::directory_iterator(dir)) {
    (is_run_file(entry.path().filename(), members) ? ours : others)
        .push_back(entry.path().filename().string());
  }
  std::sort(ours.begin(), ours.end());
  std::sort(others.begin(), others.end());
  if (ours.empty() && others.empty()) return;
  SAES_CHECK(others.empty(), ConfigError,
             "trainer.exp_result_path: {} already holds files saes-train did not write ({}); "
             "choose an empty or new folder (overwrite: true replaces only a previous run)",
             dir.string(), fmt::join(others, ", "));
  SAES_CHECK(s.overwrite, ConfigError,
             "trainer.exp_result_path: {} already holds a run ({}); continue that run with "
             "saes-train --resume {}, replace it with overwrite: true, or choose another folder",
             dir.string(), fmt::join(ours, ", "), dir.string());
  if (!primary) return;
  for (const auto& name : ours) fs::remove_all(dir / name);
  logger.warn("overwrite: removed the previous run's {} from {}", fmt::join(ours, ", "),
              dir.string());
}

/// The dictionary a checkpoint was trained as must be the one the run configures (a resumed run
/// continues that run; only the continuation keys — trainer totals, logging — may change).
void check_resumed_dictionary(const fs::path& checkpoint, const Member& m) {
  const fs::path weights =
      (m.name.empty() ? checkpoint : checkpoint / m.name) / training::kWeightsFileName;
  if (!fs::exists(weights)) return;  // the trainer's load names the missing file
  const auto file = io::SafetensorsFile::open(weights);
  const auto it = file.metadata().find("saes_config");
  if (it == file.metadata().end()) return;
  const auto stored = nlohmann::json::parse(it->second, nullptr, false);
  const auto current =
      nlohmann::json::parse(convert::dictionary_config_json(m.settings.sae, true), nullptr, false);
  if (!stored.is_object() || !current.is_object()) return;
  for (const auto& [key, value] : current.items()) {
    if (key == "device" || key == "sae_pretrained_name_or_path" || key == "strict_loading" ||
        key == "norm_activation" || key == "sparsity_include_decoder_norm" ||
        !stored.contains(key)) {
      continue;  // where the run lives, and what a fold records
    }
    SAES_CHECK(stored[key] == value, ConfigError,
               "--resume: {} was trained with sae.{} = {}, the run configures {}; resume with the "
               "run's own config (only trainer totals and logging may change)",
               checkpoint.string(), key, stored[key].dump(), value.dump());
  }
}

/// The trainer settings a resumed run must keep: all but the continuation keys (totals,
/// checkpoint and logging cadence, paths).
std::string trainer_identity(training::TrainerConfig t) {
  const training::TrainerConfig defaults;
  t.total_training_tokens = defaults.total_training_tokens;
  t.log_frequency = defaults.log_frequency;
  t.eval_frequency = defaults.eval_frequency;
  t.n_checkpoints = defaults.n_checkpoints;
  t.check_point_save_mode = defaults.check_point_save_mode;
  t.keep_last_checkpoints = defaults.keep_last_checkpoints;
  t.skip_metrics_calculation = defaults.skip_metrics_calculation;
  t.from_pretrained_path.reset();
  t.exp_result_path = defaults.exp_result_path;
  TrainSettings only;
  only.trainer = t;
  return config::dump_yaml(only);
}

/// The run being resumed recorded its settings in config.resolved.yaml (read before this run
/// rewrites it): every member's trainer settings must be the same but for continuation keys.
void check_resumed_trainer(fs::path from, const std::vector<Member>& members) {
  if (from.filename().empty()) from = from.parent_path();  // "run/" or "step_5/"
  const fs::path run = fs::exists(from / "checkpoints") ? from : from.parent_path().parent_path();
  const fs::path file = run / config::kResolvedConfigName;
  if (!fs::exists(file)) return;  // a checkpoint copied out of its run: the sae.* check remains
  const TrainSettings stored = config::parse_train_settings(io::read_file(file), file.string(), {},
                                                            config::Validation::kOff);
  for (const Member& before : resolve_members(stored)) {
    for (const Member& now : members) {
      if (now.name != before.name) continue;
      const std::string old_yaml = trainer_identity(before.settings.trainer);
      const std::string new_yaml = trainer_identity(now.settings.trainer);
      SAES_CHECK(old_yaml == new_yaml, ConfigError,
                 "--resume: {}{} was trained with other trainer settings (this run: {}; the run's "
                 "{} has {}); only trainer totals, checkpoint and log cadence may change",
                 run.string(), now.name.empty() ? "" : " member " + now.name,
                 config::changed_lines(old_yaml, new_yaml), config::kResolvedConfigName,
                 config::changed_lines(new_yaml, old_yaml));
    }
  }
}

/// A checkpoint folder, or a run folder (its newest checkpoint).
fs::path resume_checkpoint(const fs::path& path) {
  if (!fs::exists(path / "checkpoints")) return path;
  const auto steps = training::list_checkpoints(path);
  SAES_CHECK(!steps.empty(), IoError,
             "trainer.from_pretrained_path: run folder {} has no complete checkpoint",
             path.string());
  return training::checkpoint_path(path, steps.back());
}

std::string outcome_text(const training::FitResult& r) {
  switch (r.outcome) {
    case training::FitOutcome::kCompleted:
      return "completed";
    case training::FitOutcome::kStreamExhausted:
      return "stopped: the activation stream ended";
    case training::FitOutcome::kInterrupted:
      return "interrupted by a signal";
  }
  return "unknown";
}

}  // namespace

int run_train(const TrainSettings& s, RunContext& context) {
  check_supported(s);
  const TrainDistribution distribution(s, context);
  Logger& logger = context.logger;
  std::vector<Member> members = resolve_members(s);
  for (const Member& m : members) {
    check_amp_dtype(m.settings, m.name.empty() ? "" : fmt::format("sweep item {}: ", m.name));
  }
  const ActivationStreams streams(
      ActivationInputs{s.activation_factory, s.model, s.datasets, s.sae.d_model,
                       static_cast<std::uint64_t>(s.seed), c10::Device(c10::DeviceType::CPU),
                       s.resume_allow_data_change},
      logger);
  const bool resuming = s.trainer.from_pretrained_path.has_value();
  if (!resuming) prepare_run_folder(s, members, distribution.is_primary(), logger);
  if (resuming) check_resumed_trainer(*s.trainer.from_pretrained_path, members);
  build_dictionaries(members, s, streams, distribution.feature_shard(), resuming, logger);

  const fs::path run_dir = s.trainer.exp_result_path;
  if (distribution.is_primary()) save_configs(s, members, run_dir);

  auto stream = distribution.rank_stream(streams.make());
  training::StreamBatchSource source(*stream);
  training::SignalGuard signals;
  training::TrainerOptions options;
  options.signals = &signals;
  options.progress = context.progress;
  options.progress_interval_s = context.progress_interval_s;
  options.tensorboard = s.logging.tensorboard;
  distribution.configure(options);
  std::vector<training::TrainerMember> trainer_members;
  for (Member& m : members) {
    trainer_members.push_back(training::TrainerMember{m.name, m.module.get(), m.settings.trainer});
  }
  training::Trainer trainer(s.trainer, std::move(trainer_members), source, logger, options);
  if (resuming) {
    const fs::path checkpoint = resume_checkpoint(*s.trainer.from_pretrained_path);
    for (const Member& m : members) check_resumed_dictionary(checkpoint, m);
    logger.info("resuming from {}", checkpoint.string());
    trainer.resume(checkpoint);
  }
  const training::FitResult result = trainer.fit();
  logger.info("{}: {} after {} steps, {} tokens", s.sae_name, outcome_text(result), result.steps,
              result.tokens);
  if (result.outcome != training::FitOutcome::kCompleted) {
    logger.info("continue with: saes-train --resume {}", run_dir.string());
    return 0;
  }
  for (Member& m : members) {
    const fs::path dir = m.name.empty() ? run_dir : run_dir / m.name;
    if (m.settings.fold_activation_scale &&
        m.settings.sae.norm_activation == dictionaries::NormActivation::kDatasetWise) {
      m.dict->fold_activation_scale();
      m.module->save(dir, distribution.is_primary());
    }
    if (distribution.is_primary()) {
      logger.info("weights: {}", (dir / training::kWeightsFileName).string());
    }
  }
  return 0;
}

}  // namespace saes::runners

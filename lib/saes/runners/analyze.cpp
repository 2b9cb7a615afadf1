// run_analyze (spec Appendix D "analyze", docs/analysis.md): load the dictionary of a saes-train
// run, stream 2-D activations (shards or the model on the fly), feed the FeatureAnalyzer, add
// decoder geometry, logit lens and (optionally) evaluation, and write the analysis database.
// Under mpirun the features are split over the ranks (model_parallel_size) and rank 0 writes.
#include <algorithm>
#include <optional>

#include <ATen/core/Tensor.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/analysis/feature_analyzer.h"
#include "saes/analysis/feature_exchange.h"
#include "saes/analysis/geometry.h"
#include "saes/analysis/source_patterns.h"
#include "saes/analysis/store.h"
#include "saes/config/config_loader.h"
#include "saes/core/error.h"
#include "saes/data/activation_stream.h"
#include "saes/dictionaries/registry.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/distributed/communicator.h"
#include "saes/distributed/mesh.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/hf_folder.h"
#include "saes/lm/tokenizer.h"
#include "saes/lm/unicode.h"
#include "saes/runners/activation_input.h"
#include "saes/runners/analyze_eval.h"
#include "saes/runners/dictionary_loading.h"
#include "saes/runners/runners.h"
#include "saes/training/dictionary_module.h"

namespace saes::runners {
namespace {

namespace fs = std::filesystem;
using config::AnalyzeSettings;

constexpr std::int64_t kLogitLensTokens = 10;

/// Several processes split the features (model_parallel_size); splitting the tokens over data
/// ranks would need the sampled contexts merged across ranks and is not offered.
void check_supported(const AnalyzeSettings& s) {
  SAES_CHECK(s.parallelism.data_parallel_size == 1, UnsupportedError,
             "data_parallel_size {}: saes-analyze splits the features over processes, not the "
             "tokens; set data_parallel_size: 1 and model_parallel_size to the number of processes",
             s.parallelism.data_parallel_size);
  SAES_CHECK(s.parallelism.head_parallel_size == 1, UnsupportedError,
             "head_parallel_size {}: saes-analyze reads every head of a crosscoder on each rank "
             "(checkpoints hold all heads); set it to 1 and split the features with "
             "model_parallel_size",
             s.parallelism.head_parallel_size);
  check_analyze_eval(s);
}

/// analyzer.clt_layer: the one source layer analysed (its d_sae features), checked against the
/// dictionary; nullopt: every layer.
std::optional<std::int64_t> analysed_layer(const AnalyzeSettings& s,
                                           const dictionaries::SparseDictionary& dict) {
  if (!s.analyzer.clt_layer) return std::nullopt;
  const std::int64_t l = *s.analyzer.clt_layer, layers = dict.feature_layers();
  SAES_CHECK(layers > 1, ConfigError,
             "analyzer.clt_layer: the dictionary has one layer of features (sae_type {}); remove "
             "it",
             dictionaries::kSaeTypeNames[static_cast<std::size_t>(dict.config().sae_type)]);
  SAES_CHECK(l >= 0 && l < layers, ConfigError,
             "analyzer.clt_layer: expected 0..{} (the dictionary's layers), got {}", layers - 1, l);
  return l;
}

/// Rows [layers·local, ...] of per-feature values → the analysed layer's rows, or all.
at::Tensor analysed_rows(const at::Tensor& t, std::int64_t layers, std::optional<std::int64_t> l) {
  if (!l) return t;
  return t.view({layers, -1, t.size(-1)}).narrow(0, *l, 1).reshape({-1, t.size(-1)});
}

/// Per-feature values `mine` ([this rank's features (layer-major), n]) of the analysed features,
/// gathered over the model ranks in the database's feature order (as layer_major) as float64
/// lists of n. Collective over the model group.
std::vector<std::vector<double>> gathered_rows(const dictionaries::SparseDictionary& dict,
                                               const at::Tensor& mine, std::int64_t layers,
                                               std::optional<std::int64_t> only_layer) {
  const std::int64_t kept = only_layer ? 1 : layers, n = mine.size(-1);
  const at::Tensor all =
      dict.gather_features(analysed_rows(mine, layers, only_layer).reshape({kept, -1, n}), 1)
          .reshape({-1, n})
          .to(at::kDouble)
          .cpu()
          .contiguous();
  std::vector<std::vector<double>> out;
  const double* p = all.data_ptr<double>();
  for (std::int64_t i = 0; i < all.size(0); ++i) out.emplace_back(p + i * n, p + (i + 1) * n);
  return out;
}

/// The dictionary of a saes-train run folder (or its weights file): config from
/// config.resolved.yaml, weights from sae_weights.safetensors.
std::unique_ptr<dictionaries::SparseDictionary> load_dictionary(
    const AnalyzeSettings& s, const dictionaries::FeatureShard& shard) {
  const fs::path weights = s.sae.pretrained_name_or_path;
  SAES_CHECK(fs::exists(weights), IoError, "sae.pretrained_name_or_path: {} does not exist",
             weights.string());
  const fs::path file = fs::is_directory(weights) ? weights / training::kWeightsFileName : weights;
  const fs::path yaml = file.parent_path() / config::kResolvedConfigName;
  SAES_CHECK(fs::exists(file) && fs::exists(yaml), IoError,
             "sae.pretrained_name_or_path: expected a saes-train run folder with {} and {}, "
             "missing {}",
             training::kWeightsFileName, config::kResolvedConfigName,
             fs::exists(file) ? yaml.string() : file.string());
  auto dict = load_trained_dictionary(
      weights, DictionaryLoad{s.sae.device, s.sae.dtype, s.sae.strict_loading, shard});
  if (s.sae.fold_activation_scale &&
      dict->config().norm_activation == dictionaries::NormActivation::kDatasetWise) {
    dict->fold_activation_scale();
  }
  return dict;
}

/// The features gathered rank by rank (rank r: its d_sae/M features of each layer, layer-major)
/// in the dictionary's order, feature l·d_sae + i for feature i of layer l.
std::vector<analysis::FeatureStats> layer_major(std::vector<analysis::FeatureStats> gathered,
                                               std::int64_t layers, std::int64_t ranks) {
  if (layers == 1 || ranks == 1) return gathered;
  const auto n = static_cast<std::int64_t>(gathered.size());
  const std::int64_t per = n / (layers * ranks);  // features of one layer on one rank
  std::vector<analysis::FeatureStats> out(gathered.size());
  for (std::int64_t r = 0; r < ranks; ++r) {
    for (std::int64_t l = 0; l < layers; ++l) {
      for (std::int64_t j = 0; j < per; ++j) {
        out[static_cast<std::size_t>(l * ranks * per + r * per + j)] =
            std::move(gathered[static_cast<std::size_t>((r * layers + l) * per + j)]);
      }
    }
  }
  return out;
}

/// A SentencePiece piece with every "▁" (U+2581) read as a space.
std::string spaces_for_pieces(std::string_view piece) {
  constexpr std::string_view kSpace = "\u2581";
  std::string out;
  std::size_t from = 0;
  for (auto at = piece.find(kSpace); at != std::string_view::npos; at = piece.find(kSpace, from)) {
    out.append(piece.substr(from, at - from)).push_back(' ');
    from = at + kSpace.size();
  }
  return out.append(piece.substr(from));
}

/// Display text of every token id: byte-level BPE decodes (its pieces spell spaces as "Ġ");
/// SentencePiece-family and llama2.c vocabularies use their pieces with "▁" read as a space
/// (their decode drops the leading space of a lone token). Never invalid UTF-8.
std::vector<std::string> vocabulary(const lm::Tokenizer& tokenizer) {
  std::vector<std::string> out;
  const bool decodes = tokenizer.kind() == "byte_level_bpe";
  for (std::int64_t id = 0; id < tokenizer.vocab_size(); ++id) {
    const std::int64_t ids[] = {id};
    std::string text = decodes ? tokenizer.decode(ids) : std::string();
    if (text.empty() || !lm::is_valid_utf8(text)) {
      text = spaces_for_pieces(tokenizer.piece(id));
    }
    out.push_back(std::move(text));
  }
  return out;
}

/// The streams of the analysed activations (the hooks the dictionary reads must be listed).
ActivationInputs analysed_inputs(const AnalyzeSettings& s,
                                 const dictionaries::SparseDictionary& dict) {
  const auto& hooks = s.activation_factory.hook_points;
  for (const std::string& hook : dict.input_hooks()) {
    SAES_CHECK(std::find(hooks.begin(), hooks.end(), hook) != hooks.end(), ConfigError,
               "activation_factory.hook_points lacks \"{}\", which the dictionary reads (got [{}])",
               hook, fmt::join(hooks, ", "));
  }
  return ActivationInputs{s.activation_factory,
                          s.model,
                          s.datasets,
                          dict.config().d_model,
                          static_cast<std::uint64_t>(s.seed),
                          dict.device()};
}

/// Spec §7.2 z-patterns of the sampled contexts of a sequence dictionary (Lorsa): a second pass
/// over the same stream, with the whole dictionary. Primary rank only.
void add_z_patterns(const AnalyzeSettings& s, const dictionaries::SparseDictionary& dict,
                    const ActivationStreams& streams, std::vector<analysis::FeatureStats>& features,
                    Logger& logger) {
  auto stream = streams.make();
  const std::vector<std::string> inputs = dict.input_hooks();
  const std::int64_t total = s.analyzer.total_analyzing_tokens;
  std::int64_t seen = 0;
  const std::int64_t n = analysis::add_source_patterns(
      dict, features, [&]() -> std::optional<dictionaries::HookActs> {
        if (seen >= total) return std::nullopt;  // the analysed contexts only
        auto batch = stream->next();
        if (!batch) return std::nullopt;
        seen += batch->n_tokens;
        dictionaries::HookActs raw;
        for (const std::string& hook : inputs) raw[hook] = batch->acts.at(hook);
        return raw;
      });
  logger.info("z-patterns of {} sampled contexts", n);
}

/// Streams activations into the analyzer until total_analyzing_tokens (padding included).
void analyze_stream(const AnalyzeSettings& s, const dictionaries::SparseDictionary& dict,
                    const ActivationStreams& streams, analysis::FeatureAnalyzer& analyzer,
                    std::optional<std::int64_t> only_layer, RunContext& context) {
  const std::vector<std::string> inputs = dict.input_hooks();
  auto stream = streams.make();
  const std::int64_t total = s.analyzer.total_analyzing_tokens;
  auto progress = context.make_progress("analyze", total, "tok");
  std::int64_t seen = 0;
  while (seen < total) {
    auto batch = stream->next();
    if (!batch) {
      context.logger.warn("the activation stream ended after {} of {} tokens", seen, total);
      break;
    }
    // Features of every input hook (a CLT: layer-major, feature l·d_sae + i).
    dictionaries::HookActs raw;
    for (const std::string& hook : inputs) {  // a Lorsa reads whole contexts
      raw[hook] = dict.reads_sequences() ? batch->acts.at(hook) : batch->acts.at(hook).flatten(0, 1);
    }
    const at::Tensor& x = batch->acts.at(inputs.front());
    // the dictionary's whole encode (a CLT's layertopk selects across layers), then the layer
    const at::Tensor all = dict.analysis_features(dict.encode(dict.prepare_input(raw)));
    const at::Tensor f =
        (only_layer ? all.view({all.size(0), dict.feature_layers(), -1}).select(1, *only_layer)
                    : all)
            .reshape({x.size(0), x.size(1), -1});
    analyzer.add_batch(f, batch->tokens, batch->mask);
    seen += batch->n_tokens;
    progress.advance(batch->n_tokens);
  }
  progress.finish();
}

}  // namespace

int run_analyze(const AnalyzeSettings& s, RunContext& context) {
  check_supported(s);
  const distributed::Mesh mesh(context.world, s.parallelism);
  const bool primary = mesh.is_primary();
  Logger& logger = context.logger;
  auto dict = load_dictionary(s, dictionaries::FeatureShard{&mesh.model()});
  if (mesh.model_size() > 1 && primary) {
    logger.info("model parallel: {} ranks, {} of the {} features each", mesh.model_size(),
                dict->local_d_sae(), dict->d_sae());
  }
  std::optional<lm::LanguageModel> lm;
  if (s.model) lm.emplace(lm::load_language_model(*s.model));

  analysis::AnalyzerOptions options;
  options.bands = analysis::bands_of(s.analyzer);
  options.ignore_token_ids = s.analyzer.ignore_token_ids.value_or(std::vector<std::int64_t>{});
  const std::optional<std::int64_t> only_layer = analysed_layer(s, *dict);
  const std::int64_t layers = dict->feature_layers(), kept_layers = only_layer ? 1 : layers;
  analysis::FeatureAnalyzer analyzer(dict->local_d_sae() * kept_layers, options);
  const ActivationStreams streams(analysed_inputs(s, *dict), logger, lm ? &*lm : nullptr);
  analyze_stream(s, *dict, streams, analyzer, only_layer, context);

  analysis::AnalysisRecord record;
  record.meta = {{"sae_name", s.sae_name},
                 {"sae_series", s.sae_series},
                 {"analysis_name", s.feature_analysis_name},
                 {"sae_path", s.sae.pretrained_name_or_path},
                 {"hook_point", fmt::format("{}", fmt::join(dict->input_hooks(), ","))},
                 {"d_model", std::to_string(dict->config().d_model)},
                 {"sae_type", std::string(dictionaries::kSaeTypeNames[static_cast<std::size_t>(
                                  dict->config().sae_type)])},
                 {"model_name", s.model_name.value_or("")},
                 {"config_yaml", config::dump_yaml(s)}};
  record.n_analyzed_tokens = analyzer.n_analyzed_tokens();
  record.n_contexts = analyzer.n_contexts();
  record.histogram = options.histogram;
  record.bands = options.bands;
  if (only_layer) record.meta["clt_layer"] = std::to_string(*only_layer);
  record.features = layer_major(analysis::gather_feature_stats(analyzer.finish(), mesh.model()),
                                kept_layers, mesh.model_size());
  if (dict->reads_sequences() && primary) {
    if (mesh.model_size() > 1) {
      add_z_patterns(s, *load_dictionary(s, {}), streams, record.features, logger);
    } else {
      add_z_patterns(s, *dict, streams, record.features, logger);
    }
  }
  // The evaluation is data-parallel over all ranks with a whole dictionary each.
  if (s.eval) {
    record.eval = mesh.model_size() > 1 ? run_analyze_eval(s, *load_dictionary(s, {}), context)
                                        : run_analyze_eval(s, *dict, context);
  }
  record.feature_layers = kept_layers;
  if (dict->label_hooks().size() > 1) {  // what each feature writes to each target hook
    record.target_hooks = dict->label_hooks();
    record.target_decoder_norms =
        gathered_rows(*dict, dict->target_decoder_norms(), layers, only_layer);
    // a crosscoder's H×H decoder matrices per feature (the decoder_similarity table)
    const dictionaries::DecoderHeadSimilarities sims = dict->decoder_head_similarities();
    if (sims.cosines.defined()) {
      record.decoder_inner_products =
          gathered_rows(*dict, sims.inner_products.flatten(1), layers, only_layer);
      record.decoder_cosines = gathered_rows(*dict, sims.cosines.flatten(1), layers, only_layer);
    }
  }
  const std::int64_t d = dict->config().d_model;
  // A MoLT's transforms have no single decoder direction: no decoder geometry, no logit lens.
  const at::Tensor directions = dict->feature_directions();
  const at::Tensor W_D =  // per layer, each layer's shards side by side (as layer_major)
      directions.defined()
          ? dict->gather_features(
                    analysed_rows(directions, layers, only_layer).view({kept_layers, -1, d}), 1)
                .view({-1, d})
          : at::Tensor();
  // The logit lens (spec §7.4, the original's DLA): per analysed feature layer, the variant's
  // DLA terms gathered over the model ranks (collective), each row through ln_final and the
  // unembedding, the terms' logits summed.
  std::vector<std::vector<at::Tensor>> lens_terms;
  const std::int64_t first_layer = only_layer.value_or(0);
  if (lm && directions.defined()) {
    for (std::int64_t l = first_layer; l < first_layer + kept_layers; ++l) {
      std::vector<at::Tensor> terms;
      for (const at::Tensor& t : dict->dla_terms(l)) terms.push_back(dict->gather_features(t, 0));
      lens_terms.push_back(std::move(terms));
    }
  }
  if (!primary) return 0;
  if (W_D.defined()) record.decoder_cosine = analysis::max_decoder_cosine(W_D);
  if (lm) {
    const lm::Transformer& model = lm->model;
    const analysis::ToLogits to_logits = [&model](const at::Tensor& rows) {
      const c10::InferenceMode inference;
      return model.logits_of_residual(rows);
    };
    for (const auto& terms : lens_terms) {
      auto lens = analysis::logit_lens(terms, to_logits, kLogitLensTokens);
      record.logit_lens.insert(record.logit_lens.end(), std::make_move_iterator(lens.begin()),
                               std::make_move_iterator(lens.end()));
    }
    if (!lens_terms.empty()) {
      record.meta["logit_lens"] =
          "each decoder vector through ln_final (normalized alone) and the unembedding";
    }
    record.vocab = vocabulary(*lm->tokenizer);
  }

  // Written only once everything ran: a failed analysis leaves no output behind.
  fs::create_directories(s.output_dir);
  const fs::path db = s.output_dir / (s.feature_analysis_name + ".sqlite");
  analysis::write_analysis_db(db, record);
  config::save_resolved_config(s, s.output_dir);
  std::int64_t alive = 0;
  for (const auto& f : record.features) alive += f.act_times > 0 ? 1 : 0;
  logger.info("{}: {} features ({} alive) over {} tokens; analyzer held {:.1f} MiB", db.string(),
              record.features.size(), alive, record.n_analyzed_tokens,
              static_cast<double>(analyzer.memory_bytes()) / (1 << 20));
  return 0;
}

}  // namespace saes::runners

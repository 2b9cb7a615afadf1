// run_attribute (`saes-analyze attribute`): one prompt through the replacement model, its
// attribution graph pruned and written as circuit-tracer JSON and into graphs.sqlite.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/circuits/attribution.h"
#include "saes/circuits/graph_json.h"
#include "saes/circuits/graph_store.h"
#include "saes/circuits/pruning.h"
#include "saes/core/error.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/distributed/communicator.h"
#include "saes/lm/hf_folder.h"
#include "saes/lm/tokenizer.h"
#include "saes/runners/dictionary_loading.h"
#include "saes/runners/runners.h"

namespace saes::runners {
namespace fs = std::filesystem;
namespace {

std::vector<std::int64_t> prompt_tokens(const config::AttributeSettings& s,
                                        const lm::LanguageModel& lm) {
  if (s.prompt_ids) return *s.prompt_ids;
  SAES_CHECK(lm.tokenizer != nullptr, ConfigError,
             "prompt: the model has no tokenizer to encode it (set model.tokenizer_path, or give "
             "prompt_ids)");
  std::vector<std::int64_t> ids;
  if (s.model.prepend_bos) {
    SAES_CHECK(lm.special_ids.bos.has_value(), ConfigError,
               "model.prepend_bos: the tokenizer has no BOS id (set model.bos_token_id)");
    ids.push_back(*lm.special_ids.bos);
  }
  for (const std::int64_t id : lm.tokenizer->encode(*s.prompt)) ids.push_back(id);
  SAES_CHECK(!ids.empty(), ConfigError, "prompt: encodes to no token");
  return ids;
}

std::vector<std::int64_t> target_ids(const config::AttributeSettings& s,
                                     const lm::LanguageModel& lm) {
  std::vector<std::int64_t> out;
  if (!s.attribution.target_tokens) return out;
  SAES_CHECK(lm.tokenizer != nullptr, ConfigError,
             "attribution.target_tokens: the model has no tokenizer to encode them");
  for (const std::string& text : *s.attribution.target_tokens) {
    const std::vector<std::int64_t> ids = lm.tokenizer->encode(text);
    SAES_CHECK(ids.size() == 1, ConfigError,
               "attribution.target_tokens: \"{}\" is {} tokens, a logit target is one token", text,
               ids.size());
    out.push_back(ids.front());
  }
  return out;
}

}  // namespace

int run_attribute(const config::AttributeSettings& s, RunContext& context) {
  SAES_CHECK(context.world.size() == 1, UnsupportedError,
             "saes-analyze attribute runs as one process; got {} (launch it without mpirun)",
             context.world.size());
  Logger& logger = context.logger;
  circuits::check_slug(s.graph_name);
  const fs::path json_path = s.output_dir / (s.graph_name + ".json");
  const fs::path store_path = s.output_dir / circuits::kGraphStoreFileName;
  SAES_CHECK(s.overwrite || !fs::exists(json_path), ConfigError,
             "graph_name: {} already exists; set overwrite: true to replace it",
             json_path.string());
  if (fs::exists(store_path) && !s.overwrite) {
    SAES_CHECK(!circuits::GraphStore(store_path).contains(s.graph_name), ConfigError,
               "graph_name: {} already holds a graph '{}'; set overwrite: true to replace it",
               store_path.string(), s.graph_name);
  }

  const lm::LanguageModel lm = lm::load_language_model(s.model);
  SAES_CHECK(s.model.checkpoints.empty(), UnsupportedError,
             "model.checkpoints: an attribution graph traces one model");
  const std::vector<std::int64_t> tokens = prompt_tokens(s, lm);
  std::vector<std::unique_ptr<dictionaries::SparseDictionary>> owned;
  std::vector<circuits::ReplacementDictionary> dicts;
  for (const fs::path& path : s.dictionaries) {
    DictionaryLoad load;
    load.device = s.model.device;
    load.dtype = DType::kFloat32;
    auto dict = load_trained_dictionary(path, load);
    if (dict->config().norm_activation == dictionaries::NormActivation::kDatasetWise) {
      dict->fold_activation_scale();  // raw activations in and out
    }
    SAES_CHECK(dict->config().norm_activation == dictionaries::NormActivation::kInference,
               UnsupportedError,
               "dictionaries: {} normalizes its input per token or per batch, which is not "
               "linear; circuit tracing needs dataset-wise (or folded) normalization",
               path.string());
    owned.push_back(std::move(dict));
    dicts.push_back({owned.back().get(), path.string()});
  }

  const bool has_attention = std::any_of(dicts.begin(), dicts.end(), [](const auto& d) {
    const auto labels = d.dictionary->label_hooks();
    return std::any_of(labels.begin(), labels.end(), [](const std::string& h) {
      return h.size() >= 14 && h.compare(h.size() - 14, 14, ".hook_attn_out") == 0;
    });
  });
  SAES_CHECK(!s.attribution.enable_qk_tracing || has_attention, ConfigError,
             "attribution.enable_qk_tracing: QK tracing needs an attention dictionary (a lorsa "
             "writing blocks.L.hook_attn_out) among `dictionaries`");
  circuits::AttributionOptions options;
  for (std::size_t i = 0; i < s.attribution.target_features.size(); ++i) {
    const auto& t = s.attribution.target_features[i];
    if (t.dictionary) {
      SAES_CHECK(std::any_of(dicts.begin(), dicts.end(),
                             [&](const auto& d) { return d.name == *t.dictionary; }),
                 ConfigError,
                 "attribution.target_features[{}].dictionary: \"{}\" is not one of `dictionaries`",
                 i, *t.dictionary);
    }
    options.target_features.push_back({t.dictionary.value_or(""), t.layer, t.position, t.index});
  }

  const auto start = std::chrono::steady_clock::now();
  const circuits::ReplacementModel replacement(lm.model, tokens, dicts,
                                               s.attribution.zero_first_position);
  options.desired_logit_prob = s.attribution.desired_logit_prob;
  options.max_n_logits = s.attribution.max_n_logits;
  options.target_tokens = target_ids(s, lm);
  options.batch_size = s.attribution.batch_size;
  options.max_feature_nodes = s.attribution.max_feature_nodes;
  options.update_interval = s.attribution.update_interval;
  options.zero_first_position = s.attribution.zero_first_position;
  circuits::Graph graph = replacement.attribute(options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  graph.model_name = s.model_name;
  graph.prompt = s.prompt ? *s.prompt : (lm.tokenizer ? lm.tokenizer->decode(tokens) : "");
  for (const std::int64_t id : tokens) {
    graph.token_strings.push_back(lm.tokenizer ? lm.tokenizer->decode({id})
                                               : fmt::format("<{}>", id));
  }
  if (lm.tokenizer) {  // the logit targets' tokens (the JSON clerp, the viewer's labels)
    for (circuits::Node& n : graph.nodes) {
      if (n.kind == circuits::NodeKind::kLogit) n.token_string = lm.tokenizer->decode({n.index});
    }
  }

  const circuits::PruneResult pruned =
      circuits::prune(graph, s.attribution.node_threshold, s.attribution.edge_threshold);
  const circuits::GraphScores scores = circuits::graph_scores(graph);
  if (s.attribution.enable_qk_tracing) {
    const std::vector<std::int64_t> traced =
        circuits::qk_tracing_nodes(graph, pruned, s.attribution.qk_top_fraction);
    replacement.trace_qk(graph, traced, s.attribution.qk_topk, s.attribution.batch_size);
    logger.info("QK tracing: {} of the kept attention features traced", traced.size());
  }
  const circuits::GraphJson json = circuits::make_graph_json(graph, pruned, s.graph_name);
  fs::create_directories(s.output_dir);
  const bool json_existed = fs::exists(json_path);
  circuits::write_graph_json(json_path, json, s.overwrite);
  try {
    circuits::GraphStore store(store_path, circuits::GraphStoreMode::kWrite);
    store.add_graph(graph, pruned, scores, s.graph_name, s.overwrite);
  } catch (...) {
    if (!json_existed) fs::remove(json_path);  // nothing half-written is left behind
    throw;
  }
  std::string targets = fmt::format("{} logit targets", graph.count(circuits::NodeKind::kLogit));
  if (!options.target_features.empty()) {
    std::vector<std::string> chosen;
    for (std::int64_t i = 0; i < graph.n_nodes(); ++i) {
      if (graph.nodes[static_cast<std::size_t>(i)].target)
        chosen.push_back(circuits::node_id(graph, i));
    }
    targets = fmt::format("{} logits; target features {}", graph.count(circuits::NodeKind::kLogit),
                          fmt::join(chosen, ", "));
  }
  logger.info(
      "graph {}: {} tokens, {} nodes ({} features, {}), kept {} nodes and {} links; "
      "replacement score {:.3f}, completeness {:.3f}; attribution {:.2f} s in {} backward passes",
      s.graph_name, tokens.size(), graph.n_nodes(), graph.count(circuits::NodeKind::kFeature),
      targets, json.nodes.size(), json.links.size(), scores.replacement, scores.completeness,
      seconds, graph.backward_passes);
  logger.info("wrote {} and {}", json_path.string(), store_path.string());
  return 0;
}

}  // namespace saes::runners

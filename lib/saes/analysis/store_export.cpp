// export_feature_json: one JSON document per feature of an analysis database (autointerp input).
#include <cstddef>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/analysis/store.h"
#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

namespace saes::analysis {
namespace {

nlohmann::json context_json(const AnalysisStore& store, const StoredContext& c) {
  nlohmann::json tokens = nlohmann::json::array();
  nlohmann::json texts = nlohmann::json::array();
  std::vector<float> acts(c.context.tokens.size(), 0.0F);
  for (std::size_t j = 0; j < c.context.positions.size(); ++j) {
    acts[static_cast<std::size_t>(c.context.positions[j])] = c.context.values[j];
  }
  for (const auto t : c.context.tokens) {
    tokens.push_back(t);
    texts.push_back(store.token_text(t));
  }
  nlohmann::json out = {{"band", c.band},
                         {"rank", c.rank},
                         {"score", c.context.score},
                         {"context_index", c.context.provenance.context_index},
                         {"source_rank", c.context.provenance.rank},
                         {"token_offset", c.context.offset},
                         {"tokens", tokens},
                         {"token_texts", texts},
                         {"acts", acts}};
  if (!c.context.source_q.empty()) {  // Lorsa: [query, key, contribution] (positions in tokens)
    nlohmann::json z = nlohmann::json::array();
    for (std::size_t e = 0; e < c.context.source_q.size(); ++e) {
      z.push_back({c.context.source_q[e], c.context.source_k[e], c.context.source_values[e]});
    }
    out["z_pattern"] = std::move(z);
  }
  return out;
}

nlohmann::json logits_json(const AnalysisStore& store, const std::vector<LogitEntry>& list) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : list) {
    out.push_back({{"token", e.token}, {"text", store.token_text(e.token)}, {"logit", e.value}});
  }
  return out;
}

/// Row-major H×H values as H rows of H.
nlohmann::json matrix_json(const std::vector<double>& values, std::size_t heads) {
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t a = 0; a < heads && (a + 1) * heads <= values.size(); ++a) {
    rows.push_back(
        std::vector<double>(values.begin() + static_cast<std::ptrdiff_t>(a * heads),
                            values.begin() + static_cast<std::ptrdiff_t>((a + 1) * heads)));
  }
  return rows;
}

nlohmann::json feature_json(const AnalysisStore& store, const FeatureDetail& d) {
  const FeatureSummary& s = d.summary;
  nlohmann::json j = {{"feature", s.id},       {"act_times", s.act_times},
                      {"frequency", s.frequency}, {"max_act", s.max_act},
                      {"mean_act", s.mean_act},   {"histogram", d.histogram}};
  j["max_decoder_cosine"] = s.max_decoder_cosine ? nlohmann::json(*s.max_decoder_cosine) : nullptr;
  j["nearest_feature"] = s.nearest_feature ? nlohmann::json(*s.nearest_feature) : nullptr;
  nlohmann::json contexts = nlohmann::json::array();
  for (const auto& c : d.contexts) contexts.push_back(context_json(store, c));
  j["contexts"] = contexts;
  j["logits"] = {{"top_positive", logits_json(store, d.top_logits)},
                 {"top_negative", logits_json(store, d.bottom_logits)}};
  if (d.layer) {
    j["layer"] = *d.layer;
    j["index_in_layer"] = d.index_in_layer;
  }
  if (!d.target_decoder_norms.empty()) {
    j["target_hooks"] = store.target_hooks();
    j["target_decoder_norms"] = d.target_decoder_norms;
  }
  if (!d.decoder_cosines.empty()) {  // a crosscoder: [a][b] between target_hooks a and b
    const std::size_t heads = store.target_hooks().size();
    j["decoder_similarity"] = {{"cosine", matrix_json(d.decoder_cosines, heads)},
                               {"inner_product", matrix_json(d.decoder_inner_products, heads)}};
  }
  return j;
}

/// Tokens cut inside a UTF-8 character are written with U+FFFD rather than failing the export.
std::string dump(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

std::int64_t export_feature_json(const AnalysisStore& store,
                                 const std::filesystem::path& out_dir) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  SAES_CHECK(!ec && std::filesystem::is_directory(out_dir), IoError,
             "export: cannot create folder {}: {}", out_dir.string(), ec.message());
  for (std::int64_t i = 0; i < store.d_sae(); ++i) {
    const auto detail = store.feature(i);
    SAES_CHECK(detail.has_value(), DataError, "export: feature {} is missing from the database", i);
    io::write_file_atomic(out_dir / fmt::format("feature_{}.json", i),
                          dump(feature_json(store, *detail), -1));
  }
  nlohmann::json index = {{"meta", store.meta()},
                          {"eval", store.eval_metrics()},
                          {"histogram_edges", store.histogram_edges()}};
  io::write_file_atomic(out_dir / "index.json", dump(index, 2));
  return store.d_sae();
}

}  // namespace saes::analysis

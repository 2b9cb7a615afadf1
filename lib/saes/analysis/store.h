// The analysis database (docs/analysis-db.md, schema version kSchemaVersion): write_analysis_db
// builds it atomically from an AnalysisRecord; AnalysisStore is the read-only API the viewer and
// `saes-analyze export` use; export_feature_json writes one JSON per feature for autointerp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saes/analysis/feature_analyzer.h"
#include "saes/analysis/geometry.h"

namespace saes::io {
class SqliteDatabase;
}  // namespace saes::io

namespace saes::analysis {

inline constexpr std::int64_t kSchemaVersion = 4;
/// The oldest version AnalysisStore still reads (version 1: no per-target decoder norms;
/// version 2: no z-patterns; version 3: no decoder similarity matrices).
inline constexpr std::int64_t kOldestSchemaVersion = 1;

/// Everything one analysis run stores. Optional parts are left empty when not computed.
struct AnalysisRecord {
  std::map<std::string, std::string> meta;  ///< sae_name, sae_series, hook_point, ... (free text)
  std::int64_t n_analyzed_tokens = 0;
  std::int64_t n_contexts = 0;
  HistogramSpec histogram;
  std::vector<Band> bands;
  std::vector<FeatureStats> features;
  std::optional<NearestRow> decoder_cosine;
  std::vector<LogitLens> logit_lens;        ///< empty, or one per feature
  std::vector<std::string> vocab;           ///< token id → display text; may be empty
  std::map<std::string, double> eval;       ///< evaluation metrics; may be empty
  /// Multi-layer dictionaries (a CLT): features l·(n/L) + i belong to source layer l.
  std::int64_t feature_layers = 1;
  /// The hooks a feature writes to (CLT: the output hook of each target layer); empty for a
  /// dictionary with one output hook.
  std::vector<std::string> target_hooks;
  /// Per feature, ‖its decoder into each target hook‖ (target_hooks.size() values); empty
  /// exactly when target_hooks is.
  std::vector<std::vector<double>> target_decoder_norms;
  /// Per feature, the H×H matrices between its decoders into target_hooks (a crosscoder's heads,
  /// H = target_hooks.size()), row-major (entry a·H + b: hooks a and b): inner products and
  /// cosines. Empty, or one H² list per feature in each.
  std::vector<std::vector<double>> decoder_inner_products;
  std::vector<std::vector<double>> decoder_cosines;
};

/// Writes `record` to `path` via `<path>.tmp` and a rename (an existing file is replaced only
/// when the new one is complete). Throws IoError naming the path.
void write_analysis_db(const std::filesystem::path& path, const AnalysisRecord& record);

/// One row of the dictionary page.
struct FeatureSummary {
  std::int64_t id = 0;
  std::int64_t act_times = 0;
  double frequency = 0;  ///< act_times / n_analyzed_tokens
  double max_act = 0;
  double mean_act = 0;
  std::optional<double> max_decoder_cosine;
  std::optional<std::int64_t> nearest_feature;
  std::optional<std::int64_t> peak_token;  ///< token at the peak of the top context
};

/// A stored context with its band and rank (0 = highest score in the band).
struct StoredContext {
  std::string band;
  std::int64_t rank = 0;
  SampledContext context;
};

struct LogitEntry {
  std::int64_t token = 0;
  double value = 0;
};

/// Everything the feature page shows.
struct FeatureDetail {
  FeatureSummary summary;
  std::vector<std::int64_t> histogram;
  std::vector<StoredContext> contexts;  ///< by band (name order), then rank
  std::vector<LogitEntry> top_logits;
  std::vector<LogitEntry> bottom_logits;
  /// Multi-layer dictionaries: the feature's source layer and its index within that layer.
  std::optional<std::int64_t> layer;
  std::int64_t index_in_layer = 0;
  /// ‖decoder into each of AnalysisStore::target_hooks()‖; empty without target hooks.
  std::vector<double> target_decoder_norms;
  /// H×H (H = target_hooks().size()) row-major decoder inner products and cosines between the
  /// target hooks (a crosscoder's heads); empty when the database has none for this feature.
  std::vector<double> decoder_inner_products;
  std::vector<double> decoder_cosines;
};

enum class FeatureOrder { kId, kFrequency, kMaxAct, kMeanAct, kDecoderCosine };

/// A page of the feature list. `search`: a feature id ("17") or text matched (substring, case
/// sensitive) against the peak token's text.
struct FeatureQuery {
  FeatureOrder order = FeatureOrder::kId;
  bool descending = false;
  std::int64_t offset = 0;
  std::int64_t limit = 100;
  std::optional<std::string> search;
  /// Ranges (inclusive) of the frequency and of the maximum activation; unset: unbounded.
  std::optional<double> min_frequency, max_frequency, min_max_act, max_max_act;
  /// Features of one source layer (multi-layer dictionaries: ids layer·n .. layer·n + n − 1,
  /// n = d_sae / feature_layers).
  std::optional<std::int64_t> layer;
  /// Features a search of their annotations matched: the search then also lists these.
  std::vector<std::int64_t> search_ids;
  /// Only these features (the bookmarks), when set.
  std::optional<std::vector<std::int64_t>> only_ids;
};

/// Read-only view of an analysis database. Throws IoError for a missing/unreadable file and
/// DataError for another schema version.
class AnalysisStore {
 public:
  explicit AnalysisStore(const std::filesystem::path& path);
  ~AnalysisStore();
  AnalysisStore(AnalysisStore&&) noexcept;
  AnalysisStore& operator=(AnalysisStore&&) = delete;

  const std::map<std::string, std::string>& meta() const { return meta_; }
  std::int64_t d_sae() const { return d_sae_; }
  /// Source layers of the features (1 for a one-layer dictionary or a version-1 database).
  std::int64_t feature_layers() const { return feature_layers_; }
  /// The hooks features write to, when more than one (a CLT's target layers), else empty.
  const std::vector<std::string>& target_hooks() const { return target_hooks_; }
  std::int64_t n_analyzed_tokens() const;
  /// A feature that fired at least once, drawn uniformly; nullopt when none did.
  std::optional<std::int64_t> random_alive_feature() const;
  std::vector<double> histogram_edges() const;
  std::vector<Band> bands() const;
  /// Features matching query.search (all when unset).
  std::int64_t count_features(const FeatureQuery& query) const;
  std::vector<FeatureSummary> list_features(const FeatureQuery& query) const;
  /// nullopt for an id outside [0, d_sae).
  std::optional<FeatureDetail> feature(std::int64_t id) const;
  std::map<std::string, double> eval_metrics() const;
  /// Display text of a token id ("" when the vocabulary was not stored or id is unknown).
  std::string token_text(std::int64_t id) const;
  const std::vector<std::string>& vocab() const { return vocab_; }
  /// Every feature's frequency (act_times / n_analyzed_tokens), indexed by feature id: d_sae()
  /// entries. Throws DataError if the features table does not hold exactly ids 0 .. d_sae-1.
  std::vector<double> frequencies() const;
  /// Log10 of every feature's frequency (dead features excluded), for the dictionary histogram.
  std::vector<double> log10_frequencies() const;

 private:
  std::filesystem::path path_;
  std::unique_ptr<io::SqliteDatabase> db_;
  std::map<std::string, std::string> meta_;
  std::int64_t d_sae_ = 0;
  std::int64_t feature_layers_ = 1;
  std::int64_t schema_version_ = 0;
  bool has_decoder_similarity_ = false;  ///< the table exists (schema version 4 on)
  std::vector<std::string> target_hooks_;
  std::vector<std::string> vocab_;
};

/// Writes `<out_dir>/feature_<id>.json` for every feature (summary, histogram, contexts with
/// token texts and activations, logit lens, per-target norms and H×H decoder matrices if stored)
/// and `<out_dir>/index.json` (meta, eval); returns the number of features written. Creates
/// out_dir.
std::int64_t export_feature_json(const AnalysisStore& store, const std::filesystem::path& out_dir);

}  // namespace saes::analysis

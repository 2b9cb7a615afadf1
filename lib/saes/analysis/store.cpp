// The analysis database: schema (docs/analysis-db.md), the atomic writer and the read API.
#include "saes/analysis/store.h"

#include <algorithm>
#include <cmath>
#include <system_error>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/io/sqlite.h"

namespace saes::analysis {
namespace {

namespace fs = std::filesystem;
using io::as_blob;
using io::from_blob;

constexpr const char* kSchema = R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE bands (name TEXT PRIMARY KEY, proportion REAL NOT NULL, n_samples INTEGER NOT NULL,
                    max_length INTEGER NOT NULL);
CREATE TABLE features (id INTEGER PRIMARY KEY, act_times INTEGER NOT NULL, frequency REAL NOT NULL,
                       max_act REAL NOT NULL, mean_act REAL NOT NULL, max_decoder_cosine REAL,
                       nearest_feature INTEGER, peak_token INTEGER, histogram BLOB NOT NULL);
CREATE TABLE contexts (feature INTEGER NOT NULL, band TEXT NOT NULL, rank INTEGER NOT NULL,
                       score REAL NOT NULL, context_index INTEGER NOT NULL,
                       source_rank INTEGER NOT NULL, token_offset INTEGER NOT NULL,
                       tokens BLOB NOT NULL, positions BLOB NOT NULL, acts BLOB NOT NULL,
                       PRIMARY KEY (feature, band, rank));
CREATE TABLE logits (feature INTEGER NOT NULL, side TEXT NOT NULL, rank INTEGER NOT NULL,
                     token INTEGER NOT NULL, value REAL NOT NULL,
                     PRIMARY KEY (feature, side, rank));
CREATE TABLE vocab (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE eval (metric TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE target_norms (feature INTEGER NOT NULL, target INTEGER NOT NULL,
                           decoder_norm REAL NOT NULL, PRIMARY KEY (feature, target));
CREATE TABLE decoder_similarity (feature INTEGER NOT NULL, head_a INTEGER NOT NULL,
                                 head_b INTEGER NOT NULL, cosine REAL NOT NULL,
                                 inner_product REAL NOT NULL,
                                 PRIMARY KEY (feature, head_a, head_b));
CREATE TABLE z_patterns (feature INTEGER NOT NULL, band TEXT NOT NULL, rank INTEGER NOT NULL,
                         q BLOB NOT NULL, k BLOB NOT NULL, value BLOB NOT NULL,
                         PRIMARY KEY (feature, band, rank));
CREATE INDEX features_max_act ON features (max_act);
CREATE INDEX features_frequency ON features (frequency);
)sql";

/// The token at the feature's strongest sampled activation, over every band (bands are stored in
/// name order, so `non_activating` would otherwise come before `top_activations`); none when no
/// sampled context has a positive activation.
std::optional<std::int64_t> peak_token(const FeatureStats& f) {
  std::optional<std::int64_t> token;
  float best_value = 0.0F;
  for (const auto& band : f.samples) {
    for (const SampledContext& c : band) {
      for (std::size_t j = 0; j < c.values.size(); ++j) {
        if (c.values[j] > best_value) {
          best_value = c.values[j];
          token = c.tokens[static_cast<std::size_t>(c.positions[j])];
        }
      }
    }
  }
  return token;
}

void write_meta(io::SqliteDatabase& db, const AnalysisRecord& r) {
  auto st = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?)");
  std::map<std::string, std::string> meta = r.meta;
  meta["schema_version"] = std::to_string(kSchemaVersion);
  meta["d_sae"] = std::to_string(r.features.size());
  meta["n_analyzed_tokens"] = std::to_string(r.n_analyzed_tokens);
  meta["n_contexts"] = std::to_string(r.n_contexts);
  meta["histogram_log10_min"] = fmt::format("{}", r.histogram.log10_min);
  meta["histogram_log10_max"] = fmt::format("{}", r.histogram.log10_max);
  meta["histogram_bins"] = std::to_string(r.histogram.bins);
  meta["feature_layers"] = std::to_string(r.feature_layers);
  if (!r.target_hooks.empty()) meta["target_hooks"] = fmt::format("{}", fmt::join(r.target_hooks, ","));
  for (const auto& [k, v] : meta) st.bind(1, k).bind(2, v).run();
  auto band = db.prepare("INSERT INTO bands VALUES (?, ?, ?, ?)");
  for (const auto& b : r.bands) {
    band.bind(1, b.name).bind(2, b.proportion).bind(3, b.n_samples).bind(4, b.max_length).run();
  }
}

void write_features(io::SqliteDatabase& db, const AnalysisRecord& r) {
  auto st = db.prepare("INSERT INTO features VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  auto ctx = db.prepare("INSERT INTO contexts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  auto zp = db.prepare("INSERT INTO z_patterns VALUES (?, ?, ?, ?, ?, ?)");
  const double n = static_cast<double>(std::max<std::int64_t>(r.n_analyzed_tokens, 1));
  for (std::size_t i = 0; i < r.features.size(); ++i) {
    const FeatureStats& f = r.features[i];
    const auto id = static_cast<std::int64_t>(i);
    st.bind(1, id).bind(2, f.act_times).bind(3, static_cast<double>(f.act_times) / n);
    st.bind(4, f.max_act).bind(5, f.mean_act);
    if (r.decoder_cosine) {
      st.bind(6, static_cast<double>(r.decoder_cosine->cosine[i]));
      st.bind(7, r.decoder_cosine->index[i]);
    }
    if (const auto tok = peak_token(f)) st.bind(8, *tok);
    st.bind_blob(9, as_blob(f.histogram)).run();
    for (std::size_t b = 0; b < f.samples.size(); ++b) {
      for (std::size_t k = 0; k < f.samples[b].size(); ++k) {
        const SampledContext& c = f.samples[b][k];
        ctx.bind(1, id).bind(2, r.bands[b].name).bind(3, static_cast<std::int64_t>(k));
        ctx.bind(4, static_cast<double>(c.score)).bind(5, c.provenance.context_index);
        ctx.bind(6, static_cast<std::int64_t>(c.provenance.rank));
        ctx.bind(7, static_cast<std::int64_t>(c.offset));
        ctx.bind_blob(8, as_blob(c.tokens)).bind_blob(9, as_blob(c.positions));
        ctx.bind_blob(10, as_blob(c.values)).run();
        if (!c.source_q.empty()) {
          zp.bind(1, id).bind(2, r.bands[b].name).bind(3, static_cast<std::int64_t>(k));
          zp.bind_blob(4, as_blob(c.source_q)).bind_blob(5, as_blob(c.source_k));
          zp.bind_blob(6, as_blob(c.source_values)).run();
        }
      }
    }
  }
}

void write_extras(io::SqliteDatabase& db, const AnalysisRecord& r) {
  auto lg = db.prepare("INSERT INTO logits VALUES (?, ?, ?, ?, ?)");
  for (std::size_t i = 0; i < r.logit_lens.size(); ++i) {
    const LogitLens& l = r.logit_lens[i];
    for (std::size_t k = 0; k < l.top_tokens.size(); ++k) {
      lg.bind(1, static_cast<std::int64_t>(i)).bind(2, "top").bind(3, static_cast<std::int64_t>(k));
      lg.bind(4, l.top_tokens[k]).bind(5, static_cast<double>(l.top_values[k])).run();
    }
    for (std::size_t k = 0; k < l.bottom_tokens.size(); ++k) {
      lg.bind(1, static_cast<std::int64_t>(i)).bind(2, "bottom");
      lg.bind(3, static_cast<std::int64_t>(k)).bind(4, l.bottom_tokens[k]);
      lg.bind(5, static_cast<double>(l.bottom_values[k])).run();
    }
  }
  auto voc = db.prepare("INSERT INTO vocab VALUES (?, ?)");
  for (std::size_t i = 0; i < r.vocab.size(); ++i) {
    voc.bind(1, static_cast<std::int64_t>(i)).bind(2, r.vocab[i]).run();
  }
  auto ev = db.prepare("INSERT INTO eval VALUES (?, ?)");
  for (const auto& [k, v] : r.eval) ev.bind(1, k).bind(2, v).run();
  auto tn = db.prepare("INSERT INTO target_norms VALUES (?, ?, ?)");
  for (std::size_t i = 0; i < r.target_decoder_norms.size(); ++i) {
    for (std::size_t t = 0; t < r.target_decoder_norms[i].size(); ++t) {
      tn.bind(1, static_cast<std::int64_t>(i)).bind(2, static_cast<std::int64_t>(t));
      tn.bind(3, r.target_decoder_norms[i][t]).run();
    }
  }
  auto ds = db.prepare("INSERT INTO decoder_similarity VALUES (?, ?, ?, ?, ?)");
  const auto heads = static_cast<std::int64_t>(r.target_hooks.size());
  for (std::size_t i = 0; i < r.decoder_cosines.size(); ++i) {
    for (std::int64_t e = 0; e < heads * heads; ++e) {
      const auto at = static_cast<std::size_t>(e);
      ds.bind(1, static_cast<std::int64_t>(i)).bind(2, e / heads).bind(3, e % heads);
      ds.bind(4, r.decoder_cosines[i][at]).bind(5, r.decoder_inner_products[i][at]).run();
    }
  }
}

/// DataError when the record's parts do not fit together (checked before anything is written).
void check_record(const AnalysisRecord& record) {
  const auto n = static_cast<std::int64_t>(record.features.size());
  SAES_CHECK(record.feature_layers >= 1 && n % record.feature_layers == 0, DataError,
             "analysis record: {} features do not split into {} layers", n, record.feature_layers);
  // every feature holds `per_feature` values, or the list is empty
  const auto fits = [&](const std::vector<std::vector<double>>& lists, std::size_t per_feature) {
    return lists.empty() || (lists.size() == record.features.size() &&
                             std::all_of(lists.begin(), lists.end(),
                                         [&](const auto& v) { return v.size() == per_feature; }));
  };
  const std::size_t heads = record.target_hooks.size();
  SAES_CHECK(fits(record.target_decoder_norms, heads), DataError,
             "analysis record: target decoder norms must hold {} values per feature", heads);
  const bool no_matrices = record.decoder_cosines.empty();
  SAES_CHECK(no_matrices == record.decoder_inner_products.empty() && (no_matrices || heads > 0) &&
                 fits(record.decoder_cosines, heads * heads) &&
                 fits(record.decoder_inner_products, heads * heads),
             DataError,
             "analysis record: decoder similarity matrices must hold {0}×{0} values per feature "
             "(one per pair of target hooks), for both cosines and inner products",
             heads);
  SAES_CHECK(record.bands.size() == (record.features.empty() ? record.bands.size()
                                                             : record.features[0].samples.size()),
             DataError, "analysis record: {} bands but features hold {} sample lists",
             record.bands.size(), record.features.empty() ? 0 : record.features[0].samples.size());
}

/// The feature's H×H decoder matrices (H = heads) from the decoder_similarity table, if any.
void read_decoder_similarity(io::SqliteDatabase& db, std::int64_t id, std::size_t heads,
                             FeatureDetail& d) {
  auto st = db.prepare(
      "SELECT head_a, head_b, cosine, inner_product FROM decoder_similarity WHERE feature = ?");
  st.bind(1, id);
  const auto h = static_cast<std::int64_t>(heads);
  while (st.step()) {
    const std::int64_t a = st.column_int(0), b = st.column_int(1);
    if (a < 0 || a >= h || b < 0 || b >= h) continue;
    if (d.decoder_cosines.empty()) {
      d.decoder_cosines.assign(heads * heads, 0.0);
      d.decoder_inner_products.assign(heads * heads, 0.0);
    }
    const auto at = static_cast<std::size_t>(a * h + b);
    d.decoder_cosines[at] = st.column_double(2);
    d.decoder_inner_products[at] = st.column_double(3);
  }
}

const char* order_column(FeatureOrder order) {
  switch (order) {
    case FeatureOrder::kId:
      return "id";
    case FeatureOrder::kFrequency:
      return "frequency";
    case FeatureOrder::kMaxAct:
      return "max_act";
    case FeatureOrder::kMeanAct:
      return "mean_act";
    case FeatureOrder::kDecoderCosine:
      return "max_decoder_cosine";
  }
  return "id";
}

/// WHERE clause of a query's search and ranges with its bindings (in order).
struct Filter {
  std::string sql;
  std::vector<std::int64_t> ints;    ///< bound first
  std::vector<double> reals;         ///< then these
  std::optional<std::string> text;   ///< then this
  std::string text_also;             ///< " OR id IN (…)": annotation matches of the text search
};

Filter make_filter(const FeatureQuery& q, std::int64_t per_layer) {
  Filter f;
  std::vector<std::string> terms;
  const auto id_list = [](const std::vector<std::int64_t>& ids) {
    return fmt::format("id IN ({})", fmt::join(ids, ", "));  // integers: nothing to escape
  };
  if (q.search && !q.search->empty()) {
    const std::string& s = *q.search;
    const std::string also = q.search_ids.empty() ? "" : " OR " + id_list(q.search_ids);
    if (s.find_first_not_of("0123456789") == std::string::npos && s.size() < 18) {
      terms.push_back("(id = ?" + also + ")");
      f.ints.push_back(std::stoll(s));
    } else {
      f.text = s;
      f.text_also = also;
    }
  }
  if (q.only_ids) terms.push_back(q.only_ids->empty() ? "0" : id_list(*q.only_ids));
  if (q.layer) {
    terms.emplace_back("id BETWEEN ? AND ?");
    f.ints.push_back(*q.layer * per_layer);
    f.ints.push_back(*q.layer * per_layer + per_layer - 1);
  }
  const auto range = [&](const char* column, const std::optional<double>& lo,
                         const std::optional<double>& hi) {
    if (lo) {
      terms.push_back(fmt::format("{} >= ?", column));
      f.reals.push_back(*lo);
    }
    if (hi) {
      terms.push_back(fmt::format("{} <= ?", column));
      f.reals.push_back(*hi);
    }
  };
  range("frequency", q.min_frequency, q.max_frequency);
  range("max_act", q.min_max_act, q.max_max_act);
  if (f.text) {
    terms.push_back("(peak_token IN (SELECT id FROM vocab WHERE instr(text, ?) > 0)" + f.text_also +
                    ")");
  }
  if (!terms.empty()) f.sql = fmt::format(" WHERE {}", fmt::join(terms, " AND "));
  return f;
}

void bind_filter(io::SqliteStatement& st, const Filter& f) {
  int i = 1;
  for (const std::int64_t v : f.ints) st.bind(i++, v);
  for (const double v : f.reals) st.bind(i++, v);
  if (f.text) st.bind(i, *f.text);
}

constexpr const char* kSummaryColumns =
    "id, act_times, frequency, max_act, mean_act, max_decoder_cosine, nearest_feature, peak_token";

FeatureSummary read_summary(const io::SqliteStatement& st) {
  FeatureSummary s;
  s.id = st.column_int(0);
  s.act_times = st.column_int(1);
  s.frequency = st.column_double(2);
  s.max_act = st.column_double(3);
  s.mean_act = st.column_double(4);
  if (!st.is_null(5)) s.max_decoder_cosine = st.column_double(5);
  if (!st.is_null(6)) s.nearest_feature = st.column_int(6);
  if (!st.is_null(7)) s.peak_token = st.column_int(7);
  return s;
}

}  // namespace

// HistogramSpec lives in feature_analyzer.h; its edges are defined here so that the torch-free
// store (and the viewer fuzz target over it) links without the analyzer.
std::vector<double> HistogramSpec::edges() const {
  std::vector<double> out;
  for (std::int64_t i = 0; i <= bins; ++i) {
    out.push_back(std::pow(10.0, log10_min + (log10_max - log10_min) * static_cast<double>(i) /
                                                 static_cast<double>(bins)));
  }
  return out;
}

void write_analysis_db(const fs::path& path, const AnalysisRecord& record) {
  check_record(record);
  const fs::path tmp = fs::path(path.string() + ".tmp");
  std::error_code ec;
  fs::remove(tmp, ec);
  try {
    io::SqliteDatabase db(tmp, io::SqliteMode::kCreate);
    db.exec("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;");
    db.exec(kSchema);
    io::SqliteTransaction tx(db);
    write_meta(db, record);
    write_features(db, record);
    write_extras(db, record);
    tx.commit();
  } catch (...) {  // e.g. a full disk: no half-written database is left behind
    fs::remove(tmp, ec);
    throw;
  }
  fs::rename(tmp, path, ec);
  SAES_CHECK(!ec, IoError, "cannot move {} to {}: {}", tmp.string(), path.string(), ec.message());
}

AnalysisStore::AnalysisStore(const fs::path& path)
    : path_(path), db_(std::make_unique<io::SqliteDatabase>(path, io::SqliteMode::kReadOnly)) {
  try {
    auto st = db_->prepare("SELECT key, value FROM meta");
    while (st.step()) meta_[st.column_text(0)] = st.column_text(1);
  } catch (const IoError&) {
    SAES_THROW(DataError, "{}: not an saes analysis database (no meta table)", path.string());
  }
  const auto version = meta_.find("schema_version");
  std::int64_t v = 0;
  if (version != meta_.end()) {
    try {
      v = std::stoll(version->second);
    } catch (const std::exception&) {
      v = 0;
    }
  }
  SAES_CHECK(v >= kOldestSchemaVersion && v <= kSchemaVersion, DataError,
             "{}: analysis schema version {}, this saes reads versions {} to {}", path.string(),
             version == meta_.end() ? "(none)" : version->second, kOldestSchemaVersion,
             kSchemaVersion);
  schema_version_ = v;
  d_sae_ = std::stoll(meta_.at("d_sae"));
  if (const auto it = meta_.find("feature_layers"); it != meta_.end()) {
    feature_layers_ = std::stoll(it->second);
    SAES_CHECK(feature_layers_ >= 1 && d_sae_ % feature_layers_ == 0, DataError,
               "{}: {} features do not split into {} layers", path.string(), d_sae_,
               feature_layers_);
  }
  if (const auto it = meta_.find("target_hooks"); it != meta_.end() && !it->second.empty()) {
    std::size_t from = 0;
    for (std::size_t comma; (comma = it->second.find(',', from)) != std::string::npos;
         from = comma + 1) {
      target_hooks_.push_back(it->second.substr(from, comma - from));
    }
    target_hooks_.push_back(it->second.substr(from));
  }
  // Version 3 and older databases have no decoder_similarity table: their pages omit the matrices.
  auto tables = db_->prepare(
      "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'decoder_similarity'");
  tables.step();
  has_decoder_similarity_ = tables.column_int(0) > 0;
  auto voc = db_->prepare("SELECT id, text FROM vocab ORDER BY id");
  while (voc.step()) {
    vocab_.resize(static_cast<std::size_t>(voc.column_int(0)) + 1);
    vocab_.back() = voc.column_text(1);
  }
}

AnalysisStore::~AnalysisStore() = default;
AnalysisStore::AnalysisStore(AnalysisStore&&) noexcept = default;

std::int64_t AnalysisStore::n_analyzed_tokens() const {
  return std::stoll(meta_.at("n_analyzed_tokens"));
}

std::vector<double> AnalysisStore::histogram_edges() const {
  HistogramSpec h;
  h.log10_min = std::stod(meta_.at("histogram_log10_min"));
  h.log10_max = std::stod(meta_.at("histogram_log10_max"));
  h.bins = std::stoll(meta_.at("histogram_bins"));
  return h.edges();
}

std::vector<Band> AnalysisStore::bands() const {
  std::vector<Band> out;
  auto st = db_->prepare("SELECT name, proportion, n_samples, max_length FROM bands ORDER BY name");
  while (st.step()) {
    out.push_back({st.column_text(0), st.column_double(1), st.column_int(2), st.column_int(3)});
  }
  return out;
}

std::int64_t AnalysisStore::count_features(const FeatureQuery& query) const {
  const Filter f = make_filter(query, d_sae_ / std::max<std::int64_t>(feature_layers_, 1));
  auto st = db_->prepare("SELECT count(*) FROM features" + f.sql);
  bind_filter(st, f);
  st.step();
  return st.column_int(0);
}

std::vector<FeatureSummary> AnalysisStore::list_features(const FeatureQuery& query) const {
  const Filter f = make_filter(query, d_sae_ / std::max<std::int64_t>(feature_layers_, 1));
  const std::string sql = fmt::format(
      "SELECT {} FROM features{} ORDER BY {} {}, id LIMIT {} OFFSET {}", kSummaryColumns, f.sql,
      order_column(query.order), query.descending ? "DESC" : "ASC",
      std::max<std::int64_t>(query.limit, 0), std::max<std::int64_t>(query.offset, 0));
  auto st = db_->prepare(sql);
  bind_filter(st, f);
  std::vector<FeatureSummary> out;
  while (st.step()) out.push_back(read_summary(st));
  return out;
}

std::optional<std::int64_t> AnalysisStore::random_alive_feature() const {
  auto st = db_->prepare("SELECT id FROM features WHERE act_times > 0 ORDER BY random() LIMIT 1");
  if (!st.step()) return std::nullopt;
  return st.column_int(0);
}

std::optional<FeatureDetail> AnalysisStore::feature(std::int64_t id) const {
  if (id < 0 || id >= d_sae_) return std::nullopt;
  FeatureDetail d;
  auto st =
      db_->prepare(fmt::format("SELECT {}, histogram FROM features WHERE id = ?", kSummaryColumns));
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  d.summary = read_summary(st);
  d.histogram = from_blob<std::int64_t>(st.column_blob(8));
  if (feature_layers_ > 1) {
    const std::int64_t per = d_sae_ / feature_layers_;
    d.layer = id / per;
    d.index_in_layer = id % per;
  } else if (const auto it = meta_.find("clt_layer"); it != meta_.end()) {
    d.layer = std::stoll(it->second);  // one layer of a CLT analysed (analyzer.clt_layer)
    d.index_in_layer = id;
  }
  if (!target_hooks_.empty()) {
    d.target_decoder_norms.assign(target_hooks_.size(), 0.0);
    auto tn = db_->prepare("SELECT target, decoder_norm FROM target_norms WHERE feature = ?");
    tn.bind(1, id);
    while (tn.step()) {
      const std::int64_t t = tn.column_int(0);
      if (t >= 0 && t < static_cast<std::int64_t>(target_hooks_.size())) {
        d.target_decoder_norms[static_cast<std::size_t>(t)] = tn.column_double(1);
      }
    }
    if (has_decoder_similarity_) read_decoder_similarity(*db_, id, target_hooks_.size(), d);
  }
  auto ctx = db_->prepare(
      "SELECT band, rank, score, context_index, source_rank, token_offset, tokens, positions, acts "
      "FROM contexts WHERE feature = ? ORDER BY band, rank");
  ctx.bind(1, id);
  while (ctx.step()) {
    StoredContext c;
    c.band = ctx.column_text(0);
    c.rank = ctx.column_int(1);
    c.context.score = static_cast<float>(ctx.column_double(2));
    c.context.provenance = {ctx.column_int(3), static_cast<std::int32_t>(ctx.column_int(4))};
    c.context.offset = static_cast<std::int32_t>(ctx.column_int(5));
    c.context.tokens = from_blob<std::int32_t>(ctx.column_blob(6));
    c.context.positions = from_blob<std::int32_t>(ctx.column_blob(7));
    c.context.values = from_blob<float>(ctx.column_blob(8));
    d.contexts.push_back(std::move(c));
  }
  if (schema_version_ >= 3) {
    auto zp = db_->prepare("SELECT band, rank, q, k, value FROM z_patterns WHERE feature = ?");
    zp.bind(1, id);
    while (zp.step()) {
      for (StoredContext& c : d.contexts) {
        if (c.band != zp.column_text(0) || c.rank != zp.column_int(1)) continue;
        c.context.source_q = from_blob<std::int32_t>(zp.column_blob(2));
        c.context.source_k = from_blob<std::int32_t>(zp.column_blob(3));
        c.context.source_values = from_blob<float>(zp.column_blob(4));
      }
    }
  }
  auto lg =
      db_->prepare("SELECT side, token, value FROM logits WHERE feature = ? ORDER BY side, rank");
  lg.bind(1, id);
  while (lg.step()) {
    auto& list = lg.column_text(0) == "top" ? d.top_logits : d.bottom_logits;
    list.push_back({lg.column_int(1), lg.column_double(2)});
  }
  return d;
}

std::map<std::string, double> AnalysisStore::eval_metrics() const {
  std::map<std::string, double> out;
  auto st = db_->prepare("SELECT metric, value FROM eval");
  while (st.step()) out[st.column_text(0)] = st.column_double(1);
  return out;
}

std::string AnalysisStore::token_text(std::int64_t id) const {
  return id >= 0 && id < static_cast<std::int64_t>(vocab_.size())
             ? vocab_[static_cast<std::size_t>(id)]
             : std::string();
}

std::vector<double> AnalysisStore::frequencies() const {
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(std::max<std::int64_t>(d_sae_, 0)));
  auto st = db_->prepare("SELECT id, frequency FROM features ORDER BY id");
  while (st.step()) {
    const std::int64_t id = st.column_int(0);
    SAES_CHECK(id == static_cast<std::int64_t>(out.size()) && id < d_sae_, DataError,
               "{}: features table has id {} where {} was expected (d_sae {})", path_.string(), id,
               out.size(), d_sae_);
    out.push_back(st.column_double(1));
  }
  SAES_CHECK(static_cast<std::int64_t>(out.size()) == d_sae_, DataError,
             "{}: features table has {} rows, meta d_sae is {}", path_.string(), out.size(),
             d_sae_);
  return out;
}

std::vector<double> AnalysisStore::log10_frequencies() const {
  std::vector<double> out;
  auto st = db_->prepare("SELECT frequency FROM features WHERE act_times > 0");
  while (st.step()) out.push_back(std::log10(st.column_double(0)));
  return out;
}

}  // namespace saes::analysis

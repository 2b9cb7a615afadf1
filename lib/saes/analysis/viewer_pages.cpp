// The viewer's routes (viewer_pages.h): dictionary list, feature page, eval summary and their JSON
// twins, rendered from an AnalysisStore; every text that comes from the database is escaped. The
// SVG drawing (histogram, bars, heat map) is in viewer_html.cpp.
#include "saes/analysis/viewer_pages.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>
#include <cmath>
#include <nlohmann/json.hpp>

#include "saes/analysis/store.h"
#include "saes/analysis/viewer_internal.h"

namespace saes::analysis {
namespace {

using viewer::number;
using viewer::url_encode;

constexpr std::int64_t kDefaultPerPage = 50;
constexpr std::int64_t kMaxPerPage = 1000;
constexpr std::size_t kMaxSearch = 200;

PageResponse not_found(std::string_view what) {
  return {404, "text/html; charset=utf-8",
          viewer::page("Not found", "", fmt::format("<h1>404</h1><p>{}</p>", html_escape(what)))};
}
PageResponse bad_request(std::string_view what) {
  return {400, "text/html; charset=utf-8",
          viewer::page("Bad request", "", fmt::format("<h1>400</h1><p>{}</p>", html_escape(what)))};
}
PageResponse json_response(const nlohmann::json& j) {
  return {200, "application/json", j.dump()};
}

/// The dictionary page's parsed parameters.
struct ListRequest {
  std::string sort = "id";
  FeatureQuery query;
  std::int64_t page = 1;
  bool bookmarked = false;                            ///< bookmarked=1: the bookmarks only
  const viewer::AnnotationMap* annotations = nullptr;  ///< set: the label column and filters
};

std::optional<std::int64_t> positive(const QueryParams& p, const std::string& key,
                                     std::int64_t fallback, std::int64_t max) {
  const auto it = p.find(key);
  if (it == p.end()) return fallback;
  const auto v = parse_feature_id(it->second, max + 1);
  if (!v || *v < 1) return std::nullopt;
  return v;
}

/// An optional finite number parameter: absent or empty leaves `out` unset; false when malformed.
bool number_param(const QueryParams& p, const char* key, std::optional<double>& out) {
  const auto it = p.find(key);
  if (it == p.end() || it->second.empty()) return true;
  const std::string& text = it->second;
  if (text.size() > 32) return false;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v)) return false;
  out = v;
  return true;
}

/// The filters of a list request as query-string pairs ("&min_freq=…"), for links.
std::string filter_query(const FeatureQuery& q) {
  std::string out;
  const auto put = [&](const char* key, const std::optional<double>& v) {
    if (v) out += fmt::format("&{}={}", key, *v);
  };
  put("min_freq", q.min_frequency);
  put("max_freq", q.max_frequency);
  put("min_act", q.min_max_act);
  put("max_act", q.max_max_act);
  if (q.layer) out += fmt::format("&layer={}", *q.layer);
  return out;
}

std::optional<ListRequest> parse_list(const QueryParams& p, std::int64_t layers) {
  static const std::map<std::string, FeatureOrder, std::less<>> kOrders = {
      {"id", FeatureOrder::kId},           {"frequency", FeatureOrder::kFrequency},
      {"max_act", FeatureOrder::kMaxAct},  {"mean_act", FeatureOrder::kMeanAct},
      {"cosine", FeatureOrder::kDecoderCosine}};
  ListRequest r;
  if (const auto it = p.find("sort"); it != p.end()) r.sort = it->second;
  const auto order = kOrders.find(r.sort);
  if (order == kOrders.end()) return std::nullopt;
  r.query.order = order->second;
  r.query.descending = r.sort != "id";
  if (const auto it = p.find("order"); it != p.end()) {
    if (it->second != "asc" && it->second != "desc") return std::nullopt;
    r.query.descending = it->second == "desc";
  }
  if (const auto it = p.find("q"); it != p.end() && !it->second.empty()) {
    if (it->second.size() > kMaxSearch) return std::nullopt;
    r.query.search = it->second;
  }
  if (!number_param(p, "min_freq", r.query.min_frequency) ||
      !number_param(p, "max_freq", r.query.max_frequency) ||
      !number_param(p, "min_act", r.query.min_max_act) ||
      !number_param(p, "max_act", r.query.max_max_act)) {
    return std::nullopt;
  }
  if (const auto it = p.find("bookmarked"); it != p.end() && !it->second.empty()) {
    if (it->second != "1") return std::nullopt;
    r.bookmarked = true;
  }
  if (const auto it = p.find("layer"); it != p.end() && !it->second.empty()) {
    r.query.layer = parse_feature_id(it->second, layers);
    if (!r.query.layer) return std::nullopt;
  }
  const auto page = positive(p, "page", 1, 1'000'000'000);
  const auto per_page = positive(p, "per_page", kDefaultPerPage, kMaxPerPage);
  if (!page || !per_page) return std::nullopt;
  r.page = *page;
  r.query.limit = *per_page;
  r.query.offset = (r.page - 1) * r.query.limit;
  return r;
}

std::string subtitle(const AnalysisStore& store) {
  const auto& m = store.meta();
  std::string out;
  for (const char* key : {"sae_name", "hook_point"}) {
    const auto it = m.find(key);
    if (it == m.end() || it->second.empty()) continue;
    if (!out.empty()) out += " · ";
    out += it->second;
  }
  return out;
}

std::string list_link(const ListRequest& r, std::string_view sort, bool descending,
                      std::int64_t page) {
  std::string url = fmt::format("/?sort={}&order={}&page={}&per_page={}", sort,
                                descending ? "desc" : "asc", page, r.query.limit);
  if (r.query.search) url += "&q=" + url_encode(*r.query.search);
  if (r.bookmarked) url += "&bookmarked=1";
  return html_escape(url + filter_query(r.query));
}

std::string column_header(const ListRequest& r, std::string_view key, std::string_view label) {
  const bool current = r.sort == key;
  const bool next_desc = current ? !r.query.descending : key != "id";
  const char* arrow = !current ? "" : (r.query.descending ? " ▼" : " ▲");
  return fmt::format("<th><a href=\"{}\">{}{}</a></th>", list_link(r, key, next_desc, 1), label,
                     arrow);
}

std::string frequency_histogram(const AnalysisStore& store) {
  const auto values = store.log10_frequencies();
  if (values.empty()) return histogram_svg({}, {}, "log10 frequency");
  constexpr std::int64_t kBins = 50;
  const auto [lo_it, hi_it] = std::minmax_element(values.begin(), values.end());
  const double lo = *lo_it, hi = std::max(*hi_it, *lo_it + 1e-6);
  std::vector<double> edges(kBins + 1);
  for (std::int64_t i = 0; i <= kBins; ++i) edges[i] = lo + (hi - lo) * i / kBins;
  std::vector<std::int64_t> counts(kBins, 0);
  for (const double v : values) {
    const auto bin = static_cast<std::int64_t>((v - lo) / (hi - lo) * kBins);
    ++counts[static_cast<std::size_t>(std::clamp<std::int64_t>(bin, 0, kBins - 1))];
  }
  return histogram_svg(counts, edges, "log10 frequency");
}

std::string feature_row(const AnalysisStore& store, const FeatureSummary& s,
                        const viewer::AnnotationMap* annotations) {
  std::string cosine = "<td class=\"muted\">–</td>";
  if (s.max_decoder_cosine) {
    cosine = fmt::format("<td>{:.3f}", *s.max_decoder_cosine);
    if (s.nearest_feature) {
      cosine += fmt::format(" (<a href=\"/features/{0}\">#{0}</a>)", *s.nearest_feature);
    }
    cosine += "</td>";
  }
  const std::string token = s.peak_token ? html_escape(store.token_text(*s.peak_token)) : "";
  return fmt::format(
      "<tr><td><a href=\"/features/{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td>"
      "<td>{4}</td>{5}<td class=\"tok\"><code>{6}</code></td>{7}</tr>\n",
      s.id, number(s.frequency), s.act_times, number(s.max_act), number(s.mean_act), cosine, token,
      annotations ? viewer::annotation_cell(*annotations, s.id) : std::string());
}

PageResponse dictionary_page(const AnalysisStore& store, const ListRequest& r) {
  const std::int64_t total = store.count_features(r.query);
  const auto rows = store.list_features(r.query);
  const std::int64_t pages = std::max<std::int64_t>(1, (total + r.query.limit - 1) / r.query.limit);
  const std::string title = subtitle(store);
  std::string body = fmt::format(
      "<h1>Dictionary{}{}</h1><p>{} features, {} analysed tokens.</p>"
      "<h2>Feature frequencies (alive features)</h2>{}",
      title.empty() ? "" : " ", html_escape(title), store.d_sae(), store.n_analyzed_tokens(),
      frequency_histogram(store));
  const auto value_of = [](const std::optional<double>& v) {
    return v ? fmt::format("{}", *v) : std::string();
  };
  std::string layer_select;
  if (store.feature_layers() > 1) {
    layer_select = "<label>layer <select name=\"layer\"><option value=\"\">all</option>";
    for (std::int64_t l = 0; l < store.feature_layers(); ++l) {
      layer_select += fmt::format("<option value=\"{0}\"{1}>{0}</option>", l,
                                  r.query.layer == l ? " selected" : "");
    }
    layer_select += "</select></label> ";
  }
  if (r.annotations) {
    layer_select += fmt::format(
        "<label><input type=\"checkbox\" name=\"bookmarked\" value=\"1\"{}> bookmarked</label> ",
        r.bookmarked ? " checked" : "");
  }
  body += fmt::format(
      "<form class=\"search\" method=\"get\" action=\"/\"><input type=\"text\" name=\"q\" "
      "value=\"{}\" placeholder=\"feature id or top token\"><input type=\"hidden\" name=\"sort\" "
      "value=\"{}\"><input type=\"hidden\" name=\"order\" value=\"{}\"> "
      "<label>frequency <input class=\"num\" type=\"text\" name=\"min_freq\" value=\"{}\" "
      "placeholder=\"min\"> – <input class=\"num\" type=\"text\" name=\"max_freq\" value=\"{}\" "
      "placeholder=\"max\"></label> <label>max act <input class=\"num\" type=\"text\" "
      "name=\"min_act\" value=\"{}\" placeholder=\"min\"> – <input class=\"num\" type=\"text\" "
      "name=\"max_act\" value=\"{}\" placeholder=\"max\"></label> {}<button>Filter</button> "
      "<span class=\"muted\">{} matching</span> <a class=\"random\" href=\"/features/random\">"
      "random alive feature</a></form>",
      html_escape(r.query.search.value_or("")), html_escape(r.sort),
      r.query.descending ? "desc" : "asc", value_of(r.query.min_frequency),
      value_of(r.query.max_frequency), value_of(r.query.min_max_act),
      value_of(r.query.max_max_act), layer_select, total);
  body += "<table class=\"features\"><thead><tr>" + column_header(r, "id", "id") +
          column_header(r, "frequency", "frequency") + "<th>count</th>" +
          column_header(r, "max_act", "max act") + column_header(r, "mean_act", "mean act") +
          column_header(r, "cosine", "max dec. cos") + "<th class=\"tok\">top token</th>" +
          (r.annotations ? "<th class=\"label\">label</th>" : "") +
          "</tr></thead><tbody>\n";
  for (const auto& s : rows) body += feature_row(store, s, r.annotations);
  body += "</tbody></table><div class=\"pager\">";
  if (r.page > 1) {
    body += fmt::format("<a rel=\"prev\" href=\"{}\">← previous</a>",
                        list_link(r, r.sort, r.query.descending, r.page - 1));
  }
  body += fmt::format("<span>page {} of {}</span>", r.page, pages);
  if (r.page < pages) {
    body += fmt::format("<a rel=\"next\" href=\"{}\">next →</a>",
                        list_link(r, r.sort, r.query.descending, r.page + 1));
  }
  body += "</div>";
  return {200, "text/html; charset=utf-8", viewer::page("Dictionary", title, body)};
}

std::vector<float> dense_acts(const SampledContext& c) {
  std::vector<float> acts(c.tokens.size(), 0.0F);
  for (std::size_t j = 0; j < c.positions.size() && j < c.values.size(); ++j) {
    const auto pos = static_cast<std::size_t>(c.positions[j]);
    if (pos < acts.size()) acts[pos] = c.values[j];
  }
  return acts;
}

/// A Lorsa z-pattern (spec §7.2) at the context's peak query: each source token shaded by its
/// contribution (blue: positive, red: negative, scaled by the largest |contribution|), with the
/// value in its title; empty without a z-pattern.
std::string source_row(const AnalysisStore& store, const SampledContext& c, std::ptrdiff_t peak) {
  if (c.source_q.empty() || peak < 0) return {};
  std::vector<float> from(c.tokens.size(), 0.0F);
  float largest = 0.0F;
  for (std::size_t e = 0; e < c.source_q.size(); ++e) {
    if (c.source_q[e] != peak) continue;
    const auto k = static_cast<std::size_t>(c.source_k[e]);
    if (k >= from.size()) continue;
    from[k] = c.source_values[e];
    largest = std::max(largest, std::abs(c.source_values[e]));
  }
  std::string toks;
  for (std::size_t i = 0; i < c.tokens.size(); ++i) {
    const std::string text = html_escape(store.token_text(c.tokens[i]));
    const char* cls = static_cast<std::ptrdiff_t>(i) == peak ? " q" : "";
    if (from[i] == 0.0F) {
      toks += fmt::format("<span class=\"t{}\">{}</span>", cls, text);
      continue;
    }
    toks += fmt::format("<span class=\"t {}{}{}\" title=\"{} → peak: {}\">{}</span>",
                        from[i] > 0 ? "s" : "n", activation_level(std::abs(from[i]), largest), cls,
                        text, number(from[i]), text);
  }
  return fmt::format(
      "<div class=\"meta\">reads from (z-pattern at the peak, {} entries over the context):</div>"
      "<div class=\"toks src\">{}</div>",
      c.source_q.size(), toks);
}

std::string context_html(const AnalysisStore& store, const StoredContext& sc, double max_act) {
  const SampledContext& c = sc.context;
  const auto acts = dense_acts(c);
  const auto peak = std::max_element(acts.begin(), acts.end()) - acts.begin();
  std::string toks;
  for (std::size_t i = 0; i < c.tokens.size(); ++i) {
    const std::string text = html_escape(store.token_text(c.tokens[i]));
    if (acts[i] <= 0) {
      toks += fmt::format("<span class=\"t\">{}</span>", text);
      continue;
    }
    toks += fmt::format("<span class=\"t a{}{}\" title=\"{}: {}\">{}</span>",
                        activation_level(acts[i], max_act),
                        static_cast<std::ptrdiff_t>(i) == peak ? " peak" : "", text,
                        number(acts[i]), text);
  }
  return fmt::format(
      "<div class=\"ctx\"><div class=\"meta\">#{} · peak {} · context {} (rank {}), tokens from "
      "{}</div><div class=\"toks\">{}</div>{}</div>\n",
      sc.rank + 1, number(c.score), c.provenance.context_index, c.provenance.rank, c.offset, toks,
      source_row(store, c, peak));
}

std::string band_title(const std::vector<Band>& bands, const std::string& name) {
  for (const auto& b : bands) {
    if (b.name != name) continue;
    if (b.proportion >= 1) return fmt::format("{} — top activations", html_escape(name));
    if (b.proportion <= 0) return fmt::format("{} — non-activating samples", html_escape(name));
    return fmt::format("{} — contexts peaking at ≤ {}·max", html_escape(name), number(b.proportion));
  }
  return html_escape(name);
}

std::string logit_table(const AnalysisStore& store, const std::vector<LogitEntry>& list,
                        std::string_view title) {
  std::string out = fmt::format(
      "<table class=\"logits\"><thead><tr><th class=\"tok\">{}</th><th>logit</th></tr></thead>"
      "<tbody>",
      title);
  for (const auto& e : list) {
    out += fmt::format("<tr><td class=\"tok\"><code>{}</code></td><td>{}</td></tr>",
                       html_escape(store.token_text(e.token)), number(e.value));
  }
  return out + "</tbody></table>";
}

std::string feature_stats(const FeatureDetail& d) {
  const FeatureSummary& s = d.summary;
  std::string out = fmt::format(
      "<dl class=\"stats\"><dt>activations</dt><dd>{}</dd><dt>frequency</dt><dd>{}</dd>"
      "<dt>max activation</dt><dd>{}</dd><dt>mean activation</dt><dd>{}</dd>",
      s.act_times, number(s.frequency), number(s.max_act), number(s.mean_act));
  if (d.layer) {
    out += fmt::format("<dt>source layer</dt><dd>{} (feature {} of the layer)</dd>", *d.layer,
                       d.index_in_layer);
  }
  if (s.max_decoder_cosine) {
    out += fmt::format("<dt>max decoder cosine</dt><dd>{:.3f}", *s.max_decoder_cosine);
    if (s.nearest_feature) {
      out += fmt::format(" with <a href=\"/features/{0}\">feature {0}</a>", *s.nearest_feature);
    }
    out += "</dd>";
  }
  return out + "</dl>";
}

/// A multi-target feature's decoder norm per target hook (bars) and, for a crosscoder, the H×H
/// cosines between its heads' decoders (heat map) beside them; empty for a one-target feature.
std::string decoder_section(const AnalysisStore& store, const FeatureDetail& d) {
  if (d.target_decoder_norms.empty()) return {};
  const auto& hooks = store.target_hooks();
  const std::size_t first = d.layer ? static_cast<std::size_t>(*d.layer) : 0;
  std::vector<double> values;  // a CLT feature writes to its layer and the later ones
  std::vector<std::string> labels;
  for (std::size_t t = first; t < d.target_decoder_norms.size() && t < hooks.size(); ++t) {
    values.push_back(d.target_decoder_norms[t]);
    labels.push_back(hooks[t]);
  }
  std::string out = "<div class=\"overview\"><div><h2>Decoder norm per target layer</h2>" +
                    bar_chart_svg(values, labels, "decoder norm per target layer") + "</div>";
  if (!d.decoder_cosines.empty()) {
    out += "<div><h2>Decoder cosine between heads</h2>" +
           heatmap_svg(d.decoder_cosines, d.decoder_inner_products, hooks,
                       "decoder cosine between heads") +
           "</div>";
  }
  return out + "</div>";
}

PageResponse feature_page(const AnalysisStore& store, const FeatureDetail& d,
                          const viewer::AnnotationMap* annotations) {
  const std::int64_t id = d.summary.id;
  std::string body = fmt::format("<h1>Feature {}</h1><div class=\"pager\">", id);
  if (id > 0) body += fmt::format("<a rel=\"prev\" href=\"/features/{}\">← {}</a>", id - 1, id - 1);
  if (id + 1 < store.d_sae()) {
    body += fmt::format("<a rel=\"next\" href=\"/features/{}\">{} →</a>", id + 1, id + 1);
  }
  const auto sae_name = store.meta().find("sae_name");
  body += fmt::format(
      "<a class=\"random\" href=\"/features/random\">random alive feature</a><a class=\"download\" "
      "href=\"/api/features/{0}\" download=\"{1}feature-{0}.json\">JSON</a>",
      id,
      sae_name == store.meta().end() || sae_name->second.empty()
          ? std::string()
          : html_escape(sae_name->second) + "-");
  body += "</div><div class=\"overview\"><div>" + feature_stats(d) +
          "</div><div><h2>Activation histogram</h2>" +
          histogram_svg(d.histogram, store.histogram_edges(), "activation (log-spaced bins)") +
          "</div></div>";
  if (annotations) body += viewer::annotation_form(*annotations, id);
  body += decoder_section(store, d);
  const auto bands = store.bands();
  // top activations first, then the subsampling bands by proportion (descending), then the
  // non-activating band (the database lists them by name)
  std::vector<StoredContext> contexts = d.contexts;
  const auto order = [&](const std::string& name) {
    double proportion = 0;
    for (const auto& b : bands) {
      if (b.name == name) proportion = b.proportion;
    }
    return std::make_tuple(name == "non_activating" ? 1 : 0, -proportion, name);
  };
  std::stable_sort(contexts.begin(), contexts.end(),
                   [&](const StoredContext& a, const StoredContext& b) {
                     return order(a.band) < order(b.band);
                   });
  std::string current;
  for (const auto& c : contexts) {
    if (current != c.band || &c == &contexts.front()) {
      current = c.band;
      body += fmt::format("<h2 class=\"band\">{}</h2>", band_title(bands, c.band));
    }
    body += context_html(store, c, d.summary.max_act);
  }
  if (d.contexts.empty()) body += "<h2>Contexts</h2><p class=\"muted\">no stored contexts</p>";
  if (!d.top_logits.empty() || !d.bottom_logits.empty()) {
    const auto method = store.meta().find("logit_lens");
    body += "<h2>Logit lens</h2>";
    if (method != store.meta().end()) {
      body += fmt::format("<p class=\"muted\">{}</p>", html_escape(method->second));
    }
    body += "<div class=\"lens\">" + logit_table(store, d.top_logits, "promoted tokens") +
            logit_table(store, d.bottom_logits, "suppressed tokens") + "</div>";
  }
  return {200, "text/html; charset=utf-8",
          viewer::page(fmt::format("Feature {}", id), subtitle(store), body)};
}

PageResponse eval_page(const AnalysisStore& store) {
  std::string body = "<h1>Evaluation</h1>";
  const auto metrics = store.eval_metrics();
  if (metrics.empty()) {
    body += "<p class=\"muted\">no evaluation metrics were stored in this database</p>";
  } else {
    body += "<table class=\"eval\"><thead><tr><th class=\"tok\">metric</th><th>value</th></tr>"
            "</thead><tbody>";
    for (const auto& [k, v] : metrics) {
      body += fmt::format("<tr><td class=\"tok\">{}</td><td>{}</td></tr>", html_escape(k),
                          number(v));
    }
    body += "</tbody></table>";
  }
  body += "<h2>Run</h2><table class=\"meta\"><tbody>";
  for (const auto& [k, v] : store.meta()) {
    body += fmt::format("<tr><td class=\"tok\">{}</td><td class=\"tok\">{}</td></tr>",
                        html_escape(k), html_escape(v));
  }
  body += "</tbody></table>";
  return {200, "text/html; charset=utf-8", viewer::page("Evaluation", subtitle(store), body)};
}

nlohmann::json summary_json(const AnalysisStore& store, const FeatureSummary& s) {
  nlohmann::json j = {{"id", s.id},           {"act_times", s.act_times},
                      {"frequency", s.frequency}, {"max_act", s.max_act},
                      {"mean_act", s.mean_act}};
  j["max_decoder_cosine"] = s.max_decoder_cosine ? nlohmann::json(*s.max_decoder_cosine) : nullptr;
  j["nearest_feature"] = s.nearest_feature ? nlohmann::json(*s.nearest_feature) : nullptr;
  j["peak_token"] = s.peak_token ? nlohmann::json(*s.peak_token) : nullptr;
  j["peak_token_text"] = s.peak_token ? nlohmann::json(store.token_text(*s.peak_token)) : nullptr;
  return j;
}

nlohmann::json list_json(const AnalysisStore& store, const ListRequest& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& s : store.list_features(r.query)) {
    rows.push_back(summary_json(store, s));
    if (!r.annotations) continue;
    const auto a = r.annotations->find(s.id);
    rows.back()["label"] = a == r.annotations->end() ? "" : a->second.label;
    rows.back()["bookmarked"] = a != r.annotations->end() && a->second.bookmarked;
  }
  return {{"total", store.count_features(r.query)},
          {"offset", r.query.offset},
          {"limit", r.query.limit},
          {"features", rows}};
}

nlohmann::json detail_json(const AnalysisStore& store, const FeatureDetail& d) {
  nlohmann::json j = summary_json(store, d.summary);
  j["histogram"] = d.histogram;
  j["histogram_edges"] = store.histogram_edges();
  nlohmann::json contexts = nlohmann::json::array();
  for (const auto& c : d.contexts) {
    nlohmann::json texts = nlohmann::json::array();
    for (const auto t : c.context.tokens) texts.push_back(store.token_text(t));
    contexts.push_back({{"band", c.band},
                        {"rank", c.rank},
                        {"score", c.context.score},
                        {"context_index", c.context.provenance.context_index},
                        {"source_rank", c.context.provenance.rank},
                        {"token_offset", c.context.offset},
                        {"tokens", c.context.tokens},
                        {"token_texts", texts},
                        {"acts", dense_acts(c.context)}});
  }
  j["contexts"] = contexts;
  const auto logits = [&](const std::vector<LogitEntry>& list) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : list) {
      out.push_back({{"token", e.token}, {"text", store.token_text(e.token)}, {"logit", e.value}});
    }
    return out;
  };
  j["logit_lens"] = {{"top", logits(d.top_logits)}, {"bottom", logits(d.bottom_logits)}};
  if (d.layer) {
    j["layer"] = *d.layer;
    j["index_in_layer"] = d.index_in_layer;
  }
  if (!d.target_decoder_norms.empty()) {
    nlohmann::json targets = nlohmann::json::array();
    for (std::size_t t = 0; t < d.target_decoder_norms.size(); ++t) {
      targets.push_back({{"hook", t < store.target_hooks().size() ? store.target_hooks()[t] : ""},
                         {"decoder_norm", d.target_decoder_norms[t]}});
    }
    j["target_decoder_norms"] = targets;
  }
  if (!d.decoder_cosines.empty()) {  // H×H as H rows of H, over target_hooks
    const std::size_t h = store.target_hooks().size();
    nlohmann::json cosine = nlohmann::json::array(), inner = nlohmann::json::array();
    for (std::size_t a = 0; a < h && (a + 1) * h <= d.decoder_cosines.size(); ++a) {
      const auto row = static_cast<std::ptrdiff_t>(a * h),
                 end = row + static_cast<std::ptrdiff_t>(h);
      cosine.push_back(
          std::vector<double>(d.decoder_cosines.begin() + row, d.decoder_cosines.begin() + end));
      inner.push_back(std::vector<double>(d.decoder_inner_products.begin() + row,
                                          d.decoder_inner_products.begin() + end));
    }
    j["decoder_similarity"] = {
        {"hooks", store.target_hooks()}, {"cosine", cosine}, {"inner_product", inner}};
  }
  return j;
}

/// `path` minus `prefix` when it starts with it.
std::optional<std::string_view> after(std::string_view path, std::string_view prefix) {
  if (path.substr(0, prefix.size()) != prefix) return std::nullopt;
  return path.substr(prefix.size());
}

}  // namespace

PageResponse handle_request(const AnalysisStore& store, std::string_view path,
                            const QueryParams& params) {
  return handle_request(store, path, params, nullptr);
}

PageResponse handle_request(const AnalysisStore& store, std::string_view path,
                            const QueryParams& params, const viewer::AnnotationMap* annotations) {
  const bool api = after(path, "/api/").has_value();
  if (path == "/" || path == "/api/features") {
    auto r = parse_list(params, store.feature_layers());
    if (r && annotations) {
      r->annotations = annotations;
      viewer::apply_annotations(r->query, *annotations, r->bookmarked);
    }
    if (!r) {
      return bad_request(
          "bad query: sort, order, page, per_page (1–1000), q (≤ 200 bytes), min_freq, max_freq, "
          "min_act, max_act (numbers), layer (0 to feature layers − 1) or bookmarked (1)");
    }
    return api ? json_response(list_json(store, *r)) : dictionary_page(store, *r);
  }
  if (path == "/eval") return eval_page(store);
  if (path == "/api/eval") {
    return json_response({{"metrics", store.eval_metrics()}, {"meta", store.meta()}});
  }
  if (path == "/style.css") return {200, "text/css; charset=utf-8", viewer::stylesheet()};
  auto rest = after(path, api ? "/api/features/" : "/features/");
  if (!rest) return not_found("no such page");
  if (*rest == "random") {  // a redirect, so that the feature's own URL is what the user keeps
    const auto id = store.random_alive_feature();
    if (!id) return not_found("no feature fired in the analysed tokens");
    PageResponse r{302, "text/plain; charset=utf-8", ""};
    r.location = fmt::format("{}{}", api ? "/api/features/" : "/features/", *id);
    r.body = r.location + "\n";
    return r;
  }
  const auto id = parse_feature_id(*rest, store.d_sae());
  const auto detail = id ? store.feature(*id) : std::nullopt;
  if (!detail) {
    return not_found(fmt::format("no feature with id '{}' (ids are 0 to {})",
                                 rest->substr(0, 40), store.d_sae() - 1));
  }
  return api ? json_response(detail_json(store, *detail))
             : feature_page(store, *detail, annotations);
}

}  // namespace saes::analysis

// The many-dictionary viewer (viewer_site.h): URL names, the databases of a folder, the home
// page and the /d/<name>/ prefix over each database's own routes.
#include "saes/analysis/viewer_site.h"

#include <algorithm>
#include <map>
#include <set>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/analysis/graph_pages.h"
#include "saes/analysis/store.h"
#include "saes/analysis/training_curves.h"
#include "saes/analysis/viewer_internal.h"
#include "saes/core/error.h"

namespace saes::analysis {
namespace fs = std::filesystem;
namespace {

std::string sanitize(const std::string& text) {
  std::string out = text;
  for (char& c : out) {
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
    if (!safe) c = '-';
  }
  if (!out.empty() && out.front() == '.') out.front() = '-';
  return out;
}

/// `text` with every occurrence of `from` replaced by `to`.
std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (std::size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

/// An entry's answer moved under `prefix` ("/d/<name>"): root-relative links, form actions,
/// script and stylesheet sources of its HTML, and its redirect. Database texts are escaped in
/// the pages (a quote is &quot;), so only markup the pages wrote matches.
PageResponse under_prefix(PageResponse r, const std::string& prefix) {
  if (!r.location.empty() && r.location.front() == '/') r.location = prefix + r.location;
  if (r.content_type.rfind("text/html", 0) != 0) return r;
  for (const char* attr : {"href=\"/", "action=\"/", "src=\"/"}) {
    const std::string a(attr);
    r.body = replace_all(std::move(r.body), a, a.substr(0, a.size() - 1) + prefix + "/");
  }
  // the way back to the list of dictionaries
  r.body = replace_all(std::move(r.body), "<nav>", "<nav><a href=\"/\">All dictionaries</a>");
  return r;
}

struct Row {
  const SiteEntry* entry;
  std::string series, model, hook, variant;
  std::int64_t d_sae = 0;
  std::optional<double> l0, ev, dead;
};

std::optional<double> metric(const std::map<std::string, double>& m,
                             std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    const auto it = m.find(k);
    if (it != m.end()) return it->second;
  }
  return std::nullopt;
}

Row row_of(const SiteEntry& e) {
  Row r{&e, {}, {}, {}, {}, e.store->d_sae(), {}, {}, {}};
  const auto& meta = e.store->meta();
  const auto get = [&](const char* key) {
    const auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  r.series = get("sae_series");
  r.model = get("model_name");
  r.hook = get("hook_point");
  r.variant = get("sae_type");
  const auto eval = e.store->eval_metrics();
  // saes-analyze's evaluation names them plainly; metrics/… as saes-train logs them
  r.l0 = metric(eval, {"l0", "metrics/l0"});
  r.ev = metric(eval, {"explained_variance", "metrics/explained_variance"});
  if (r.d_sae > 0) {
    FeatureQuery dead;
    dead.max_frequency = 0.0;
    r.dead = static_cast<double>(e.store->count_features(dead)) / static_cast<double>(r.d_sae);
  }
  return r;
}

PageResponse home(const std::vector<SiteEntry>& entries, bool api) {
  std::vector<Row> rows;
  for (const SiteEntry& e : entries) rows.push_back(row_of(e));
  if (api) {
    nlohmann::json list = nlohmann::json::array();
    const auto opt = [](const std::optional<double>& v) {
      return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
    };
    for (const Row& r : rows) {
      list.push_back({{"name", r.entry->name},
                      {"url", "/d/" + r.entry->name + "/"},
                      {"path", r.entry->path.string()},
                      {"series", r.series},
                      {"model", r.model},
                      {"hook_point", r.hook},
                      {"sae_type", r.variant},
                      {"d_sae", r.d_sae},
                      {"l0", opt(r.l0)},
                      {"explained_variance", opt(r.ev)},
                      {"dead_fraction", opt(r.dead)}});
    }
    return {200, "application/json", nlohmann::json{{"dictionaries", list}}.dump()};
  }
  const auto cell = [](const std::optional<double>& v) {
    return v ? fmt::format("<td>{}</td>", viewer::number(*v)) : std::string("<td class=\"muted\">–</td>");
  };
  std::string body = fmt::format(
      "<h1>Dictionaries</h1><p>{} analysis databases.</p><table class=\"features dictionaries\">"
      "<thead><tr><th>dictionary</th><th>series</th><th>model</th><th>hook</th><th>variant</th>"
      "<th>d_sae</th>"
      "<th>L0</th><th>explained variance</th><th>dead fraction</th></tr></thead><tbody>\n",
      entries.size());
  for (const Row& r : rows) {
    // a multi-hook dictionary (a CLT) reads many hooks: its first and last, all in the tooltip
    std::string hook = html_escape(r.hook);
    const auto first = r.hook.find(','), last = r.hook.rfind(',');
    if (first != std::string::npos) {
      hook = fmt::format("<span title=\"{}\">{} … {} ({} hooks)</span>", html_escape(r.hook),
                         html_escape(r.hook.substr(0, first)), html_escape(r.hook.substr(last + 1)),
                         std::count(r.hook.begin(), r.hook.end(), ',') + 1);
    }
    body += fmt::format(
        "<tr><td><a href=\"/d/{0}/\">{1}</a></td><td>{9}</td><td>{2}</td><td class=\"tok\">"
        "<code>{3}</code></td><td>{4}</td><td>{5}</td>{6}{7}{8}</tr>\n",
        viewer::url_encode(r.entry->name), html_escape(r.entry->name), html_escape(r.model), hook,
        html_escape(r.variant), r.d_sae, cell(r.l0), cell(r.ev), cell(r.dead),
        html_escape(r.series));
  }
  body += "</tbody></table>";
  return {200, "text/html; charset=utf-8", viewer::page("Dictionaries", "", body, false)};
}

/// One database's routes: the user's text, its training curves, else its pages.
PageResponse entry_request(const SiteEntry& e, std::string_view path, const QueryParams& params) {
  std::optional<std::map<std::int64_t, Annotation>> notes;
  if (e.annotations != nullptr) notes = e.annotations->all(e.name);
  const auto* annotations = notes ? &*notes : nullptr;
  if (auto live = handle_live_request(*e.store, e.live, path, params, annotations))
    return std::move(*live);
  if (auto run = handle_run_request(e.metrics, path, params)) return std::move(*run);
  return handle_viewer_request(*e.store, e.graphs, path, params, annotations);
}

PageResponse plain(int status, std::string_view text) {
  return {status, "text/plain; charset=utf-8", std::string(text) + "\n"};
}

/// The POST of one entry: `/features/<id>/annotation`.
PageResponse entry_post(const SiteEntry& e, std::string_view path, const QueryParams& form) {
  constexpr std::string_view kFeature = "/features/", kSuffix = "/annotation";
  if (path.substr(0, kFeature.size()) != kFeature || path.size() <= kFeature.size() + kSuffix.size() ||
      path.substr(path.size() - kSuffix.size()) != kSuffix) {
    return plain(404, "no such form");
  }
  const auto id = parse_feature_id(
      path.substr(kFeature.size(), path.size() - kFeature.size() - kSuffix.size()),
      e.store->d_sae());
  if (!id) return plain(404, "no such feature");
  if (e.annotations == nullptr) {
    return plain(403, "annotations are off: start the viewer with --annotations FILE");
  }
  const auto field = [&](const char* key) {
    const auto it = form.find(key);
    return it == form.end() ? std::string() : it->second;
  };
  Annotation a{field("label"), field("notes"), field("bookmarked") == "1", ""};
  try {
    e.annotations->put(e.name, *id, a);
  } catch (const ConfigError& err) {
    return plain(400, err.what());
  }
  PageResponse r = plain(303, "saved");
  r.location = fmt::format("/features/{}", *id);
  return r;
}

}  // namespace

std::vector<std::string> site_names(const std::vector<std::string>& sae_names,
                                    const std::vector<fs::path>& paths) {
  std::vector<std::string> out;
  std::set<std::string> taken;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    std::string base = i < sae_names.size() ? sanitize(sae_names[i]) : std::string();
    if (base.empty()) base = sanitize(paths[i].stem().string());
    if (base.empty()) base = "db";
    std::string name = base;
    for (int k = 2; taken.count(name) > 0; ++k) name = fmt::format("{}-{}", base, k);
    taken.insert(name);
    out.push_back(name);
  }
  return out;
}

std::vector<fs::path> analysis_databases_in(const fs::path& folder) {
  std::error_code ec;
  SAES_CHECK(fs::is_directory(folder, ec), IoError, "serve: {}: not a folder", folder.string());
  std::vector<fs::path> candidates;
  const auto scan = [&](const fs::path& dir) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.is_regular_file(ec) && e.path().extension() == ".sqlite" &&
          e.path().filename() != "graphs.sqlite") {
        candidates.push_back(e.path());
      }
    }
  };
  scan(folder);
  SAES_CHECK(!ec, IoError, "serve: cannot read {}: {}", folder.string(), ec.message());
  for (const auto& e : fs::directory_iterator(folder, ec))
    if (e.is_directory(ec)) scan(e.path());
  std::sort(candidates.begin(), candidates.end());
  std::vector<fs::path> out;
  for (const fs::path& p : candidates) {
    try {
      const AnalysisStore probe(p);
      out.push_back(p);
    } catch (const Error&) {  // another SQLite file: not served
    }
  }
  return out;
}

PageResponse handle_site_request(const std::vector<SiteEntry>& entries, std::string_view path,
                                 const QueryParams& params) {
  SAES_CHECK(!entries.empty(), InternalError, "viewer: no database to serve");
  if (entries.size() == 1) return entry_request(entries[0], path, params);
  if (path == "/" || path == "/api/dictionaries") return home(entries, path != "/");
  if (path == "/style.css") return {200, "text/css; charset=utf-8", viewer::stylesheet()};
  constexpr std::string_view kPrefix = "/d/";
  if (path.substr(0, kPrefix.size()) == kPrefix) {
    const std::string_view rest = path.substr(kPrefix.size());
    const std::size_t slash = rest.find('/');
    if (slash != std::string_view::npos) {
      const std::string_view name = rest.substr(0, slash);
      for (const SiteEntry& e : entries) {
        if (e.name != name) continue;
        return under_prefix(entry_request(e, rest.substr(slash), params), "/d/" + e.name);
      }
    }
  }
  return {404, "text/html; charset=utf-8",
          viewer::page("Not found", "",
                       "<h1>404</h1><p>no such page (the dictionaries are under /d/&lt;name&gt;/)"
                       "</p>",
                       false)};
}

PageResponse handle_site_post(const std::vector<SiteEntry>& entries, std::string_view path,
                              const QueryParams& form) {
  SAES_CHECK(!entries.empty(), InternalError, "viewer: no database to serve");
  if (entries.size() == 1) return entry_post(entries[0], path, form);
  constexpr std::string_view kPrefix = "/d/";
  if (path.substr(0, kPrefix.size()) == kPrefix) {
    const std::string_view rest = path.substr(kPrefix.size());
    const std::size_t slash = rest.find('/');
    for (const SiteEntry& e : entries) {
      if (slash == std::string_view::npos || e.name != rest.substr(0, slash)) continue;
      return under_prefix(entry_post(e, rest.substr(slash), form), "/d/" + e.name);
    }
  }
  return plain(404, "no such form");
}

}  // namespace saes::analysis

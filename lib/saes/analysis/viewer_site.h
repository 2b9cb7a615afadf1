// One viewer over many dictionaries (issue #21, docs/viewer.md "Many dictionaries"): a home page
// listing every served analysis database — series, model, hook, variant, d_sae, L0, explained
// variance, dead fraction — and each database's pages under a stable prefix `/d/<name>/`. With a single
// database the viewer keeps its own routes at `/` (handle_viewer_request).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "saes/analysis/annotations.h"
#include "saes/analysis/viewer_live.h"
#include "saes/analysis/viewer_pages.h"

namespace saes::circuits {
class GraphStore;
}  // namespace saes::circuits

namespace saes::analysis {

class AnalysisStore;

/// A served database: its URL name, the store and its graphs (may be null). Non-owning.
struct SiteEntry {
  std::string name;  ///< /d/<name>/: letters, digits, '.', '_', '-'
  std::filesystem::path path;
  const AnalysisStore* store = nullptr;
  const circuits::GraphStore* graphs = nullptr;
  std::optional<std::filesystem::path> metrics = {};  ///< its training run's metrics.jsonl (/run)
  const LiveInference* live = nullptr;           ///< its model for the user's text (/infer)
  AnnotationStore* annotations = nullptr;        ///< labels and bookmarks (--annotations)
};

/// The URL names of databases: each one's meta `sae_name` (else its file stem, else "db"),
/// every character outside [A-Za-z0-9._-] replaced by '-', a leading '.' too, and "-2", "-3" …
/// appended to repeats, in order.
std::vector<std::string> site_names(const std::vector<std::string>& sae_names,
                                    const std::vector<std::filesystem::path>& paths);

/// The analysis databases of `folder` (its *.sqlite files that open as analysis databases, and
/// those one folder below, sorted by path); graphs.sqlite files are not among them. IoError when
/// the folder cannot be read.
std::vector<std::filesystem::path> analysis_databases_in(const std::filesystem::path& folder);

/// Routes a request over `entries`: with one entry, its live pages (handle_live_request), its
/// training curves (handle_run_request) and handle_viewer_request as is; with several,
/// `/` (and `/api/dictionaries`) is the home page (JSON), `/style.css` the stylesheet, and
/// `/d/<name>/<rest>` that entry's `/<rest>` — its HTML links, form actions and redirects moved
/// under the prefix — while anything else is a 404.
PageResponse handle_site_request(const std::vector<SiteEntry>& entries, std::string_view path,
                                 const QueryParams& params);

/// A POST (the one write the viewer takes): `[/d/<name>]/features/<id>/annotation` with the form
/// fields label, notes and bookmarked stores that feature's annotation and answers a 303 to its
/// page. The caller has checked that the request is same-origin. 403 when the server has no
/// annotations file, 404 for another path or feature, 400 for a label or notes over the limit.
PageResponse handle_site_post(const std::vector<SiteEntry>& entries, std::string_view path,
                              const QueryParams& form);

}  // namespace saes::analysis

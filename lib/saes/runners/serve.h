// `saes-analyze serve`: the read-only web viewer of an analysis database (docs/viewer.md) over
// HTTP (cpp-httplib), answering with saes/analysis/viewer_pages.h until SIGINT or SIGTERM.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "saes/core/logging.h"

namespace saes::runners {

struct ServeOptions {
  /// Analysis databases written by saes-analyze, or folders of them (their *.sqlite analysis
  /// databases and those one folder below). One database: its pages at `/`; several: a home page
  /// at `/` and each one under `/d/<name>/` (analysis/viewer_site.h).
  std::vector<std::filesystem::path> dbs;
  /// Graph store (saes-analyze attribute's graphs.sqlite) for the /graphs pages; empty: the
  /// graphs.sqlite beside each database when there is one. Only with a single database.
  std::filesystem::path graphs;
  /// Training run whose metrics.jsonl curves the /run page draws: a saes-train run folder (or its
  /// metrics.jsonl); empty: the run folder the database's meta sae_path names, when it holds a
  /// metrics.jsonl.
  std::filesystem::path run;
  /// Live inference (/infer, the text boxes): each database's recorded model and dictionary run
  /// on the user's text, loaded on the first such request. false: the pages have no text box.
  bool live = true;
  /// Annotations file (labels, notes, bookmarks; created when missing): with it the feature pages
  /// have an editing form and the server takes its same-origin POSTs; empty: read-only.
  std::filesystem::path annotations;
  std::string host = "127.0.0.1";  ///< listen address; 0.0.0.0 exposes the viewer to the network
  int port = 24577;             ///< 0: any free port (the log line names it)
};

/// Opens the databases (IoError/DataError when one is not an analysis database, IoError for a
/// folder without any; ConfigError for --graphs or --run with several), reads options.run's
/// metrics.jsonl once (IoError when it is missing, DataError naming the line that is bad), opens
/// the graph stores (options.graphs: IoError when missing, DataError when not a graph store; the
/// one beside a database: a warning when it cannot be read, and no graphs), listens (IoError
/// when the address cannot be bound), logs "viewer: http://HOST:PORT/" and serves until the
/// process gets SIGINT or SIGTERM; returns 0 after a clean stop. Blocks those two signals in the
/// calling thread while serving (they are waited for, not handled).
int run_serve(const ServeOptions& options, Logger& logger);

}  // namespace saes::runners

// `saes-analyze serve`: CLI options of the web viewer and the hand-over to runners::run_serve.
#include "serve.h"

namespace saes::cli {

CLI::App* add_serve_command(CLI::App& app, runners::ServeOptions& options) {
  auto* sub = app.add_subcommand(
      "serve", "Browse an analysis database in a web browser (read-only; Ctrl-C stops it)");
  sub->add_option("DB", options.dbs,
                  "analysis databases (<output_dir>/<feature_analysis_name>.sqlite) or folders "
                  "of them; several: a home page lists them, each under /d/<name>/")
      ->required();
  sub->add_option("--graphs", options.graphs,
                  "graph store for the /graphs pages (saes-analyze attribute's graphs.sqlite; "
                  "default: the one beside each DB, when there is one; one DB only)");
  sub->add_option("--run", options.run,
                  "saes-train run folder (or its metrics.jsonl) whose training curves /run draws "
                  "(default: each analysed dictionary's run folder, when it has metrics.jsonl; one DB only)");
  sub->add_option("--annotations", options.annotations,
                  "SQLite file of feature labels, notes and bookmarks (created when missing); "
                  "without it the viewer is read-only");
  sub->add_flag("!--no-live", options.live,
               "no live inference (the text boxes that run the recorded model on your text)");
  sub->add_option("--host", options.host,
                  "listen address (default 127.0.0.1; 0.0.0.0 exposes it to the network)");
  sub->add_option("--port", options.port, "TCP port (default 24577; 0 picks a free one)")
      ->check(CLI::Range(0, 65535));
  return sub;
}

int run_serve_command(Session& session, const runners::ServeOptions& options) {
  return runners::run_serve(options, session.logger());
}

}  // namespace saes::cli

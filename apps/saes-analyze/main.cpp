// saes-analyze: feature statistics, top contexts and evaluation of a trained dictionary, stored in
// a SQLite database; `export` writes one JSON per feature of such a database; `attribute` traces
// one prompt's circuit (an attribution graph).
#include <iostream>

#include "saes/analysis/store.h"
#include "saes/core/error.h"
#include "saes/runners/runners.h"

#include "common/cli.h"
#include "serve.h"

namespace {

struct ExportArgs {
  std::string db;
  std::string out_dir;
};

void add_export(CLI::App& app, ExportArgs& a) {
  auto* sub = app.add_subcommand("export", "Write one JSON per feature of an analysis database");
  sub->add_option("DB", a.db, "analysis database (<output_dir>/<feature_analysis_name>.sqlite)")
      ->required();
  sub->add_option("OUT_DIR", a.out_dir, "folder for feature_<id>.json and index.json")->required();
}

/// Loads the settings of `options.config`, prints them (--print-config) or runs them.
template <class Settings>
int run_settings(saes::cli::Session& session, const saes::cli::CommonOptions& options,
                 Settings (*load)(const std::filesystem::path&, const std::vector<std::string>&),
                 int (*run)(const Settings&, saes::runners::RunContext&)) {
  auto settings = load(options.config, options.overrides);
  if (options.print_config) {
    session.print(saes::config::dump_yaml(settings));
    return 0;
  }
  auto context = session.configure(settings.logging, settings.threads, options);
  return run(settings, context);
}

int run_config(saes::cli::Session& session, const saes::cli::CommonOptions& options) {
  SAES_CHECK(!options.config.empty(), saes::ConfigError,
             "config is required: saes-analyze CONFIG.yaml (or a subcommand; see --help)");
  return run_settings(session, options, &saes::config::load_analyze_settings,
                      &saes::runners::run_analyze);
}

int run_attribute_config(saes::cli::Session& session, const saes::cli::CommonOptions& options) {
  return run_settings(session, options, &saes::config::load_attribute_settings,
                      &saes::runners::run_attribute);
}

}  // namespace

int main(int argc, char** argv) {
  static const saes::cli::Tool kTool{
      "saes-analyze",
      "Analyze a trained dictionary: per-feature statistics, top activating contexts, logit lens, "
      "decoder geometry and evaluation, stored in a SQLite database (docs/analysis.md).",
      "  saes-analyze configs/analyze-stories260k.yaml\n"
      "  saes-analyze run cfg.yaml --set analyzer.total_analyzing_tokens=1000000\n"
      "  saes-analyze export data/analysis/stories260k-l3-topk/default.sqlite features-json/\n"
      "  saes-analyze attribute configs/attribute-stories260k.yaml --set prompt='Once upon a'\n"
      "  saes-analyze serve data/analysis/stories260k-l3-topk/default.sqlite --port 8080\n"};
  auto app = saes::cli::make_app(kTool);
  saes::cli::CommonOptions options;
  saes::cli::add_config_options(*app, options, false);
  saes::cli::CommonOptions run_options;
  auto* run = app->add_subcommand("run", "Analyze from a config (same as no subcommand)");
  saes::cli::add_config_options(*run, run_options);
  saes::cli::CommonOptions attribute_options;
  auto* attribute = app->add_subcommand(
      "attribute", "Trace one prompt: its attribution graph through a replacement model (JSON)");
  saes::cli::add_config_options(*attribute, attribute_options);
  ExportArgs export_args;
  add_export(*app, export_args);
  saes::runners::ServeOptions serve_options;
  saes::cli::add_serve_command(*app, serve_options);
  app->require_subcommand(0, 1);
  const bool& verbose = options.verbose;
  return saes::cli::run(kTool, *app, argc, argv, verbose, [&](saes::cli::Session& session) {
    if (app->got_subcommand("serve")) return saes::cli::run_serve_command(session, serve_options);
    if (app->got_subcommand("attribute")) return run_attribute_config(session, attribute_options);
    if (app->got_subcommand("export")) {
      const saes::analysis::AnalysisStore store(export_args.db);
      const auto n = saes::analysis::export_feature_json(store, export_args.out_dir);
      session.print(fmt::format("{} features written to {}\n", n, export_args.out_dir));
      return 0;
    }
    return run_config(session, app->got_subcommand("run") ? run_options : options);
  });
}

// The `serve` subcommand of saes-analyze: the read-only web viewer of an analysis database
// (docs/viewer.md). main.cpp adds it with add_serve_command and runs it with run_serve_command.
#pragma once

#include <CLI/CLI.hpp>

#include "saes/runners/serve.h"

#include "common/cli.h"

namespace saes::cli {

/// Adds `serve DB [--graphs FILE] [--run DIR] [--host H] [--port P]` to `app`; the parsed values
/// land in `options`.
CLI::App* add_serve_command(CLI::App& app, runners::ServeOptions& options);
/// Serves until SIGINT/SIGTERM (runners::run_serve); returns the exit code.
int run_serve_command(Session& session, const runners::ServeOptions& options);

}  // namespace saes::cli

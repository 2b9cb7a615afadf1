// The command-line layer shared by the four executables: common options (config path, --set,
// --print-config, --verbose, --threads, --log-level), the process session (world communicator +
// logger), and the single place where exceptions become exit codes (style.md §B5).
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saes/config/config_loader.h"
#include "saes/core/config.h"
#include "saes/core/logging.h"
#include "saes/runners/run_context.h"

namespace saes::distributed {
class Communicator;
}

namespace saes::cli {

/// What `--help` says about one executable.
struct Tool {
  std::string name;         ///< "saes-train"
  std::string description;  ///< one paragraph
  std::string examples;     ///< shell lines shown under "Examples:"
};

struct CommonOptions {
  std::filesystem::path config;           ///< positional YAML experiment file
  std::vector<std::string> overrides;     ///< --set key.path=value (repeatable)
  bool print_config = false;              ///< print the resolved config as YAML and exit
  bool verbose = false;                   ///< debug logs and full torch backtraces
  std::optional<std::string> log_level;   ///< overrides logging.level
  std::optional<int> threads;             ///< overrides threads (0 = all cores)
};

/// A CLI11 app with --version and a footer listing examples, exit codes and environment variables.
std::unique_ptr<CLI::App> make_app(const Tool& tool);
/// Adds the positional config path and the common options to `app` (or a subcommand).
void add_config_options(CLI::App& app, CommonOptions& options, bool config_required = true);

/// Process-wide state of one run: the world communicator (MPI under mpirun, else single process)
/// and the logger with its rank prefix.
class Session {
 public:
  explicit Session(const Tool& tool);
  ~Session();
  Logger& logger() { return logger_; }
  distributed::Communicator& world() { return *world_; }
  bool primary() const;
  /// Applies log level / threads (CLI flags win over config values) and checks the BLAS; returns
  /// the runners' context.
  runners::RunContext configure(const LoggingConfig& logging, std::int64_t config_threads,
                                const CommonOptions& options);
  /// Prints text on the primary rank only (stdout).
  void print(const std::string& text) const;

 private:
  const Tool& tool_;
  Logger logger_;
  std::unique_ptr<distributed::Communicator> world_;
};

/// Parses argv with CLI11, then runs `body` inside the error boundary: saes::Error → its exit
/// code, c10::Error → 1 (short message unless --verbose), other exceptions → 1. With more than one
/// rank a failing rank aborts all ranks (MPI_Abort) after printing its message.
int run(const Tool& tool, CLI::App& app, int argc, char** argv, const bool& verbose,
        const std::function<int(Session&)>& body);

/// The whole main of a config-driven executable: common options, load + overrides,
/// --print-config, session set-up, then `runner(settings, context)`.
template <class Settings>
int run_config_tool(const Tool& tool, int argc, char** argv,
                    Settings (*load)(const std::filesystem::path&, const std::vector<std::string>&),
                    int (*runner)(const Settings&, runners::RunContext&)) {
  auto app = make_app(tool);
  CommonOptions options;
  add_config_options(*app, options);
  return run(tool, *app, argc, argv, options.verbose, [&](Session& session) {
    Settings settings = load(options.config, options.overrides);
    if (options.print_config) {
      session.print(config::dump_yaml(settings));
      return 0;
    }
    runners::RunContext context = session.configure(settings.logging, settings.threads, options);
    return runner(settings, context);
  });
}

}  // namespace saes::cli

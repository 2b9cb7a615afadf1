// Shared CLI layer: options, session, error boundary.
#include "common/cli.h"

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>

#include "saes/core/error.h"
#include "saes/core/threads.h"
#include "saes/distributed/communicator.h"
#include "saes/distributed/world.h"
#include "saes/version.h"

namespace saes::cli {
namespace {

constexpr const char* kExitCodes =
    "Exit codes:\n"
    "  0 success   1 internal error   2 bad configuration or usage   3 bad/missing data or I/O\n"
    "  4 distributed failure (a rank failed, MPI/NCCL)   5 unsupported feature\n";

constexpr const char* kEnvironment =
    "Environment:\n"
    "  OMP_NUM_THREADS     ignored: use --threads or `threads:` in the config (0 = all cores)\n"
    "  OMPI_COMM_WORLD_*, PMI_*, SLURM_*  set by mpirun/srun: selects the MPI communicator\n";

std::string version_line(const Tool& tool) {
  return fmt::format("{} {} ({})", tool.name, kVersion, kGitDescribe);
}

/// Prints `<tool>: error: <message>` and returns `code`; with several ranks it instead takes every
/// rank down with that code (peers may be blocked in a collective and cannot unwind).
int fail(const Tool& tool, Session* session, const std::string& message, ExitCode code) {
  std::string line = fmt::format("{}: error: {}", tool.name, message);
  if (session != nullptr && session->world().size() > 1) {
    distributed::abort_all(session->world(), static_cast<int>(code), line);
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  return static_cast<int>(code);
}

}  // namespace

std::unique_ptr<CLI::App> make_app(const Tool& tool) {
  auto app = std::make_unique<CLI::App>(tool.description, tool.name);
  app->set_version_flag("--version", version_line(tool));
  app->footer(fmt::format("Examples:\n{}\n{}\n{}", tool.examples, kExitCodes, kEnvironment));
  app->get_formatter()->column_width(34);
  return app;
}

void add_config_options(CLI::App& app, CommonOptions& options, bool config_required) {
  auto* config = app.add_option("config", options.config, "YAML experiment file")->check(CLI::ExistingFile);
  if (config_required) config->required();
  app.add_option("--set", options.overrides,
                 "Override a config value: --set trainer.lr=1e-4 (repeatable; value is YAML)")
      ->allow_extra_args(false);
  app.add_flag("--print-config", options.print_config,
               "Print the resolved config (file + overrides + defaults) as YAML and exit");
  app.add_flag("-v,--verbose", options.verbose, "Debug logging and full error backtraces");
  app.add_option("--log-level", options.log_level, "debug | info | warn | error (overrides logging.level)");
  app.add_option("--threads", options.threads, "Torch threads per process (0 = all available cores)");
}

Session::Session(const Tool& tool)
    : tool_(tool),
      world_(distributed::make_world_communicator(distributed::WorldOptions{},
                                                  distributed::process_environment())) {
  logger_.set_rank(world_->rank(), world_->size());
}

Session::~Session() = default;

bool Session::primary() const { return world_->rank() == 0; }

runners::RunContext Session::configure(const LoggingConfig& logging, std::int64_t config_threads,
                                       const CommonOptions& options) {
  LogLevel level = logging.level;
  if (options.log_level) {
    auto parsed = try_parse_log_level(*options.log_level);
    SAES_CHECK(parsed.has_value(), ConfigError,
               "--log-level: expected one of debug, info, warn, error, off, got \"{}\"",
               *options.log_level);
    level = *parsed;
  }
  if (options.verbose) level = LogLevel::kDebug;
  logger_.set_level(level);
  int local_ranks = 1;
  if (const char* env = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) local_ranks = std::atoi(env);
  int requested = static_cast<int>(options.threads.value_or(config_threads));
  SAES_CHECK(requested >= 0, ConfigError, "threads: expected >= 0 (0 = all cores), got {}", requested);
  keep_freed_memory();
  int threads = set_torch_threads(requested, local_ranks);
  logger_.debug("{}: {} torch threads", tool_.name, threads);
  warn_if_reference_blas(logger_);
  return runners::RunContext{logger_, *world_, logging.progress, logging.progress_interval_s};
}

void Session::print(const std::string& text) const {
  if (!primary()) return;
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

int run(const Tool& tool, CLI::App& app, int argc, char** argv, const bool& verbose,
        const std::function<int(Session&)>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : static_cast<int>(ExitCode::kConfig);
  }
  std::unique_ptr<Session> session;
  try {
    session = std::make_unique<Session>(tool);
    return body(*session);
  } catch (const Error& e) {
    return fail(tool, session.get(), e.what(), e.exit_code());
  } catch (const c10::Error& e) {
    return fail(tool, session.get(), verbose ? e.what() : e.what_without_backtrace(),
                ExitCode::kInternal);
  } catch (const std::exception& e) {
    return fail(tool, session.get(), fmt::format("unexpected error: {}", e.what()),
                ExitCode::kInternal);
  }
}

}  // namespace saes::cli

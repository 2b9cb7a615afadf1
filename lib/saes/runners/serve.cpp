// The viewer's HTTP server: every request goes through one pre-routing hook to
// analysis::handle_viewer_request (no regex routes); SIGINT/SIGTERM are awaited with sigwait, so
// no signal handler or global state is involved in stopping.
#include "saes/runners/serve.h"

#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/analysis/graph_pages.h"
#include "saes/analysis/annotations.h"
#include "saes/analysis/store.h"
#include "saes/analysis/training_curves.h"
#include "saes/analysis/viewer_pages.h"
#include "saes/analysis/viewer_site.h"
#include "saes/circuits/graph_store.h"
#include "saes/core/error.h"
#include "saes/runners/live_inference.h"

namespace saes::runners {
namespace {

/// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts) for its lifetime.
class BlockedStopSignals {
 public:
  BlockedStopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &previous_);
  }
  ~BlockedStopSignals() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  BlockedStopSignals(const BlockedStopSignals&) = delete;
  BlockedStopSignals& operator=(const BlockedStopSignals&) = delete;

  /// Waits for one of the two signals; returns its number.
  int wait() const {
    int signal = 0;
    sigwait(&set_, &signal);
    return signal;
  }

 private:
  sigset_t set_{};
  sigset_t previous_{};
};

analysis::QueryParams query_params(const httplib::Request& request) {
  analysis::QueryParams params;
  for (const auto& [key, value] : request.params) params[key] = value;
  return params;
}

/// Whether a POST comes from a page of this server: a form of ours sends Origin (our pages set
/// Referrer-Policy same-origin, so a browser names the real origin, not "null"), which must be
/// this server's own origin, with a form body; Sec-Fetch-Site, when sent, must say same-origin.
bool same_origin(const httplib::Request& request) {
  const std::string host = request.get_header_value("Host");
  const std::string origin = request.get_header_value("Origin");
  const std::string site = request.get_header_value("Sec-Fetch-Site");
  const std::string type = request.get_header_value("Content-Type");
  return !host.empty() && origin == "http://" + host && (site.empty() || site == "same-origin") &&
         type.rfind("application/x-www-form-urlencoded", 0) == 0;
}

/// Answers `request` with `page`.
void respond(httplib::Response& response, analysis::PageResponse page) {
  response.status = page.status;
  if (!page.location.empty()) response.set_header("Location", page.location);
  response.set_content(std::move(page.body), page.content_type);
}

/// Routes every request; the stores are shared by the pool's threads, so calls are serialized.
/// `writable`: POSTs of annotations are taken (--annotations).
void install_routes(httplib::Server& server, const std::vector<analysis::SiteEntry>& site,
                    bool writable, std::mutex& store_mutex, Logger& logger) {
  server.set_default_headers({{"X-Content-Type-Options", "nosniff"},
                              {"Content-Security-Policy",
                               "default-src 'none'; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'self'"},
                              {"Referrer-Policy", "same-origin"}});
  // Both handlers run after install_routes returns: what they refer to outlives the server.
  const auto answer = [&site, &store_mutex, &logger](const httplib::Request& request, bool post) {
    analysis::PageResponse page;
    try {
      const std::lock_guard lock(store_mutex);
      page = post ? analysis::handle_site_post(site, request.path, query_params(request))
                  : analysis::handle_site_request(site, request.path, query_params(request));
    } catch (const std::exception& e) {
      logger.warn("viewer: {} {}: {}", request.method, request.path, e.what());
      page = {500, "text/plain; charset=utf-8", "internal error (see the server log)\n", ""};
    }
    logger.debug("viewer: {} {} -> {}", request.method, request.path, page.status);
    return page;
  };
  server.set_pre_routing_handler([answer, writable, &logger](const httplib::Request& request,
                                                             httplib::Response& response) {
    if (request.method == "POST" && writable) {
      if (same_origin(request)) return httplib::Server::HandlerResponse::Unhandled;  // Post()
      logger.warn("viewer: refused a cross-site POST {} (Origin '{}')", request.path,
                  request.get_header_value("Origin"));
      respond(response, {403, "text/plain; charset=utf-8", "cross-site request refused\n", ""});
      return httplib::Server::HandlerResponse::Handled;
    }
    if (request.method != "GET" && request.method != "HEAD") {
      response.set_header("Allow", writable ? "GET, HEAD, POST" : "GET, HEAD");
      respond(response, {405, "text/plain; charset=utf-8",
                         writable ? "the viewer takes GET, and POST for annotations\n"
                                  : "the viewer is read-only (no --annotations)\n",
                         ""});
      return httplib::Server::HandlerResponse::Handled;
    }
    respond(response, answer(request, false));
    return httplib::Server::HandlerResponse::Handled;
  });
  // a same-origin POST: the body (the form) is read before this handler runs
  if (writable) {
    server.Post(".*", [answer](const httplib::Request& request, httplib::Response& response) {
      respond(response, answer(request, true));
    });
  }
}

/// The graph store to serve beside `db`: options.graphs (must be one), else graphs.sqlite beside
/// the database when it is there and readable (else a warning); null when there is none.
std::unique_ptr<circuits::GraphStore> open_graphs(const ServeOptions& options,
                                                  const std::filesystem::path& db,
                                                  Logger& logger) {
  namespace fs = std::filesystem;
  if (!options.graphs.empty()) {
    SAES_CHECK(fs::is_regular_file(options.graphs), IoError,
               "serve: --graphs {}: no such file (saes-analyze attribute writes graphs.sqlite)",
               options.graphs.string());
    try {
      return std::make_unique<circuits::GraphStore>(options.graphs);
    } catch (Error& e) {
      e.add_context("serve: --graphs");
      throw;
    }
  }
  const fs::path beside = circuits::GraphStore::path_beside(db);
  std::error_code ec;
  if (!fs::is_regular_file(beside, ec)) return nullptr;
  try {
    return std::make_unique<circuits::GraphStore>(beside);
  } catch (const Error& e) {
    logger.warn("viewer: no graphs: {}", e.what());
    return nullptr;
  }
}

/// The metrics.jsonl of the training run the /run page charts: options.run's (a run folder or
/// the file itself; it must exist and parse), else the one in the run folder the database's meta
/// sae_path names (a folder, or a weights file inside one; relative paths as seen from here)
/// when there is one. nullopt: no run.
std::optional<std::filesystem::path> find_training_log(const ServeOptions& options,
                                                       const analysis::AnalysisStore& store,
                                                       Logger& logger) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!options.run.empty()) {
    const fs::path file =
        fs::is_directory(options.run, ec) ? options.run / "metrics.jsonl" : options.run;
    try {
      const analysis::TrainingLog log = analysis::load_training_log(file);
      logger.info("viewer: training curves from {} ({} logged steps)", file.string(),
                  log.steps.size());
    } catch (Error& e) {
      e.add_context(fmt::format("serve: --run {}", options.run.string()));
      throw;
    }
    return file;
  }
  const auto sae_path = store.meta().find("sae_path");
  if (sae_path == store.meta().end() || sae_path->second.empty()) return std::nullopt;
  const fs::path sae(sae_path->second);
  fs::path folder;
  if (fs::is_directory(sae, ec)) {
    folder = sae;
  } else if (fs::is_regular_file(sae, ec)) {
    folder = sae.has_parent_path() ? sae.parent_path() : fs::path(".");
  } else {
    logger.info("viewer: no training curves (the analysed dictionary {} is not found from here; "
                "--run RUN_DIR names a run)",
                sae.string());
    return std::nullopt;
  }
  const fs::path file = folder / "metrics.jsonl";
  if (!fs::is_regular_file(file, ec)) {
    logger.info("viewer: no training curves ({} not found; --run RUN_DIR names a run)",
                file.string());
    return std::nullopt;
  }
  logger.info("viewer: training curves from {} (the analysed dictionary's run folder)",
              file.string());
  return file;
}

constexpr int kReadTimeoutSeconds = 5;
constexpr int kKeepAliveSeconds = 2;
constexpr std::size_t kWorkers = 128;

}  // namespace

int run_serve(const ServeOptions& options, Logger& logger) {
  namespace fs = std::filesystem;
  // an existing annotations file is checked first (its error is the only line); a new one is
  // created only once the databases opened and the port is bound, so that a failed start leaves
  // nothing behind
  std::unique_ptr<analysis::AnnotationStore> annotations;
  if (!options.annotations.empty() && fs::exists(options.annotations)) {
    annotations = std::make_unique<analysis::AnnotationStore>(options.annotations);
  }
  std::vector<fs::path> paths;
  for (const fs::path& p : options.dbs) {
    std::error_code ec;
    if (!fs::is_directory(p, ec)) {
      paths.push_back(p);
      continue;
    }
    const auto found = analysis::analysis_databases_in(p);
    SAES_CHECK(!found.empty(), IoError, "serve: {}: no analysis database in the folder",
               p.string());
    paths.insert(paths.end(), found.begin(), found.end());
  }
  SAES_CHECK(!paths.empty(), ConfigError, "serve: name an analysis database (or a folder)");
  SAES_CHECK(options.graphs.empty() || paths.size() == 1, ConfigError,
             "serve: --graphs serves one database's graphs; with {} databases each uses the "
             "graphs.sqlite beside it",
             paths.size());
  SAES_CHECK(options.run.empty() || paths.size() == 1, ConfigError,
             "serve: --run names one database's training run; with {} databases each uses its "
             "dictionary's run folder",
             paths.size());
  std::vector<std::unique_ptr<analysis::AnalysisStore>> stores;
  std::vector<std::unique_ptr<circuits::GraphStore>> graph_stores;
  std::vector<std::optional<fs::path>> metrics;
  std::vector<std::string> sae_names;
  for (const fs::path& p : paths) {
    try {
      stores.push_back(std::make_unique<analysis::AnalysisStore>(p));
    } catch (Error& e) {
      if (paths.size() > 1) e.add_context(fmt::format("serve: {}", p.string()));
      throw;
    }
    graph_stores.push_back(open_graphs(options, p, logger));
    metrics.push_back(find_training_log(options, *stores.back(), logger));
    if (graph_stores.back()) {
      logger.info("viewer: graphs from {} ({} graphs)", graph_stores.back()->path().string(),
                  graph_stores.back()->list_graphs().size());
    }
    const auto it = stores.back()->meta().find("sae_name");
    sae_names.push_back(it == stores.back()->meta().end() ? std::string() : it->second);
  }
  const std::vector<std::string> names = analysis::site_names(sae_names, paths);
  // each database's model and dictionary for the user's text, loaded on the first such request
  std::vector<std::unique_ptr<LiveModel>> live_models;
  std::vector<analysis::LiveInference> live;
  for (const auto& store : stores) {
    live_models.push_back(std::make_unique<LiveModel>(*store));
    live.push_back(live_models.back()->inference());
  }
  std::vector<analysis::SiteEntry> site;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    site.push_back({names[i], paths[i], stores[i].get(), graph_stores[i].get(), metrics[i],
                    options.live ? &live[i] : nullptr, nullptr});
  }
  std::mutex store_mutex;
  const BlockedStopSignals signals;
  httplib::Server server;
  // Exclusive binding: cpp-httplib's default sets SO_REUSEPORT, with which a second server on
  // the same port starts too and the kernel splits the connections between the two.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // Idle or slow clients hold a worker only for a bounded time, and there are enough workers
  // that a few of them cannot stall the viewer.
  server.set_read_timeout(std::chrono::seconds(kReadTimeoutSeconds));
  server.set_keep_alive_timeout(kKeepAliveSeconds);
  server.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
  server.set_payload_max_length(64 * 1024);  // an annotation form; GETs carry no body
  install_routes(server, site, !options.annotations.empty(), store_mutex, logger);
  SAES_CHECK(options.port >= 0 && options.port <= 65535, ConfigError,
             "serve: --port {} is outside 0..65535", options.port);
  int port = options.port;
  if (port == 0) {
    port = server.bind_to_any_port(options.host);
    SAES_CHECK(port > 0, IoError, "serve: cannot listen on {} (any port)", options.host);
  } else {
    SAES_CHECK(server.bind_to_port(options.host, port), IoError,
               "serve: cannot listen on {}:{} (in use, or not a local address?)", options.host,
               port);
  }
  if (!annotations && !options.annotations.empty()) {
    annotations = std::make_unique<analysis::AnnotationStore>(options.annotations);
  }
  if (annotations) {
    for (analysis::SiteEntry& e : site) e.annotations = annotations.get();
    logger.info("viewer: annotations in {} (labels, notes and bookmarks are saved there)",
                options.annotations.string());
  }
  if (site.size() == 1) {
    logger.info("viewer: serving {} ({} features) at http://{}:{}/ — Ctrl-C stops it",
                paths[0].string(), stores[0]->d_sae(), options.host, port);
  } else {
    logger.info("viewer: serving {} dictionaries ({}) at http://{}:{}/ — Ctrl-C stops it",
                site.size(), fmt::join(names, ", "), options.host, port);
  }
  bool listen_failed = false;
  std::thread listener([&] {
    listen_failed = !server.listen_after_bind();
    if (listen_failed) kill(getpid(), SIGTERM);
  });
  const int signal = signals.wait();
  server.stop();
  listener.join();
  SAES_CHECK(!listen_failed, IoError, "serve: the server on {}:{} stopped accepting connections",
             options.host, port);
  logger.info("viewer: stopped ({})", signal == SIGINT ? "SIGINT" : "SIGTERM");
  return 0;
}

}  // namespace saes::runners

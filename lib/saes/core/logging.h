// Leveled, thread-safe logging with a `[rank r/n]` prefix under MPI, and a progress reporter that
// redraws one line on a TTY and prints periodic plain lines otherwise (SLURM logs).
// A Logger is passed down explicitly (no global logger).
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace saes {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

/// How progress is shown: `auto` redraws a line on a TTY and prints plain lines otherwise.
enum class ProgressMode { kAuto, kTty, kPlain, kOff };

/// Parses "debug", "info", "warn"/"warning", "error", "off"; nullopt otherwise.
std::optional<LogLevel> try_parse_log_level(std::string_view text);
std::string_view log_level_name(LogLevel level);

class Logger {
 public:
  /// Writes to `out` (stderr by default). Non-owning: `out` must outlive the logger.
  explicit Logger(LogLevel level = LogLevel::kInfo, std::FILE* out = stderr);
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  /// With world > 1 every line carries `[rank r/n]`; `only_primary` silences info/debug on r > 0.
  void set_rank(int rank, int world, bool only_primary = true);
  void set_level(LogLevel level) { level_ = level; }
  LogLevel level() const { return level_; }
  int rank() const { return rank_; }
  int world() const { return world_; }
  bool enabled(LogLevel level) const;
  std::FILE* stream() const { return out_; }

  void log(LogLevel level, std::string_view message);
  /// Writes raw text without prefix or newline (progress redraws); serialised with log().
  void write_raw(std::string_view text);

  template <typename... Args>
  void debug(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(LogLevel::kDebug)) log(LogLevel::kDebug, fmt::format(f, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void info(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(LogLevel::kInfo)) log(LogLevel::kInfo, fmt::format(f, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(LogLevel::kWarn)) log(LogLevel::kWarn, fmt::format(f, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void error(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(LogLevel::kError)) log(LogLevel::kError, fmt::format(f, std::forward<Args>(args)...));
  }

 private:
  std::string prefix(LogLevel level) const;

  LogLevel level_;
  std::FILE* out_;
  int rank_ = 0;
  int world_ = 1;
  bool only_primary_ = true;
  bool line_open_ = false;  // a progress line is on screen; log() clears it first
  std::mutex mutex_;
};

/// Progress of a long loop: `advance(n)` after each unit of work. On a TTY it redraws
/// `label [#####.....] 41% 12.3k tok/s ETA 0:03:12 | extra`; otherwise it logs such a line every
/// `plain_interval_s` seconds. Only the logger's primary rank prints.
class Progress {
 public:
  Progress(Logger& logger, std::string label, std::int64_t total, std::string unit,
           ProgressMode mode = ProgressMode::kAuto, double plain_interval_s = 30.0);
  void advance(std::int64_t n, std::string_view extra = {});
  /// Prints the final line (always) with total time and mean rate.
  void finish(std::string_view extra = {});
  std::int64_t done() const { return done_; }
  double elapsed_s() const;
  /// "1.23k", "4.56M" style numbers for rates and counts.
  static std::string human(double value);
  /// "1:02:03" / "2:03".
  static std::string duration(double seconds);

 private:
  std::string line(std::string_view extra) const;

  Logger& logger_;
  std::string label_;
  std::int64_t total_;
  std::string unit_;
  double plain_interval_s_;
  bool tty_;
  bool off_;
  std::int64_t done_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
};

}  // namespace saes

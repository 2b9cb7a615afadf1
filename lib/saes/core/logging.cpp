// Logger and Progress implementation.
#include "saes/core/logging.h"

#include <unistd.h>

#include <algorithm>
#include <ctime>

namespace saes {

std::optional<LogLevel> try_parse_log_level(std::string_view text) {
  if (text == "debug") return LogLevel::kDebug;
  if (text == "info") return LogLevel::kInfo;
  if (text == "warn" || text == "warning") return LogLevel::kWarn;
  if (text == "error") return LogLevel::kError;
  if (text == "off") return LogLevel::kOff;
  return std::nullopt;
}

std::string_view log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kOff: return "off";
  }
  return "?";
}

Logger::Logger(LogLevel level, std::FILE* out) : level_(level), out_(out) {}

void Logger::set_rank(int rank, int world, bool only_primary) {
  rank_ = rank;
  world_ = world;
  only_primary_ = only_primary;
}

bool Logger::enabled(LogLevel level) const {
  if (level < level_ || level == LogLevel::kOff) return false;
  if (only_primary_ && rank_ != 0 && level < LogLevel::kWarn) return false;
  return true;
}

std::string Logger::prefix(LogLevel level) const {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
  std::string out = fmt::format("[{}]", stamp);
  if (world_ > 1) out += fmt::format(" [rank {}/{}]", rank_, world_);
  switch (level) {
    case LogLevel::kWarn: out += " warning:"; break;
    case LogLevel::kError: out += " error:"; break;
    case LogLevel::kDebug: out += " debug:"; break;
    default: break;
  }
  return out;
}

void Logger::log(LogLevel level, std::string_view message) {
  std::string text = prefix(level) + " " + std::string(message) + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  if (line_open_) {  // clear the progress line; the next advance() redraws it below
    std::fputs("\r\033[K", out_);
    line_open_ = false;
  }
  std::fwrite(text.data(), 1, text.size(), out_);
  std::fflush(out_);
}

void Logger::write_raw(std::string_view text) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::fwrite(text.data(), 1, text.size(), out_);
  std::fflush(out_);
  line_open_ = !text.empty() && text.back() != '\n';
}

Progress::Progress(Logger& logger, std::string label, std::int64_t total, std::string unit,
                   ProgressMode mode, double plain_interval_s)
    : logger_(logger),
      label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      plain_interval_s_(plain_interval_s),
      tty_(mode == ProgressMode::kTty ||
           (mode == ProgressMode::kAuto && isatty(fileno(logger.stream())) != 0)),
      off_(mode == ProgressMode::kOff),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::human(double value) {
  const char* suffixes[] = {"", "k", "M", "G", "T"};
  int i = 0;
  while (value >= 1000.0 && i < 4) {
    value /= 1000.0;
    ++i;
  }
  return i == 0 ? fmt::format("{:.0f}", value) : fmt::format("{:.2f}{}", value, suffixes[i]);
}

std::string Progress::duration(double seconds) {
  auto total = static_cast<long long>(std::max(0.0, seconds) + 0.5);
  long long h = total / 3600, m = (total / 60) % 60, s = total % 60;
  return h > 0 ? fmt::format("{}:{:02d}:{:02d}", h, m, s) : fmt::format("{}:{:02d}", m, s);
}

std::string Progress::line(std::string_view extra) const {
  double elapsed = elapsed_s();
  double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  std::string out = label_;
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    constexpr int kWidth = 24;
    int filled = static_cast<int>(frac * kWidth);
    out += fmt::format(" [{}{}] {:3.0f}%", std::string(filled, '#'), std::string(kWidth - filled, '.'),
                       frac * 100.0);
    out += fmt::format(" {}/{} {}", human(static_cast<double>(done_)), human(static_cast<double>(total_)),
                       unit_);
    double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0.0;
    out += fmt::format(" {} {}/s ETA {}", human(rate), unit_, duration(eta));
  } else {
    out += fmt::format(" {} {} {} {}/s", human(static_cast<double>(done_)), unit_, human(rate), unit_);
  }
  if (!extra.empty()) out += fmt::format(" | {}", extra);
  return out;
}

void Progress::advance(std::int64_t n, std::string_view extra) {
  done_ += n;
  if (off_ || !logger_.enabled(LogLevel::kInfo)) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_print_).count();
  if (tty_) {
    if (since < 0.1) return;
    last_print_ = now;
    logger_.write_raw("\r\033[K" + line(extra));
  } else if (since >= plain_interval_s_) {
    last_print_ = now;
    logger_.info("{}", line(extra));
  }
}

void Progress::finish(std::string_view extra) {
  if (off_ || !logger_.enabled(LogLevel::kInfo)) return;
  std::string text = line(extra) + fmt::format(" (done in {})", duration(elapsed_s()));
  logger_.info("{}", text);
}

}  // namespace saes

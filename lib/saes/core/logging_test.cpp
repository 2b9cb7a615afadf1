// Tests of Logger (levels, rank prefix) and Progress (plain lines, tty redraws, off).
#include <catch2/catch.hpp>
#include <stdio.h>

#include <cstdlib>
#include <string>

#include "saes/core/logging.h"

namespace {

// Captures what a Logger writes, through open_memstream.
class Capture {
 public:
  Capture() : file_(open_memstream(&buffer_, &size_)) {}
  ~Capture() {
    std::fclose(file_);
    std::free(buffer_);
  }
  std::FILE* file() { return file_; }
  std::string text() {
    std::fflush(file_);
    return std::string(buffer_, size_);
  }

 private:
  char* buffer_ = nullptr;
  std::size_t size_ = 0;
  std::FILE* file_;
};

}  // namespace

TEST_CASE("logger filters by level and prefixes warnings", "[core]") {
  Capture out;
  saes::Logger logger(saes::LogLevel::kInfo, out.file());
  logger.debug("hidden {}", 1);
  logger.info("shown {}", 2);
  logger.warn("careful");
  std::string text = out.text();
  CHECK(text.find("hidden") == std::string::npos);
  CHECK(text.find("shown 2") != std::string::npos);
  CHECK(text.find("warning: careful") != std::string::npos);
  CHECK(text.find("[rank") == std::string::npos);
}

TEST_CASE("logger under several ranks prefixes the rank and silences info off rank 0", "[core]") {
  Capture out;
  saes::Logger logger(saes::LogLevel::kInfo, out.file());
  logger.set_rank(1, 4);
  logger.info("only on rank 0");
  logger.error("broken shard");
  std::string text = out.text();
  CHECK(text.find("only on rank 0") == std::string::npos);
  CHECK(text.find("[rank 1/4] error: broken shard") != std::string::npos);
}

TEST_CASE("log levels parse from their names", "[core]") {
  CHECK(saes::try_parse_log_level("warning") == saes::LogLevel::kWarn);
  CHECK(saes::try_parse_log_level("debug") == saes::LogLevel::kDebug);
  CHECK_FALSE(saes::try_parse_log_level("loud").has_value());
}

TEST_CASE("progress prints plain lines with rate and ETA, and nothing when off", "[core]") {
  Capture out;
  saes::Logger logger(saes::LogLevel::kInfo, out.file());
  saes::Progress plain(logger, "generate", 1000, "tok", saes::ProgressMode::kPlain, 0.0);
  plain.advance(250, "loss 1.5");
  plain.finish();
  std::string text = out.text();
  CHECK(text.find("generate [######") != std::string::npos);
  CHECK(text.find(" 25%") != std::string::npos);
  CHECK(text.find("tok/s ETA") != std::string::npos);
  CHECK(text.find("| loss 1.5") != std::string::npos);
  CHECK(text.find("done in") != std::string::npos);

  Capture quiet;
  saes::Logger logger2(saes::LogLevel::kInfo, quiet.file());
  saes::Progress off(logger2, "x", 10, "tok", saes::ProgressMode::kOff);
  off.advance(10);
  off.finish();
  CHECK(quiet.text().empty());
}

TEST_CASE("progress on a tty redraws one line and a log line clears it", "[core]") {
  Capture out;
  saes::Logger logger(saes::LogLevel::kInfo, out.file());
  saes::Progress tty(logger, "train", 0, "tok", saes::ProgressMode::kTty);
  tty.advance(5);  // within 0.1 s of the start: no redraw yet
  CHECK(out.text().empty());
  logger.info("message");
  CHECK(out.text().find("message") != std::string::npos);
  CHECK(saes::Progress::human(1234567) == "1.23M");
  CHECK(saes::Progress::duration(3725) == "1:02:05");
}

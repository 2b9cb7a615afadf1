// Error types of the saes library and the checks that throw them (style.md §B5).
// The library never prints-and-exits: it throws one of these; each app's main maps them to exit codes.
#pragma once

#include <fmt/format.h>

#include <exception>
#include <string>
#include <utility>

namespace saes {

/// Process exit codes, documented in README ("Exit codes") and `--help`.
enum class ExitCode : int {
  kOk = 0,
  kInternal = 1,      ///< a bug in saes (SAES_ASSERT) or an unexpected exception
  kConfig = 2,        ///< bad configuration or command line
  kData = 3,          ///< bad, missing or corrupt input data / file I/O failure
  kDistributed = 4,   ///< MPI/NCCL failure or a peer rank failed
  kUnsupported = 5,   ///< a feature that this build or version does not support
};

/// Base of all saes errors. `what()` is a single line meant for users; context is prepended
/// while unwinding ("while loading checkpoint run/: ...").
class Error : public std::exception {
 public:
  explicit Error(std::string message) : message_(std::move(message)) {}
  virtual ExitCode exit_code() const { return ExitCode::kInternal; }
  /// Prepends `context: ` to the message; call while unwinding at a module entry point.
  void add_context(const std::string& context) { message_ = context + ": " + message_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

#define SAES_DEFINE_ERROR(Name, code)                                    \
  class Name : public Error {                                             \
   public:                                                                \
    using Error::Error;                                                   \
    ExitCode exit_code() const override { return ExitCode::code; }        \
  }

SAES_DEFINE_ERROR(InternalError, kInternal);
SAES_DEFINE_ERROR(ConfigError, kConfig);
SAES_DEFINE_ERROR(DataError, kData);
SAES_DEFINE_ERROR(IoError, kData);
SAES_DEFINE_ERROR(DistributedError, kDistributed);
SAES_DEFINE_ERROR(UnsupportedError, kUnsupported);

#undef SAES_DEFINE_ERROR

}  // namespace saes

/// Throws `ErrorType(fmt::format(...))`.
#define SAES_THROW(ErrorType, ...) throw ErrorType(fmt::format(__VA_ARGS__))

/// User/data errors: `SAES_CHECK(x > 0, ConfigError, "trainer.lr: expected > 0, got {}", x)`.
/// The message is formatted only on failure.
#define SAES_CHECK(cond, ErrorType, ...)      \
  do {                                        \
    if (!(cond)) SAES_THROW(ErrorType, __VA_ARGS__); \
  } while (0)

/// Invariants (bugs): always on; throws InternalError with file:line. Never validates input.
#define SAES_ASSERT(cond, ...)                                                          \
  do {                                                                                  \
    if (!(cond))                                                                        \
      throw ::saes::InternalError(fmt::format("internal error at {}:{}: assertion '{}' failed: {}", \
                                              __FILE__, __LINE__, #cond,               \
                                              fmt::format(__VA_ARGS__)));               \
  } while (0)

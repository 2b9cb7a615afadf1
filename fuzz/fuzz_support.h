// Shared by the fuzz targets: inputs as files (the loaders take paths, as users give them) in a
// per-process folder under /dev/shm, and the one rule every target checks: an input is either
// accepted or refused with saes::Error; any other exception, crash or sanitizer report is a bug.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "saes/core/error.h"

namespace saes::fuzz {

/// Writes `size` bytes to <per-process dir>/<name> (replacing it) and returns the path.
inline std::filesystem::path write_input(const std::uint8_t* data, std::size_t size,
                                         const std::string& name) {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("SAES_FUZZ_TMP");
    std::filesystem::path d = std::filesystem::path(base ? base : "/dev/shm") /
                              ("saes-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  const std::filesystem::path path = dir / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

/// Runs `body`; saes::Error (a clean refusal) is fine, anything else aborts with the message.
/// SAES_FUZZ_VERBOSE=1 prints each refusal (to check that seeds are accepted).
template <typename Body>
void expect_clean(Body&& body) {
  static const bool verbose = std::getenv("SAES_FUZZ_VERBOSE") != nullptr;
  try {
    body();
    if (verbose) std::fprintf(stderr, "fuzz: accepted\n");
  } catch (const saes::Error& e) {
    if (verbose) std::fprintf(stderr, "fuzz: refused: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: non-saes exception escaped: %s\n", e.what());
    std::abort();
  }
}

}  // namespace saes::fuzz

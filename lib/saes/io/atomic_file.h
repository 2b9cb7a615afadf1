// Atomic file writes: content goes to `<name>.tmp.<pid>` in the same folder, is fsync'ed, then
// renamed over the target, so readers see the old file or the whole new one, never a partial one.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace saes::io {

/// Writes `contents` to `path` atomically; creates missing parent folders. Throws IoError naming the
/// path on failure (and leaves no temp file behind).
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

/// Streamed variant: write through `file()`, then `commit()`. Destroying without commit() removes
/// the temp file and leaves the target untouched.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Writes all bytes or throws IoError.
  void write(const void* data, std::size_t size);
  void write(std::string_view text) { write(text.data(), text.size()); }
  /// Flushes, fsyncs and renames onto the target. Throws IoError on failure.
  void commit();
  const std::filesystem::path& path() const { return path_; }
  const std::filesystem::path& temp_path() const { return temp_path_; }

 private:
  std::filesystem::path path_;
  std::filesystem::path temp_path_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

/// Removes `path` and, for a folder, everything below it (symbolic links are removed, not
/// followed); a missing path is not an error. Returns false and sets `ec` on failure. Use this,
/// not std::filesystem::remove_all: a pip PyTorch's libtorch.so (2.11) exports its own copy of
/// remove_all, our call binds to it at run time, and it crashes (a null call inside it).
bool remove_tree(const std::filesystem::path& path, std::error_code& ec) noexcept;

/// Reads a whole file; throws IoError naming the path if it is missing or unreadable.
std::string read_file(const std::filesystem::path& path);

}  // namespace saes::io

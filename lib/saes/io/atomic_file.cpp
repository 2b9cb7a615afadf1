// AtomicFile: temp file + fsync + rename.
#include "saes/io/atomic_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "saes/core/error.h"

namespace saes::io {

AtomicFile::AtomicFile(std::filesystem::path path) : path_(std::move(path)) {
  std::error_code ec;
  if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path(), ec);
  SAES_CHECK(!ec, IoError, "{}: cannot create folder {}: {}", path_.string(),
             path_.parent_path().string(), ec.message());
  temp_path_ = path_;
  temp_path_ += fmt::format(".tmp.{}", static_cast<long>(getpid()));
  file_ = std::fopen(temp_path_.c_str(), "wb");
  SAES_CHECK(file_ != nullptr, IoError, "{}: cannot open for writing: {}", temp_path_.string(),
             std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) std::fclose(file_);
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(temp_path_, ec);
  }
}

void AtomicFile::write(const void* data, std::size_t size) {
  SAES_ASSERT(file_ != nullptr, "write after commit on {}", path_.string());
  if (size == 0) return;
  std::size_t written = std::fwrite(data, 1, size, file_);
  SAES_CHECK(written == size, IoError, "{}: write failed ({} of {} bytes): {}", path_.string(),
             written, size, std::strerror(errno));
}

void AtomicFile::commit() {
  SAES_ASSERT(file_ != nullptr, "double commit on {}", path_.string());
  bool ok = std::fflush(file_) == 0 && fsync(fileno(file_)) == 0;
  int err = errno;
  ok = (std::fclose(file_) == 0) && ok;
  file_ = nullptr;
  SAES_CHECK(ok, IoError, "{}: flush failed: {}", path_.string(), std::strerror(err));
  SAES_CHECK(std::rename(temp_path_.c_str(), path_.c_str()) == 0, IoError,
             "{}: cannot rename from {}: {}", path_.string(), temp_path_.string(),
             std::strerror(errno));
  committed_ = true;
}

void write_file_atomic(const std::filesystem::path& path, std::string_view contents) {
  AtomicFile file(path);
  file.write(contents);
  file.commit();
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  SAES_CHECK(in.good(), IoError, "{}: cannot open: {}", path.string(),
             std::filesystem::exists(path) ? "permission denied or not a file" : "no such file");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  SAES_CHECK(!in.bad(), IoError, "{}: read failed", path.string());
  return buffer.str();
}

namespace {

/// POSIX recursion (no std::filesystem: see remove_tree in the header). Returns 0 or an errno.
int remove_tree_at(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT ? 0 : errno;
  if (!S_ISDIR(st.st_mode)) return ::unlink(path.c_str()) == 0 || errno == ENOENT ? 0 : errno;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return errno;
  int rc = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    rc = remove_tree_at(path + "/" + name);
    if (rc != 0) break;
  }
  ::closedir(dir);
  if (rc != 0) return rc;
  return ::rmdir(path.c_str()) == 0 || errno == ENOENT ? 0 : errno;
}

}  // namespace

bool remove_tree(const std::filesystem::path& path, std::error_code& ec) noexcept {
  ec.clear();
  if (path.empty()) return true;
  try {
    const int rc = remove_tree_at(path.string());
    if (rc != 0) ec.assign(rc, std::generic_category());
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return !ec;
}

}  // namespace saes::io

// MmapFile: open + fstat + mmap(MAP_PRIVATE) + close; munmap on destruction.
#include "saes/io/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "saes/core/error.h"

namespace saes::io {
namespace {

// Closes the descriptor when mapping is done (the mapping keeps the file referenced).
struct FdGuard {
  int fd;
  ~FdGuard() { ::close(fd); }
};

}  // namespace

MmapFile MmapFile::open(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SAES_CHECK(fd >= 0, IoError, "{}: cannot open for reading: {}", path.string(),
             std::strerror(errno));
  FdGuard guard{fd};
  struct stat st {};
  SAES_CHECK(::fstat(fd, &st) == 0, IoError, "{}: cannot stat: {}", path.string(),
             std::strerror(errno));
  SAES_CHECK(S_ISREG(st.st_mode), IoError, "{}: not a regular file", path.string());
  auto size = static_cast<std::size_t>(st.st_size);
  if (size == 0) return MmapFile(path, nullptr, 0);
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  SAES_CHECK(addr != MAP_FAILED, IoError, "{}: cannot map {} bytes: {}", path.string(), size,
             std::strerror(errno));
  return MmapFile(path, static_cast<std::byte*>(addr), size);
}

MmapFile::MmapFile(std::filesystem::path path, std::byte* data, std::size_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

MmapFile::MmapFile(MmapFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MmapFile& MmapFile::operator=(MmapFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MmapFile::~MmapFile() { release(); }

void MmapFile::release() noexcept {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace saes::io

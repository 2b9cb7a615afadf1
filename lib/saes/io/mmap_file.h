// MmapFile: RAII memory mapping of a whole file for reading (copy-on-write, see below).
// Parsing what is inside (safetensors, chunks) is left to the format readers.
#pragma once

#include <cstddef>
#include <filesystem>

namespace saes::io {

/// Maps a whole file privately (MAP_PRIVATE, PROT_READ|PROT_WRITE): reads come straight from the
/// page cache, and a write through data() makes a private copy of the page and never reaches the
/// file. An empty file maps to data() == nullptr, size() == 0. Move-only.
class MmapFile {
 public:
  /// Opens and maps `path`; throws IoError naming the path if it is missing, not a regular file,
  /// or cannot be mapped.
  static MmapFile open(const std::filesystem::path& path);

  MmapFile(MmapFile&& other) noexcept;
  MmapFile& operator=(MmapFile&& other) noexcept;
  MmapFile(const MmapFile&) = delete;
  MmapFile& operator=(const MmapFile&) = delete;
  ~MmapFile();

  /// First byte of the mapping (page-aligned), or nullptr for an empty file.
  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MmapFile(std::filesystem::path path, std::byte* data, std::size_t size);
  void release() noexcept;

  std::filesystem::path path_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace saes::io

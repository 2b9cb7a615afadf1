// One shard file (docs/shard-format.md §2): a 32-byte header, a JSON directory of sections, and the
// section payloads, each split into independent frames (optionally byte-shuffled + zstd) carrying
// checksums of their stored and raw bytes (CRC-32C; XXH64 in file version 1). Knows nothing about
// hooks or manifests (shard_format.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "saes/core/dtype.h"

namespace saes::io {

inline constexpr std::string_view kShardMagic = "SAESHARD";
/// The version written. Version 1 files (XXH64 frame checksums, zstd-shuffle frames as one zstd
/// frame) are still read.
inline constexpr std::uint32_t kShardFileVersion = 2;
inline constexpr std::size_t kShardHeaderBytes = 32;
inline constexpr std::size_t kShardAlignment = 64;

/// How a section's frames are stored: "raw", "zstd", "zstd-shuffle" (byte shuffle, then zstd).
enum class ShardCodec { kRaw, kZstd, kZstdShuffle };
std::string_view shard_codec_name(ShardCodec codec);
std::optional<ShardCodec> try_parse_shard_codec(std::string_view text);

struct ShardEncodeOptions {
  ShardCodec codec = ShardCodec::kZstdShuffle;
  int zstd_level = 1;  ///< level 3 compressed no better at half the write speed (bench_shard_io)
  std::size_t frame_bytes = std::size_t{1} << 20;  ///< raw bytes per frame (rounded to elements)
  int threads = 1;                                 ///< frames compressed in parallel
};

/// An array to store; `data` (not owned) holds prod(shape) * dtype_size(dtype) contiguous bytes.
struct SectionData {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;
};

/// One frame of a section. Checksums are CRC-32C from file version 2, XXH64 in version 1.
struct FrameInfo {
  std::uint64_t stored_bytes = 0;
  std::uint64_t stored_checksum = 0;  ///< of the stored (compressed) bytes
  std::uint64_t raw_checksum = 0;     ///< of the raw (decoded, unshuffled) bytes
  /// zstd-shuffle from version 2: the stored size of each byte plane, least significant first; a
  /// plane is a zstd frame, or stored raw when its size equals the frame's element count.
  std::vector<std::uint64_t> plane_bytes;
  std::uint64_t stored_offset = 0;  ///< from the section's offset (filled in when parsing)
};

struct SectionInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> shape;
  ShardCodec codec = ShardCodec::kRaw;
  std::uint64_t offset = 0;  ///< from the start of the data area
  std::uint64_t stored_bytes = 0;
  std::uint64_t raw_bytes = 0;
  std::uint64_t frame_bytes = 0;
  std::vector<FrameInfo> frames;
};

/// Size and manifest checksum (XXH64 of header + directory) of a written shard file.
struct ShardFileSummary {
  std::uint64_t bytes = 0;
  std::uint64_t checksum = 0;
};

/// Encodes `sections` and writes them atomically (temp + fsync + rename) to `path`.
ShardFileSummary write_shard_file(const std::filesystem::path& path, std::int64_t n_rows,
                                  const std::vector<SectionData>& sections,
                                  const ShardEncodeOptions& options);

/// Per-thread decoding state (a zstd context and an unshuffle buffer), reused across frames and
/// files. Not shared between threads.
class FrameDecoder {
 public:
  FrameDecoder();
  ~FrameDecoder();
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

 private:
  friend class ShardFile;
  struct State;
  std::unique_ptr<State> state_;
};

/// A shard file read into memory with its directory parsed and checked.
class ShardFile {
 public:
  /// Maps `path` read-only (pre-faulted; shard files are never modified in place); checks magic,
  /// version, directory checksum and that the file is exactly as long as its directory says. Throws
  /// IoError (unreadable) or DataError naming the file.
  static ShardFile load(const std::filesystem::path& path);
  /// Same checks on bytes already in memory; `name` is used in errors.
  static ShardFile parse(std::string_view bytes, std::string name);

  const std::string& name() const { return name_; }
  /// File version from the header (1 or 2).
  std::uint32_t version() const { return version_; }
  std::int64_t n_rows() const { return n_rows_; }
  std::uint64_t size_bytes() const { return size_; }
  /// File offset of the data area (section offsets are relative to it).
  std::uint64_t data_offset() const { return data_offset_; }
  /// XXH64 of header + directory, as recorded in the manifest.
  std::uint64_t checksum() const { return checksum_; }
  const std::vector<SectionInfo>& sections() const { return sections_; }
  /// Section by name, nullptr when absent.
  const SectionInfo* find(std::string_view section) const;

  /// One decode job: section → `out` (section.raw_bytes writable bytes).
  struct DecodeTarget {
    const SectionInfo* section;
    void* out;
  };
  /// One frame of a decode job: frame `frame` of targets[target]. Frames are independent.
  struct FrameTask {
    std::size_t target;
    std::size_t frame;
  };
  /// Lists the frames of `targets` (file order) and asks for huge pages on large outputs.
  std::vector<FrameTask> prepare_decode(const std::vector<DecodeTarget>& targets) const;
  /// Decodes one frame into its target: checks the frame's stored checksum before decompressing,
  /// the decoded size, and, with `verify_decoded`, the checksum of the decoded bytes. Throws
  /// DataError naming file, section and frame.
  void decode_frame(const DecodeTarget& target, std::size_t frame, FrameDecoder& decoder,
                    bool verify_decoded) const;
  /// All frames of `targets` on `threads` threads (decode_frame each).
  void decode(const std::vector<DecodeTarget>& targets, int threads,
              bool verify_decoded = false) const;

 private:
  ShardFile() = default;
  // Validates header and directory of data_[0, size_).
  void parse_layout();

  std::string name_;
  std::uint32_t version_ = kShardFileVersion;
  std::shared_ptr<const void> owner_;  // the mapping or heap copy behind data_
  const char* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::int64_t n_rows_ = 0;
  std::uint64_t data_offset_ = 0;
  std::uint64_t checksum_ = 0;
  std::vector<SectionInfo> sections_;
};

}  // namespace saes::io

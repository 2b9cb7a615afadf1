// Checksums for shard integrity, written from the published algorithms so no extra library is
// needed: XXH64 (the xxHash 64-bit digest, seed 0 by default; shard file version 1, manifests) and
// CRC-32C (frames from shard file version 2), one-shot and streaming. Hex helpers for JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace saes::io {

/// XXH64 of `size` bytes at `data`. Identical to `xxhsum -H64` / `XXH64(data, size, seed)`.
std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed = 0);

/// Streaming XXH64: update() with pieces of any size in order, then digest() equals xxh64() of the
/// concatenation. Lets a reader hash a block while it is still in L1 (e.g. right after
/// unshuffling).
class Xxh64 {
 public:
  explicit Xxh64(std::uint64_t seed = 0);
  void update(const void* data, std::size_t size);
  /// Digest of everything passed so far (the state is unchanged; more updates may follow).
  std::uint64_t digest() const;

 private:
  std::uint64_t lanes_[4];
  std::uint64_t seed_;
  std::uint64_t total_ = 0;
  unsigned char buffer_[32] = {};
  std::size_t buffered_ = 0;
};

/// CRC-32C (Castagnoli polynomial 0x1EDC6F41, bit-reflected, initial value and final xor
/// 0xFFFFFFFF: the CRC of iSCSI, ext4 and SCTP) of `size` bytes. Pass a previous result as `crc` to
/// continue it: crc32c(b, m, crc32c(a, n)) == crc32c of the n + m bytes. Runs the CPU's CRC-32C
/// instruction (SSE4.2 on x86-64, the CRC extension on aarch64) on three interleaved streams where
/// it has one (~2.4x XXH64), else the portable form below.
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0);
/// The same CRC-32C with 8-byte table lookups and no CPU extension (the fallback; also what tests
/// check the accelerated form against).
std::uint32_t crc32c_portable(const void* data, std::size_t size, std::uint32_t crc = 0);
/// Whether crc32c() runs on the CPU's CRC-32C instruction here.
bool crc32c_accelerated();

/// `digits` (16 or 8) lower-case hex digits, most significant first (as xxhsum prints).
std::string checksum_hex(std::uint64_t digest, int digits = 16);
/// Parses exactly `digits` hex digits; nullopt otherwise.
std::optional<std::uint64_t> try_parse_checksum_hex(std::string_view text, int digits = 16);

}  // namespace saes::io

// XXH64 (the xxHash 64-bit digest, seed 0 by default) for shard integrity checks, written from the
// published algorithm so no extra library is needed: one-shot and streaming. Hex helpers for JSON.
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

/// 16 lower-case hex digits, most significant first (as xxhsum prints).
std::string checksum_hex(std::uint64_t digest);
/// Parses exactly 16 hex digits; nullopt otherwise.
std::optional<std::uint64_t> try_parse_checksum_hex(std::string_view text);

}  // namespace saes::io

// XXH64 (the xxHash 64-bit digest, seed 0 by default) for shard integrity checks, written from the
// published algorithm so no extra library is needed. Hex helpers for storing digests in JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace saes::io {

/// XXH64 of `size` bytes at `data`. Identical to `xxhsum -H64` / `XXH64(data, size, seed)`.
std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed = 0);

/// 16 lower-case hex digits, most significant first (as xxhsum prints).
std::string checksum_hex(std::uint64_t digest);
/// Parses exactly 16 hex digits; nullopt otherwise.
std::optional<std::uint64_t> try_parse_checksum_hex(std::string_view text);

}  // namespace saes::io

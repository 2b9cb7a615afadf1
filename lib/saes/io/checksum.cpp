// XXH64 from the xxHash specification (doc/xxhash_spec.md): 4 lanes of 8-byte rounds over 32-byte
// stripes, then the tail and the final avalanche; the streaming form buffers a partial stripe.
// Little-endian loads (all supported hosts are LE).
#include "saes/io/checksum.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace saes::io {
namespace {

constexpr std::uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr std::uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr std::uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr std::uint64_t kPrime4 = 0x85EBCA77C2B2AE63ULL;
constexpr std::uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;

static_assert(std::endian::native == std::endian::little,
              "shard checksums assume a little-endian host");

std::uint64_t load64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

std::uint32_t load32(const unsigned char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

std::uint64_t round(std::uint64_t acc, std::uint64_t input) {
  acc += input * kPrime2;
  acc = std::rotl(acc, 31);
  return acc * kPrime1;
}

std::uint64_t merge_round(std::uint64_t acc, std::uint64_t lane) {
  acc ^= round(0, lane);
  return acc * kPrime1 + kPrime4;
}

void init_lanes(std::uint64_t (&lanes)[4], std::uint64_t seed) {
  lanes[0] = seed + kPrime1 + kPrime2;
  lanes[1] = seed + kPrime2;
  lanes[2] = seed;
  lanes[3] = seed - kPrime1;
}

// The 32-byte stripe loop: each lane takes one 8-byte word per stripe.
void consume_stripes(std::uint64_t (&lanes)[4], const unsigned char* p, std::size_t n_stripes) {
  std::uint64_t v1 = lanes[0], v2 = lanes[1], v3 = lanes[2], v4 = lanes[3];
  for (const unsigned char* end = p + n_stripes * 32; p != end; p += 32) {
    v1 = round(v1, load64(p));
    v2 = round(v2, load64(p + 8));
    v3 = round(v3, load64(p + 16));
    v4 = round(v4, load64(p + 24));
  }
  lanes[0] = v1;
  lanes[1] = v2;
  lanes[2] = v3;
  lanes[3] = v4;
}

std::uint64_t merge_lanes(const std::uint64_t (&lanes)[4]) {
  std::uint64_t h = std::rotl(lanes[0], 1) + std::rotl(lanes[1], 7) + std::rotl(lanes[2], 12) +
                    std::rotl(lanes[3], 18);
  for (auto lane : lanes) h = merge_round(h, lane);
  return h;
}

// Adds the total length, consumes the < 32 tail bytes at p and applies the final avalanche.
std::uint64_t finish(std::uint64_t h, const unsigned char* p, std::size_t tail,
                     std::uint64_t total) {
  const unsigned char* const end = p + tail;
  h += total;
  for (; p + 8 <= end; p += 8) {
    h ^= round(0, load64(p));
    h = std::rotl(h, 27) * kPrime1 + kPrime4;
  }
  if (p + 4 <= end) {
    h ^= static_cast<std::uint64_t>(load32(p)) * kPrime1;
    h = std::rotl(h, 23) * kPrime2 + kPrime3;
    p += 4;
  }
  for (; p < end; ++p) {
    h ^= static_cast<std::uint64_t>(*p) * kPrime5;
    h = std::rotl(h, 11) * kPrime1;
  }
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

}  // namespace

std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  if (size < 32) return finish(seed + kPrime5, p, size, size);
  std::uint64_t lanes[4];
  init_lanes(lanes, seed);
  std::size_t stripes = size / 32;
  consume_stripes(lanes, p, stripes);
  return finish(merge_lanes(lanes), p + stripes * 32, size % 32, size);
}

Xxh64::Xxh64(std::uint64_t seed) : seed_(seed) { init_lanes(lanes_, seed); }

void Xxh64::update(const void* data, std::size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  total_ += size;
  if (buffered_ > 0) {
    std::size_t take = std::min(size, sizeof(buffer_) - buffered_);
    std::memcpy(buffer_ + buffered_, p, take);
    buffered_ += take;
    p += take;
    size -= take;
    if (buffered_ < sizeof(buffer_)) return;
    consume_stripes(lanes_, buffer_, 1);
    buffered_ = 0;
  }
  std::size_t stripes = size / 32;
  consume_stripes(lanes_, p, stripes);
  buffered_ = size % 32;
  std::memcpy(buffer_, p + stripes * 32, buffered_);
}

std::uint64_t Xxh64::digest() const {
  std::uint64_t h = total_ >= 32 ? merge_lanes(lanes_) : seed_ + kPrime5;
  return finish(h, buffer_, buffered_, total_);
}

std::string checksum_hex(std::uint64_t digest) { return fmt::format("{:016x}", digest); }

std::optional<std::uint64_t> try_parse_checksum_hex(std::string_view text) {
  if (text.size() != 16) return std::nullopt;
  std::uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace saes::io

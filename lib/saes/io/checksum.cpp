// XXH64 from the xxHash specification (doc/xxhash_spec.md): 4 lanes of 8-byte rounds over 32-byte
// stripes, then the tail and the final avalanche; the streaming form buffers a partial stripe.
// CRC-32C from its polynomial: slicing-by-8 tables, and where the CPU has a CRC-32C instruction
// (SSE4.2 on x86-64, the CRC extension on aarch64) that instruction on three streams at once (its
// ~3-cycle latency would otherwise leave the unit two thirds idle), joined by multiplying each
// stream's register by x^(8·distance) mod P.
// Little-endian loads (all supported hosts are LE).
#include "saes/io/checksum.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define SAES_CRC32C_HARDWARE 1
#define SAES_CRC32C_TARGET __attribute__((target("sse4.2")))
#elif defined(__aarch64__)
#include <arm_acle.h>
#include <asm/hwcap.h>
#include <sys/auxv.h>
#define SAES_CRC32C_HARDWARE 1
#define SAES_CRC32C_TARGET __attribute__((target("+crc")))
#endif

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

namespace {

// CRC-32C works on bit-reflected polynomials: bit 31 of a register is the coefficient of x^0 and
// bit 0 that of x^31. Feeding the register one zero byte multiplies it by x^8 mod P, so the
// register after bytes A then B is reg(A)·x^(8|B|) + reg_from_zero(B).
constexpr std::uint32_t kCrc32cPoly = 0x82F63B78;  // 0x1EDC6F41 reflected

struct Crc32cTables {
  std::uint32_t t[8][256];  // t[k][b]: register of byte b followed by k zero bytes
  Crc32cTables() {
    for (std::uint32_t b = 0; b < 256; ++b) {
      std::uint32_t c = b;
      for (int i = 0; i < 8; ++i) c = (c & 1) ? (c >> 1) ^ kCrc32cPoly : c >> 1;
      t[0][b] = c;
    }
    for (int k = 1; k < 8; ++k) {
      for (int b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
    }
  }
};

const Crc32cTables& crc32c_tables() {
  static const Crc32cTables tables;
  return tables;
}

std::uint32_t crc32c_register_portable(std::uint32_t reg, const unsigned char* p, std::size_t n) {
  const auto& t = crc32c_tables().t;
  for (; n >= 8; n -= 8, p += 8) {
    const std::uint64_t x = load64(p) ^ reg;
    reg = t[7][x & 0xFF] ^ t[6][(x >> 8) & 0xFF] ^ t[5][(x >> 16) & 0xFF] ^ t[4][(x >> 24) & 0xFF] ^
          t[3][(x >> 32) & 0xFF] ^ t[2][(x >> 40) & 0xFF] ^ t[1][(x >> 48) & 0xFF] ^ t[0][x >> 56];
  }
  for (; n > 0; --n, ++p) reg = (reg >> 8) ^ t[0][(reg ^ *p) & 0xFF];
  return reg;
}

#if SAES_CRC32C_HARDWARE

// The CPU's CRC-32C steps on a register: 8 bytes, or one.
SAES_CRC32C_TARGET inline std::uint32_t crc_step8(std::uint32_t reg, std::uint64_t v) {
#if defined(__x86_64__)
  return static_cast<std::uint32_t>(_mm_crc32_u64(reg, v));
#else
  return __crc32cd(reg, v);
#endif
}

SAES_CRC32C_TARGET inline std::uint32_t crc_step1(std::uint32_t reg, unsigned char v) {
#if defined(__x86_64__)
  return _mm_crc32_u8(reg, v);
#else
  return __crc32cb(reg, v);
#endif
}

// a·b mod P on reflected registers, one bit of a at a time (only used to build tables).
std::uint32_t multiply_mod_p(std::uint32_t a, std::uint32_t b) {
  std::uint32_t product = 0;
  for (int i = 0; i < 32; ++i) {
    if (a & (0x80000000u >> i)) product ^= b;
    b = (b & 1) ? (b >> 1) ^ kCrc32cPoly : b >> 1;  // b·x
  }
  return product;
}

// Multiplication of a register by the constant x^(8·bytes) mod P, as four byte-indexed tables
// (the product is linear in the register's bits).
struct Crc32cShift {
  std::uint32_t t[4][256];
  explicit Crc32cShift(std::uint64_t bytes) {
    std::uint32_t power = 0x80000000u;   // x^0
    std::uint32_t square = 0x00800000u;  // x^8
    for (std::uint64_t e = bytes; e != 0; e >>= 1) {
      if (e & 1) power = multiply_mod_p(power, square);
      square = multiply_mod_p(square, square);
    }
    for (int j = 0; j < 4; ++j) {
      for (std::uint32_t b = 0; b < 256; ++b) t[j][b] = multiply_mod_p(power, b << (8 * j));
    }
  }
  std::uint32_t operator()(std::uint32_t reg) const {
    return t[0][reg & 0xFF] ^ t[1][(reg >> 8) & 0xFF] ^ t[2][(reg >> 16) & 0xFF] ^ t[3][reg >> 24];
  }
};

// Rounds of three streams of `block` bytes each while 3·block bytes are left: the instruction's
// latency is ~3 cycles and its throughput one per cycle, so one stream would leave it idle.
template <std::size_t block>
SAES_CRC32C_TARGET std::uint32_t crc32c_rounds(std::uint32_t reg, const unsigned char*& p,
                                               std::size_t& n) {
  static const Crc32cShift one(block), two(2 * block);
  for (; n >= 3 * block; n -= 3 * block, p += 3 * block) {
    std::uint32_t a = reg, b = 0, c = 0;
    for (std::size_t i = 0; i < block; i += 8) {
      a = crc_step8(a, load64(p + i));
      b = crc_step8(b, load64(p + block + i));
      c = crc_step8(c, load64(p + 2 * block + i));
    }
    reg = two(a) ^ one(b) ^ c;
  }
  return reg;
}

SAES_CRC32C_TARGET std::uint32_t crc32c_register_hardware(std::uint32_t reg, const unsigned char* p,
                                                          std::size_t n) {
  reg = crc32c_rounds<4096>(reg, p, n);
  reg = crc32c_rounds<128>(reg, p, n);
  for (; n >= 8; n -= 8, p += 8) reg = crc_step8(reg, load64(p));
  for (; n > 0; --n, ++p) reg = crc_step1(reg, *p);
  return reg;
}

#endif

}  // namespace

bool crc32c_accelerated() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
#elif defined(__aarch64__)
  static const bool has = (::getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
  return has;
#else
  return false;
#endif
}

std::uint32_t crc32c_portable(const void* data, std::size_t size, std::uint32_t crc) {
  return ~crc32c_register_portable(~crc, static_cast<const unsigned char*>(data), size);
}

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) {
#if SAES_CRC32C_HARDWARE
  if (crc32c_accelerated())
    return ~crc32c_register_hardware(~crc, static_cast<const unsigned char*>(data), size);
#endif
  return crc32c_portable(data, size, crc);
}

std::string checksum_hex(std::uint64_t digest, int digits) {
  return fmt::format("{:0{}x}", digest, digits);
}

std::optional<std::uint64_t> try_parse_checksum_hex(std::string_view text, int digits) {
  if (text.size() != static_cast<std::size_t>(digits)) return std::nullopt;
  std::uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace saes::io

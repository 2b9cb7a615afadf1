// Tests of the activation shard format: checksum and shuffle primitives, bit-exact write → read
// round trips with position-encoding data, shard order/slicing, resume, merging, and corruption.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <set>

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/randn.h>
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/byte_shuffle.h"
#include "saes/io/checksum.h"
#include "saes/io/shard_buffers.h"
#include "saes/io/shard_file.h"
#include "saes/io/shard_reader.h"
#include "saes/io/shard_writer.h"

#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace saes;
using namespace saes::io;

constexpr std::int64_t kDModel = 24;
constexpr std::int64_t kContext = 6;
const std::vector<std::string> kHooks = {"blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"};

ShardWriterOptions options_for(const fs::path& dir, DType dtype, ShardTarget target) {
  ShardWriterOptions o;
  o.dir = dir;
  o.model_name = "test-model";
  o.hook_points = kHooks;
  o.dtype = dtype;
  o.d_model = kDModel;
  o.target = target;
  o.context_size = target == ShardTarget::kActivations2d ? kContext : 0;
  o.rows_per_shard = 30;
  o.encode.frame_bytes = 512;  // several frames per section
  o.created_by = "saes tests";
  o.config_yaml = "model: test\n";
  return o;
}

// Activation value encoding (row, hook, token, column); exact in bf16 (k/4 with |k| < 256).
float encoded_value(std::int64_t row, std::size_t hook, std::int64_t t, std::int64_t col) {
  auto k = (row * 37 + static_cast<std::int64_t>(hook) * 11 + t * 5 + col * 3) % 251 - 125;
  return static_cast<float>(k) / 4.0f;
}

at::Tensor long_tensor(std::vector<std::int64_t> shape) {
  return at::empty(shape, at::TensorOptions().dtype(at::kLong));
}

// Rows [first, first + n) of a run; the row id is the doc_index, so every value can be recomputed.
ShardBatch make_batch(std::int64_t first, std::int64_t n, bool two_d) {
  ShardBatch b;
  std::int64_t t_count = two_d ? kContext : 1;
  b.tokens = two_d ? long_tensor({n, kContext}) : long_tensor({n});
  b.doc_index = long_tensor({n});
  b.position = long_tensor({n});
  if (two_d) b.mask = at::empty({n, kContext}, at::TensorOptions().dtype(at::kBool));
  for (std::int64_t r = 0; r < n; ++r) {
    std::int64_t row = first + r;
    b.doc_index.data_ptr<std::int64_t>()[r] = row;
    b.position.data_ptr<std::int64_t>()[r] = row % 97;
    for (std::int64_t t = 0; t < t_count; ++t) {
      b.tokens.data_ptr<std::int64_t>()[r * t_count + t] = 1000000 + row * 8 + t;
      if (two_d) b.mask.data_ptr<bool>()[r * kContext + t] = (row + t) % 3 != 0;
    }
  }
  for (std::size_t h = 0; h < kHooks.size(); ++h) {
    at::Tensor act = two_d ? at::empty({n, kContext, kDModel}) : at::empty({n, kDModel});
    float* p = act.data_ptr<float>();
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t t = 0; t < t_count; ++t)
        for (std::int64_t c = 0; c < kDModel; ++c)
          p[(r * t_count + t) * kDModel + c] = encoded_value(first + r, h, t, c);
    b.activations[kHooks[h]] = act;
  }
  return b;
}

// Writes rows [0, n_rows) in uneven batches of 17 and finishes the run.
ShardManifest write_run(const ShardWriterOptions& o, std::int64_t n_rows) {
  ShardWriter writer = ShardWriter::create(o);
  bool two_d = o.target == ShardTarget::kActivations2d;
  for (std::int64_t first = 0; first < n_rows; first += 17)
    writer.append(make_batch(first, std::min<std::int64_t>(17, n_rows - first), two_d));
  writer.finish();
  return writer.manifest();
}

std::vector<ShardBatch> read_all(const fs::path& dir, ShardReadOptions options = {}) {
  Logger logger(LogLevel::kOff);
  ShardStream stream(ShardReader::open(dir), std::move(options), logger);
  std::vector<ShardBatch> out;
  while (auto batch = stream.next()) out.push_back(std::move(*batch));
  return out;
}

// Every batch equals what make_batch produces for its row ids (bitwise, after the storage cast).
void require_batches_match(const std::vector<ShardBatch>& batches, DType dtype, bool two_d,
                           std::int64_t n_rows) {
  std::multiset<std::int64_t> seen;
  for (const auto& b : batches) {
    for (std::int64_t r = 0; r < b.n_rows(); ++r) {
      std::int64_t row = b.doc_index.data_ptr<std::int64_t>()[r];
      seen.insert(row);
      ShardBatch expected = make_batch(row, 1, two_d);
      REQUIRE(at::equal(b.tokens.narrow(0, r, 1), expected.tokens));
      REQUIRE(at::equal(b.position.narrow(0, r, 1), expected.position));
      if (two_d) REQUIRE(at::equal(b.mask.narrow(0, r, 1), expected.mask));
      for (const auto& hook : kHooks) {
        REQUIRE(b.activations.at(hook).scalar_type() == to_torch(dtype));
        REQUIRE(at::equal(b.activations.at(hook).narrow(0, r, 1),
                          expected.activations.at(hook).to(to_torch(dtype))));
      }
    }
  }
  REQUIRE(static_cast<std::int64_t>(seen.size()) == n_rows);
  for (std::int64_t row = 0; row < n_rows; ++row) REQUIRE(seen.count(row) == 1);
}

void flip_byte(const fs::path& path, std::uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// Writes one shard of 200 rows of N(0, 1) activations in `dtype` (frames of `frame_bytes`) and
// returns the batch written.
ShardBatch write_gaussian_run(const fs::path& dir, DType dtype, std::size_t frame_bytes) {
  auto o = options_for(dir, dtype, ShardTarget::kActivations1d);
  o.rows_per_shard = 1000;
  o.encode.frame_bytes = frame_bytes;
  ShardWriter writer = ShardWriter::create(o);
  ShardBatch b = make_batch(0, 200, false);
  for (auto& [hook, t] : b.activations) t = at::randn({200, kDModel});
  writer.append(b);
  writer.finish();
  return b;
}

// Reads the run back as float32 (both checksums) and requires the written values after the
// storage cast.
void require_gaussian_read(const fs::path& dir, const ShardBatch& written, DType dtype) {
  auto batches = read_all(dir, {.dtype = DType::kFloat32, .verify_decoded_checksums = true});
  REQUIRE(batches.size() == 1);
  for (const auto& hook : kHooks)
    REQUIRE(at::equal(batches[0].activations.at(hook),
                      written.activations.at(hook).to(to_torch(dtype)).to(at::kFloat)));
}

// Recomputes the directory checksum in a shard file's header after an edit of its directory
// that kept its length; returns the directory's size.
std::uint64_t reseal_directory(std::string& bytes) {
  std::uint64_t dir_bytes = 0;
  std::memcpy(&dir_bytes, bytes.data() + 16, 8);
  const std::uint64_t dir_checksum = xxh64(bytes.data() + kShardHeaderBytes, dir_bytes);
  std::memcpy(bytes.data() + 24, &dir_checksum, 8);
  return dir_bytes;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("xxh64 matches the reference xxHash digests", "[shards]") {
  std::vector<unsigned char> bytes(100);
  std::iota(bytes.begin(), bytes.end(), 0);
  CHECK(xxh64("", 0) == 0xef46db3751d8e999ULL);
  CHECK(xxh64("abc", 3) == 0x44bc2cf5ad770999ULL);
  CHECK(xxh64(bytes.data(), 100) == 0x6ac1e58032166597ULL);
  CHECK(xxh64(bytes.data(), 37, 7) == 0x69e0c889396afaf7ULL);
  CHECK(checksum_hex(0x00ab) == "00000000000000ab");
  CHECK(try_parse_checksum_hex("6ac1e58032166597") == 0x6ac1e58032166597ULL);
  CHECK_FALSE(try_parse_checksum_hex("6ac1e5803216659").has_value());
}

TEST_CASE("streaming xxh64 gives the one-shot digest however the input is split", "[shards]") {
  std::vector<unsigned char> bytes(1000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 97 + 5);
  for (std::size_t size : {0, 3, 31, 32, 33, 100, 1000}) {
    for (std::size_t piece : {1, 7, 31, 32, 33, 64, 1000}) {
      Xxh64 digest(size % 2 == 0 ? 0 : 7);
      for (std::size_t at = 0; at < size; at += piece)
        digest.update(bytes.data() + at, std::min(piece, size - at));
      REQUIRE(digest.digest() == xxh64(bytes.data(), size, size % 2 == 0 ? 0 : 7));
    }
  }
  Xxh64 abc;
  abc.update("ab", 2);
  abc.update("c", 1);
  CHECK(abc.digest() == 0x44bc2cf5ad770999ULL);
}

TEST_CASE("crc32c matches the published CRC-32C check values", "[shards]") {
  // The CRC catalogue's check value, and RFC 3720 (iSCSI) appendix B.4's 32-byte vectors.
  for (auto* fn : {&crc32c, &crc32c_portable}) {
    CHECK(fn("", 0, 0) == 0u);
    CHECK(fn("123456789", 9, 0) == 0xE3069283u);
    std::vector<unsigned char> v(32, 0x00);
    CHECK(fn(v.data(), 32, 0) == 0x8A9136AAu);
    std::fill(v.begin(), v.end(), 0xFF);
    CHECK(fn(v.data(), 32, 0) == 0x62A8AB43u);
    std::iota(v.begin(), v.end(), 0);
    CHECK(fn(v.data(), 32, 0) == 0x46DD794Eu);
    for (int i = 0; i < 32; ++i) v[i] = static_cast<unsigned char>(31 - i);
    CHECK(fn(v.data(), 32, 0) == 0x113FDB5Cu);
  }
  CHECK(checksum_hex(0xE3069283u, 8) == "e3069283");
  CHECK(try_parse_checksum_hex("e3069283", 8) == 0xE3069283u);
  CHECK_FALSE(try_parse_checksum_hex("e3069283", 16).has_value());
}

TEST_CASE("crc32c agrees with its portable form at every length, offset and split", "[shards]") {
  INFO("CPU instruction in use: " << crc32c_accelerated());
  std::vector<unsigned char> bytes(3 * 4096 * 2 + 3 * 128 * 3 + 29);
  std::uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (auto& b : bytes) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    b = static_cast<unsigned char>(x >> 56);
  }
  // Lengths around the 3 x 4096 and 3 x 128 rounds and the 8-byte tail, from odd offsets.
  for (std::size_t size : {0, 1, 7, 8, 9, 383, 384, 385, 1000, 12287, 12288, 12289, 25000}) {
    for (std::size_t offset : {0, 1, 5}) {
      if (offset + size > bytes.size()) continue;
      const std::uint32_t expected = crc32c_portable(bytes.data() + offset, size);
      REQUIRE(crc32c(bytes.data() + offset, size) == expected);
      for (std::size_t cut : {std::size_t{0}, size / 3, size}) {
        const std::uint32_t first = crc32c(bytes.data() + offset, cut);
        REQUIRE(crc32c(bytes.data() + offset + cut, size - cut, first) == expected);
        REQUIRE(crc32c_portable(bytes.data() + offset + cut, size - cut,
                                crc32c_portable(bytes.data() + offset, cut)) == expected);
      }
    }
  }
}

TEST_CASE("unshuffling planes held apart piece by piece equals unshuffling at once", "[shards]") {
  for (std::size_t s : {1, 2, 3, 4, 8}) {
    const std::size_t n = 5003;
    std::vector<unsigned char> in(n * s), whole(n * s), pieces(n * s);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<unsigned char>(i * 131 + i / 7);
    byte_unshuffle(in.data(), whole.data(), n, s);
    // The same planes held apart, in reverse order in memory.
    std::vector<unsigned char> apart(n * s);
    std::vector<const unsigned char*> planes(s);
    for (std::size_t j = 0; j < s; ++j) {
      std::copy_n(in.data() + j * n, n, apart.data() + (s - 1 - j) * n);
      planes[j] = apart.data() + (s - 1 - j) * n;
    }
    for (std::size_t first = 0; first < n; first += 777)
      byte_unshuffle_planes(planes.data(), pieces.data(), s, first,
                            std::min<std::size_t>(777, n - first));
    REQUIRE(pieces == whole);
  }
}

TEST_CASE("byte shuffle groups bytes by significance and unshuffle inverts it", "[shards]") {
  for (std::size_t s : {1, 2, 3, 4, 8}) {
    const std::size_t n = 5003;
    std::vector<unsigned char> in(n * s), shuffled(n * s), back(n * s);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<unsigned char>(i * 131 + i / 7);
    byte_shuffle(in.data(), shuffled.data(), n, s);
    for (std::size_t i = 0; i < n; i += 501)
      for (std::size_t j = 0; j < s; ++j) REQUIRE(shuffled[j * n + i] == in[i * s + j]);
    byte_unshuffle(shuffled.data(), back.data(), n, s);
    REQUIRE(back == in);
  }
}

TEST_CASE("shard runs round-trip bit-exact for every storage dtype, target and codec", "[shards]") {
  auto dtype = GENERATE(DType::kFloat32, DType::kFloat16, DType::kBFloat16);
  auto target = GENERATE(ShardTarget::kActivations1d, ShardTarget::kActivations2d);
  auto codec = GENERATE(ShardCodec::kZstdShuffle, ShardCodec::kZstd, ShardCodec::kRaw);
  testing::TempDir dir;
  auto o = options_for(dir.path(), dtype, target);
  o.encode.codec = codec;
  ShardManifest m = write_run(o, 100);
  REQUIRE(m.shards.size() == 4);  // 30 + 30 + 30 + 10
  REQUIRE(m.shards.back().n_rows == 10);
  REQUIRE(m.complete);
  bool two_d = target == ShardTarget::kActivations2d;
  REQUIRE(m.n_tokens() == 100 * (two_d ? kContext : 1));
  REQUIRE(load_manifest(dir.path() / "manifest.json") == m);
  auto batches = read_all(dir.path(), {.decode_threads = 3});
  REQUIRE(batches.front().shard == "shard-r000-000000.saes");
  require_batches_match(batches, dtype, two_d, 100);
}

TEST_CASE("gaussian activations round-trip bit-exact through the zstd-shuffle codec", "[shards]") {
  testing::TempDir dir;
  const ShardBatch b = write_gaussian_run(dir.path(), DType::kBFloat16, std::size_t{1} << 20);
  require_gaussian_read(dir.path(), b, DType::kBFloat16);
}

TEST_CASE("runs written in shard file version 1 read bit-exact and resume in version 2",
          "[shards]") {
  // tests/data/shards-v1: written by saes 070ae18 (the last version 1 writer) with this file's
  // options_for(float16, 1-D) and write_run(40 rows): XXH64 frame checksums, zstd-shuffle frames
  // as one zstd frame.
  const fs::path dir = fs::path(SAES_SOURCE_DIR) / "tests/data/shards-v1";
  REQUIRE(ShardFile::load(dir / "shard-r000-000000.saes").version() == 1);
  require_batches_match(read_all(dir, {.verify_decoded_checksums = true}), DType::kFloat16, false,
                        40);

  // Continued by this writer: the new shards are version 2, and the run reads as one.
  testing::TempDir copy;
  for (const auto& entry : fs::directory_iterator(dir))
    fs::copy_file(entry.path(), copy / entry.path().filename());
  Logger quiet(LogLevel::kOff);
  ShardWriter writer = ShardWriter::open_for_resume(
      options_for(copy.path(), DType::kFloat16, ShardTarget::kActivations1d), quiet);
  REQUIRE(writer.rows_done() == 40);
  writer.append(make_batch(40, 30, false));
  writer.finish();
  const auto& shards = writer.manifest().shards;
  REQUIRE(shards.size() == 3);
  CHECK(ShardFile::load(copy / shards[1].file).version() == 1);
  CHECK(ShardFile::load(copy / shards[2].file).version() == kShardFileVersion);
  require_batches_match(read_all(copy.path(), {.verify_decoded_checksums = true}), DType::kFloat16,
                        false, 70);
}

TEST_CASE("zstd-shuffle frames store incompressible byte planes raw", "[shards]") {
  testing::TempDir dir;
  const ShardBatch b = write_gaussian_run(dir.path(), DType::kFloat16, 4096);
  const ShardFile file = ShardFile::load(dir / "shard-r000-000000.saes");
  REQUIRE(file.version() == kShardFileVersion);
  const SectionInfo& s = *file.find("act/blocks.0.hook_resid_post");
  REQUIRE(s.frames.size() == 3);  // 200 x 24 fp16 = 9600 bytes in frames of 4096
  for (std::size_t i = 0; i < s.frames.size(); ++i) {
    const std::uint64_t elements = std::min<std::uint64_t>(4096, s.raw_bytes - i * 4096) / 2;
    const auto& planes = s.frames[i].plane_bytes;
    REQUIRE(planes.size() == 2);
    CHECK(planes[0] == elements);  // random low mantissa bytes: stored as they are
    CHECK(planes[1] < elements);   // sign, exponent, top mantissa bits: zstd
  }
  require_gaussian_read(dir.path(), b, DType::kFloat16);
}

TEST_CASE("byte plane sizes that do not add up and unknown file versions are rejected",
          "[shards]") {
  testing::TempDir dir;
  auto o = options_for(dir.path(), DType::kFloat16, ShardTarget::kActivations1d);
  write_run(o, 30);
  std::string bytes = read_file(dir / "shard-r000-000000.saes");
  const ShardFile original = ShardFile::parse(bytes, "original");
  const FrameInfo& frame = original.find("act/blocks.0.hook_resid_post")->frames.at(0);
  // Change the last digit of the first plane's size, keeping the directory's length, and re-seal.
  const std::string first = std::to_string(frame.plane_bytes[0]);
  const std::size_t at = bytes.find(fmt::format("[{},{}]", first, frame.plane_bytes[1]));
  REQUIRE(at != std::string::npos);
  std::string edited = bytes;
  char& digit = edited[at + first.size()];
  digit = digit == '0' ? '1' : static_cast<char>(digit - 1);
  reseal_directory(edited);
  CHECK_THAT(error_of([&] { ShardFile::parse(edited, "edited.saes"); }),
             Catch::Contains("edited.saes") && Catch::Contains("hook_resid_post") &&
                 Catch::Contains("frame 0: byte plane sizes do not add up"));
  bytes[8] = 3;
  CHECK_THAT(error_of([&] { ShardFile::parse(bytes, "future.saes"); }),
             Catch::Contains("future.saes: file version 3, this saes reads versions 1 to 2"));
}

TEST_CASE("seeded shuffled shard order is a reproducible permutation", "[shards]") {
  testing::TempDir dir;
  auto o = options_for(dir.path(), DType::kFloat16, ShardTarget::kActivations1d);
  o.rows_per_shard = 5;
  write_run(o, 100);  // 20 shards
  ShardReader reader = ShardReader::open(dir.path());
  ShardReadOptions a{.shuffle = true, .seed = 7};
  auto order = reader.shard_order(a);
  REQUIRE(order == reader.shard_order(a));
  REQUIRE(order != reader.shard_order({.shuffle = true, .seed = 8}));
  auto sorted = order;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::int64_t> identity(20);
  std::iota(identity.begin(), identity.end(), 0);
  REQUIRE(sorted == identity);
  REQUIRE(order != identity);
  auto batches = read_all(dir.path(), a);
  for (std::size_t i = 0; i < batches.size(); ++i)
    REQUIRE(batches[i].shard == shard_file_name(0, order[i]));
  require_batches_match(batches, DType::kFloat16, false, 100);
}

TEST_CASE("rank slices of the shard list partition it", "[shards]") {
  std::set<std::int64_t> all;
  for (int rank = 0; rank < 3; ++rank) {
    for (auto i : shard_indices_for_rank(10, rank, 3)) {
      REQUIRE(i % 3 == rank);
      REQUIRE(all.insert(i).second);
    }
  }
  REQUIRE(all.size() == 10);
  REQUIRE_THROWS_AS(shard_indices_for_rank(10, 3, 3), ConfigError);
}

TEST_CASE("rank manifests merge into one run that reads every row once", "[shards]") {
  testing::TempDir dir;
  for (int rank = 0; rank < 2; ++rank) {
    auto o = options_for(dir.path(), DType::kFloat32, ShardTarget::kActivations1d);
    o.rank = rank;
    o.world = 2;
    ShardWriter writer = ShardWriter::create(o);
    writer.append(make_batch(rank * 50, 50, false));
    writer.finish();
  }
  REQUIRE(fs::exists(dir / "manifest.rank1.json"));
  ShardManifest merged = merge_manifests(dir.path(), 2);
  REQUIRE(merged.shards.size() == 4);
  REQUIRE(merged.shards[2].file == "shard-r001-000000.saes");
  REQUIRE(merged.complete);
  require_batches_match(read_all(dir.path()), DType::kFloat32, false, 100);
  std::vector<ShardBatch> rank1 = read_all(dir.path(), {.shards = shard_indices_for_rank(4, 1, 2)});
  REQUIRE(rank1.size() == 2);
}

TEST_CASE("resume continues after the last complete shard and removes strays", "[shards]") {
  testing::TempDir dir;
  auto o = options_for(dir.path(), DType::kFloat16, ShardTarget::kActivations2d);
  {
    ShardWriter writer = ShardWriter::create(o);
    writer.append(make_batch(0, 70, true));  // two full shards written, 10 rows pending: "crash"
    REQUIRE(writer.rows_done() == 60);
  }
  fs::copy_file(dir / "shard-r000-000000.saes", dir / "shard-r000-000002.saes");  // un-manifested
  write_file_atomic(dir / "unrelated.txt", "keep");
  { std::ofstream(dir / "shard-r000-000003.saes.tmp.999") << "partial"; }
  std::FILE* log = std::tmpfile();
  Logger logger(LogLevel::kInfo, log);
  ShardWriter writer = ShardWriter::open_for_resume(o, logger);
  REQUIRE(writer.rows_done() == 60);
  REQUIRE(writer.tokens_done() == 60 * kContext);
  REQUIRE_FALSE(fs::exists(dir / "shard-r000-000002.saes"));
  REQUIRE_FALSE(fs::exists(dir / "shard-r000-000003.saes.tmp.999"));
  REQUIRE(fs::exists(dir / "unrelated.txt"));
  writer.append(make_batch(60, 40, true));
  writer.finish();
  REQUIRE(writer.manifest().shards.back().file == "shard-r000-000003.saes");
  require_batches_match(read_all(dir.path()), DType::kFloat16, true, 100);
  std::fclose(log);

  auto other = o;
  other.d_model = kDModel + 1;
  Logger quiet(LogLevel::kOff);
  REQUIRE_THROWS_WITH(ShardWriter::open_for_resume(other, quiet), Catch::Contains("d_model"));
  REQUIRE_THROWS_WITH(ShardWriter::create(o), Catch::Contains("already exists"));
}

TEST_CASE("corrupt runs fail with errors naming the shard, section or key", "[shards]") {
  testing::TempDir dir;
  auto o = options_for(dir.path(), DType::kFloat16, ShardTarget::kActivations1d);
  write_run(o, 100);
  const fs::path shard1 = dir / "shard-r000-000001.saes";
  auto read = [&] { read_all(dir.path()); };

  SECTION("a flipped byte in a section") {
    ShardFile file = ShardFile::load(shard1);
    const SectionInfo* s = file.find("act/blocks.1.hook_mlp_out");
    flip_byte(shard1, file.data_offset() + s->offset + s->stored_bytes / 2);
    auto message = error_of(read);
    CHECK_THAT(message, Catch::Contains("shard-r000-000001.saes") &&
                            Catch::Contains("act/blocks.1.hook_mlp_out") &&
                            Catch::Contains("checksum"));
  }
  SECTION("a truncated file") {
    fs::resize_file(shard1, fs::file_size(shard1) - 100);
    CHECK_THAT(error_of(read),
               Catch::Contains("shard-r000-000001.saes") && Catch::Contains("truncated"));
    // found when the run is opened, before the stream reads any shard
    CHECK_THAT(error_of([&] { ShardReader::open(dir.path()); }),
               Catch::Contains("shard-r000-000001.saes") && Catch::Contains("bytes"));
    CHECK_THAT(error_of([&] { ShardFile::load(shard1); }), Catch::Contains("truncated"));
  }
  SECTION("a bad magic") {
    flip_byte(shard1, 0);
    CHECK_THAT(error_of(read),
               Catch::Contains("shard-r000-000001.saes") && Catch::Contains("bad magic"));
  }
  SECTION("a manifest checksum that does not match") {
    auto manifest = nlohmann::json::parse(read_file(dir / "manifest.json"));
    manifest["shards"][1]["checksum"] = "0123456789abcdef";
    write_file_atomic(dir / "manifest.json", manifest.dump());
    CHECK_THAT(error_of(read), Catch::Contains("shard-r000-000001.saes") &&
                                   Catch::Contains("does not match the manifest"));
  }
  SECTION("a missing shard file") {
    fs::remove(shard1);
    REQUIRE_THROWS_AS(read(), IoError);
    CHECK_THROWS_AS(ShardReader::open(dir.path()), IoError);
    CHECK_THAT(error_of(read),
               Catch::Contains("shard-r000-000001.saes") && Catch::Contains("missing"));
  }
  SECTION("a malformed manifest") {
    write_file_atomic(dir / "manifest.json", "{\"format\": ");
    CHECK_THAT(error_of(read),
               Catch::Contains("manifest.json") && Catch::Contains("not valid JSON"));
  }
  SECTION("a manifest key of the wrong type") {
    auto manifest = nlohmann::json::parse(read_file(dir / "manifest.json"));
    manifest["shards"][2]["n_rows"] = "thirty";
    write_file_atomic(dir / "manifest.json", manifest.dump());
    CHECK_THAT(error_of(read),
               Catch::Contains("manifest.json") && Catch::Contains("shards[2].n_rows"));
  }
  SECTION("a hook that the run does not have") {
    auto message = error_of([&] { read_all(dir.path(), {.hooks = {"blocks.5.hook_resid_post"}}); });
    CHECK_THAT(message,
               Catch::Contains("blocks.5.hook_resid_post") &&
                   Catch::Contains("available: blocks.0.hook_resid_post, blocks.1.hook_mlp_out"));
  }
}

TEST_CASE("the default read skips the decoded-bytes check and still catches stored corruption",
          "[shards]") {
  testing::TempDir dir;
  auto o = options_for(dir.path(), DType::kFloat16, ShardTarget::kActivations1d);
  write_run(o, 100);
  REQUIRE_FALSE(ShardReadOptions{}.verify_decoded_checksums);
  require_batches_match(read_all(dir.path()), DType::kFloat16, false, 100);
  require_batches_match(read_all(dir.path(), {.verify_decoded_checksums = true}), DType::kFloat16,
                        false, 100);
  const fs::path shard1 = dir / "shard-r000-000001.saes";
  ShardFile file = ShardFile::load(shard1);
  const SectionInfo* s = file.find("act/blocks.0.hook_resid_post");
  flip_byte(shard1, file.data_offset() + s->offset + 1);
  CHECK_THAT(error_of([&] { read_all(dir.path()); }),
             Catch::Contains("act/blocks.0.hook_resid_post") &&
                 Catch::Contains("stored checksum mismatch"));
}

TEST_CASE("a wrong raw checksum fails the decode of a frame only with the decoded-bytes check on",
          "[shards]") {
  auto codec = GENERATE(ShardCodec::kZstdShuffle, ShardCodec::kZstd);
  testing::TempDir dir;
  auto o = options_for(dir.path(), DType::kFloat32, ShardTarget::kActivations1d);
  o.encode.codec = codec;
  write_run(o, 30);
  const fs::path path = dir / "shard-r000-000000.saes";
  std::string bytes = read_file(path);
  const ShardFile original = ShardFile::parse(bytes, "original");
  const SectionInfo& s = *original.find("act/blocks.1.hook_mlp_out");
  // Change one hex digit of frame 1's raw digest (same length) and re-seal the directory: the
  // stored bytes stay intact, so only the decoded-bytes check sees it (as a decoder fault).
  const std::string raw_hex = checksum_hex(s.frames.at(1).raw_checksum, 8);  // CRC-32C
  const std::size_t at = bytes.find(raw_hex);
  REQUIRE(at != std::string::npos);
  bytes[at] = bytes[at] == '0' ? '1' : '0';
  const std::uint64_t dir_bytes = reseal_directory(bytes);
  const ShardFile file = ShardFile::parse(bytes, "edited.saes");
  const SectionInfo& edited = *file.find("act/blocks.1.hook_mlp_out");
  std::vector<float> out(edited.raw_bytes / sizeof(float));
  CHECK_THAT(error_of([&] {
               file.decode({{&edited, out.data()}}, 2, true);
             }),
             Catch::Contains("edited.saes") && Catch::Contains("frame 1 raw checksum mismatch"));
  CHECK_NOTHROW(file.decode({{&edited, out.data()}}, 2));

  // Through the stream: the manifest pins header + directory, so update its checksum too.
  write_file_atomic(path, bytes);
  auto manifest = nlohmann::json::parse(read_file(dir / "manifest.json"));
  manifest["shards"][0]["checksum"] =
      checksum_hex(xxh64(bytes.data(), kShardHeaderBytes + dir_bytes));
  write_file_atomic(dir / "manifest.json", manifest.dump());
  CHECK_NOTHROW(read_all(dir.path()));
  CHECK_THAT(error_of([&] { read_all(dir.path(), {.verify_decoded_checksums = true}); }),
             Catch::Contains("shard-r000-000000.saes") &&
                 Catch::Contains("frame 1 raw checksum mismatch"));
}

TEST_CASE("the stream returns shards in its order for any number of workers and queue depth",
          "[shards]") {
  testing::TempDir dir;
  auto o = options_for(dir.path(), DType::kBFloat16, ShardTarget::kActivations2d);
  write_run(o, 200);
  const auto threads = GENERATE(1, 2, 3, 5);
  const auto depth = GENERATE(1, 2, 4);
  ShardReadOptions options{
      .shuffle = true, .seed = 7, .decode_threads = threads, .queue_depth = depth};
  const auto reader = ShardReader::open(dir.path());
  std::vector<std::string> expected;
  for (auto i : reader.shard_order(options)) expected.push_back(reader.manifest().shards[i].file);
  const auto batches = read_all(dir.path(), options);
  std::vector<std::string> got;
  for (const auto& b : batches) got.push_back(b.shard);
  REQUIRE(got == expected);
  require_batches_match(batches, DType::kBFloat16, true, 200);
}

TEST_CASE("the buffer pool hands out the memory of dropped tensors again", "[shards]") {
  auto pool = ShardBufferPool::create(1);
  at::Tensor a = pool->empty({1000}, DType::kFloat32);
  void* first = a.data_ptr();
  CHECK(reinterpret_cast<std::uintptr_t>(first) % 64 == 0);
  a = at::Tensor();
  REQUIRE(pool->free_buffers() == 1);
  at::Tensor small = pool->empty({100}, DType::kFloat32);  // under half the size: not reused
  CHECK(small.data_ptr() != first);
  at::Tensor b = pool->empty({900}, DType::kFloat32);
  CHECK(b.data_ptr() == first);
  CHECK(pool->free_buffers() == 0);
  small = at::Tensor();
  b = at::Tensor();
  CHECK(pool->free_buffers() == 1);  // full: the second buffer is freed
  at::Tensor kept = pool->empty({3, 4}, DType::kFloat16);
  pool.reset();
  CHECK(kept.sizes() == at::IntArrayRef({3, 4}));  // outlives the pool; freed when dropped
}

TEST_CASE("a stream destroyed before its end stops its workers", "[shards]") {
  testing::TempDir dir;
  write_run(options_for(dir.path(), DType::kFloat32, ShardTarget::kActivations1d), 200);
  Logger logger(LogLevel::kOff);
  for (int taken = 0; taken < 3; ++taken) {
    ShardStream stream(ShardReader::open(dir.path()), {.decode_threads = 3}, logger);
    for (int i = 0; i < taken; ++i) REQUIRE(stream.next().has_value());
  }
}

TEST_CASE("the skip policy logs a corrupt shard and streams the others", "[shards]") {
  testing::TempDir dir;
  auto o = options_for(dir.path(), DType::kBFloat16, ShardTarget::kActivations1d);
  write_run(o, 100);
  ShardFile file = ShardFile::load(dir / "shard-r000-000002.saes");
  flip_byte(dir / "shard-r000-000002.saes", file.data_offset() + file.find("tokens")->offset + 3);

  std::FILE* log = std::tmpfile();
  Logger logger(LogLevel::kWarn, log);
  std::int64_t rows = 0;
  {
    ShardStream stream(ShardReader::open(dir.path()), {.on_corrupt = OnCorrupt::kSkip}, logger);
    while (auto batch = stream.next()) {
      REQUIRE(batch->shard != "shard-r000-000002.saes");
      rows += batch->n_rows();
    }
    REQUIRE(stream.skipped() == 1);
  }
  REQUIRE(rows == 70);
  std::rewind(log);
  std::string text(4096, '\0');
  text.resize(std::fread(text.data(), 1, text.size(), log));
  std::fclose(log);
  CHECK_THAT(text, Catch::Contains("skipping corrupt shard") &&
                       Catch::Contains("shard-r000-000002.saes") && Catch::Contains("\"tokens\""));

  Logger quiet(LogLevel::kOff);
  ShardStream strict(ShardReader::open(dir.path()), {}, quiet);
  REQUIRE(strict.next().has_value());
  REQUIRE(strict.next().has_value());
  REQUIRE_THROWS_WITH(strict.next(), Catch::Contains("shard-r000-000002.saes"));
}

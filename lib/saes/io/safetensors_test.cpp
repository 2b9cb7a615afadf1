// Tests of the safetensors reader/writer: round trips, zero-copy, slices, atomic writes, every
// header corruption, and byte-identity with an independent writer (tests/reference/*.py).
#include "saes/io/safetensors.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/zeros.h>
#include <sys/resource.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <cstring>
#include <fstream>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "support/temp_dir.h"

namespace saes::io {
namespace {

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

template <class T>
at::Tensor make(std::vector<T> values, std::vector<std::int64_t> shape, c10::ScalarType type) {
  return at::from_blob(values.data(), shape, at::TensorOptions().dtype(type)).clone();
}

// Same dtype, shape and bytes (NaN payloads, -0.0 and all).
bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  at::Tensor ca = a.contiguous();
  at::Tensor cb = b.contiguous();
  // (an empty tensor has a null data pointer, which memcmp must not get)
  return ca.nbytes() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64_le(std::uint64_t value) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &value, 8);
  return out;
}

// A file with `header` (padded with spaces to 8 bytes) and `data_bytes` zero bytes of data.
void write_raw(const fs::path& path, std::string header, std::size_t data_bytes) {
  header.append((8 - header.size() % 8) % 8, ' ');
  write_bytes(path, u64_le(header.size()) + header + std::string(data_bytes, '\0'));
}

// Opening `path` throws DataError whose one-line message names the file and contains `needle`.
void require_rejected(const fs::path& path, const std::string& needle) {
  try {
    SafetensorsFile::open(path);
    FAIL("expected DataError containing: " << needle);
  } catch (const DataError& e) {
    std::string message = e.what();
    CHECK_THAT(message, Contains(needle));
    CHECK_THAT(message, Contains(path.string()));
    CHECK(message.find('\n') == std::string::npos);
  }
}

std::vector<std::pair<std::string, at::Tensor>> every_dtype_tensors() {
  auto opts = at::TensorOptions().dtype(at::kShort);
  return {
      {"f32", at::arange(0.0, 6.0, 0.5, at::kFloat).reshape({3, 4})},
      {"f16", at::randint(-32768, 32767, {5}, opts).view(at::kHalf)},  // every bit pattern kind
      {"bf16", at::randint(-32768, 32767, {2, 3}, opts).view(at::kBFloat16)},
      {"f64", make<double>({1.0 / 3.0, -0.0, 1e300}, {3}, at::kDouble)},
      {"i64", make<std::int64_t>({-(1LL << 62), 7}, {2}, at::kLong)},
      {"i32", make<std::int32_t>({-7, 2147483647}, {1, 2}, at::kInt)},
      {"i16", make<std::int16_t>({-32768, 32767, 1}, {3}, at::kShort)},
      {"i8", make<std::int8_t>({-128, 127}, {2}, at::kChar)},
      {"u8", make<std::uint8_t>({0, 255, 128}, {3}, at::kByte)},
      {"bool", make<std::uint8_t>({1, 0, 1, 1}, {2, 2}, at::kByte).to(at::kBool)},
      {"scalar", make<float>({42.5f}, {}, at::kFloat)},
      {"empty", at::zeros({0, 4}, at::kFloat)},
      {"empty_i8", at::zeros({3, 0}, at::kChar)},
  };
}

TEST_CASE("safetensors round trip keeps every dtype, 0-d and empty tensors bit-exact", "[io]") {
  testing::TempDir dir;
  auto tensors = every_dtype_tensors();
  save_safetensors(dir / "all.safetensors", tensors);
  auto file = SafetensorsFile::open(dir / "all.safetensors");
  REQUIRE(file.names().size() == tensors.size());
  for (const auto& [name, expected] : tensors) {
    INFO("tensor " << name);
    REQUIRE(file.contains(name));
    CHECK(file.info(name).dtype == from_torch(expected.scalar_type()));
    CHECK(same_bytes(file.tensor(name), expected));
    CHECK(same_bytes(file.tensor(name, TensorLoad::kCopy), expected));
  }
  CHECK(file.metadata().empty());
}

TEST_CASE("safetensors metadata round trips, including quotes and UTF-8", "[io]") {
  testing::TempDir dir;
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "a \"q\" \xCF\x80"}};
  std::map<std::string, at::Tensor> tensors = {{"x", at::arange(3, at::kFloat)}};
  save_safetensors(dir / "m.safetensors", tensors, metadata);
  CHECK(SafetensorsFile::open(dir / "m.safetensors").metadata() == metadata);
}

TEST_CASE("safetensors writer orders tensors by dtype alignment then name, like Python", "[io]") {
  testing::TempDir dir;
  std::map<std::string, at::Tensor> tensors = {{"a_u8", at::zeros({1}, at::kByte)},
                                               {"b_f32", at::zeros({1}, at::kFloat)},
                                               {"a_f32", at::zeros({1}, at::kFloat)},
                                               {"z_i64", at::zeros({1}, at::kLong)},
                                               {"c_bf16", at::zeros({1}, at::kBFloat16)}};
  save_safetensors(dir / "o.safetensors", tensors);
  auto file = SafetensorsFile::open(dir / "o.safetensors");
  CHECK(file.names() == std::vector<std::string>{"z_i64", "a_f32", "b_f32", "c_bf16", "a_u8"});
  CHECK(file.data_offset() % 8 == 0);
}

TEST_CASE("safetensors views share the mapping, outlive the file object and never write to disk",
          "[io]") {
  testing::TempDir dir;
  std::map<std::string, at::Tensor> tensors = {{"a", at::arange(8, at::kFloat)},
                                               {"b", at::arange(4, at::kFloat)}};
  save_safetensors(dir / "v.safetensors", tensors);
  at::Tensor a;
  {
    auto file = SafetensorsFile::open(dir / "v.safetensors");
    a = file.tensor("a");
    at::Tensor b = file.tensor("b");
    auto byte_distance = static_cast<std::uint64_t>(static_cast<char*>(b.data_ptr()) -
                                                    static_cast<char*>(a.data_ptr()));
    CHECK(byte_distance == file.info("b").data_begin - file.info("a").data_begin);
    CHECK(file.tensor("a").data_ptr() == a.data_ptr());
    CHECK(file.tensor("a", TensorLoad::kCopy).data_ptr() != a.data_ptr());
  }
  CHECK(same_bytes(a, tensors["a"]));  // the mapping is still alive
  a.data_ptr<float>()[0] = 99.0f;      // private copy-on-write page
  CHECK(SafetensorsFile::open(dir / "v.safetensors").tensor("a").data_ptr<float>()[0] == 0.0f);
}

TEST_CASE("safetensors reader copies tensors whose data is not aligned for their dtype", "[io]") {
  testing::TempDir dir;
  // Valid but unusual layout: a 1-byte U8 tensor first puts the F32 tensor at offset 1.
  std::string header = R"({"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                       R"("f":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  float values[2] = {1.5f, -2.0f};
  std::string data(1, '\x07');
  data.append(reinterpret_cast<const char*>(values), sizeof(values));
  write_bytes(dir / "u.safetensors", u64_le(header.size()) + header + data);
  auto file = SafetensorsFile::open(dir / "u.safetensors");
  at::Tensor f = file.tensor("f");
  CHECK(reinterpret_cast<std::uintptr_t>(f.data_ptr()) % alignof(float) == 0);
  CHECK(same_bytes(f, make<float>({1.5f, -2.0f}, {2}, at::kFloat)));
  CHECK(file.tensor("u").data_ptr<std::uint8_t>()[0] == 7);
}

TEST_CASE("safetensors slice reads row ranges and strided column ranges", "[io]") {
  testing::TempDir dir;
  at::Tensor w = at::arange(24, at::kFloat).reshape({6, 4});
  std::map<std::string, at::Tensor> tensors = {{"w", w}, {"v", at::arange(5, at::kLong)}};
  save_safetensors(dir / "s.safetensors", tensors);
  auto file = SafetensorsFile::open(dir / "s.safetensors");
  at::Tensor whole = file.tensor("w");
  at::Tensor rows = file.slice("w", 0, 2, 5);
  CHECK(same_bytes(rows, w.narrow(0, 2, 3)));
  CHECK(static_cast<char*>(rows.data_ptr()) - static_cast<char*>(whole.data_ptr()) == 2 * 4 * 4);
  CHECK(same_bytes(file.slice("w", 0, 3, 3), w.narrow(0, 3, 0)));
  at::Tensor cols = file.slice("w", 1, 1, 3);
  CHECK(cols.is_contiguous());
  CHECK(same_bytes(cols, w.narrow(1, 1, 2)));
  CHECK(same_bytes(file.slice("w", 1, 1, 3, TensorLoad::kCopy), w.narrow(1, 1, 2)));
  CHECK(same_bytes(file.slice("v", 0, 4, 5, TensorLoad::kCopy), at::arange(4, 5, at::kLong)));
  CHECK_THROWS_AS(file.slice("w", 0, 4, 7), DataError);
  CHECK_THROWS_AS(file.slice("w", 2, 0, 1), DataError);
  CHECK_THROWS_WITH(file.slice("w", 0, 3, 2), Contains("out of range"));
}

TEST_CASE("safetensors info reports shape and offsets, and a missing tensor is a DataError",
          "[io]") {
  testing::TempDir dir;
  std::map<std::string, at::Tensor> tensors = {{"w", at::zeros({2, 3}, at::kBFloat16)}};
  save_safetensors(dir / "i.safetensors", tensors);
  auto file = SafetensorsFile::open(dir / "i.safetensors");
  const auto& info = file.info("w");
  CHECK(info.dtype == DType::kBFloat16);
  CHECK(info.shape == std::vector<std::int64_t>{2, 3});
  CHECK(info.data_begin == 0);
  CHECK(info.data_end == 12);
  CHECK(info.numel() == 6);
  CHECK_FALSE(file.contains("W"));
  CHECK_THROWS_AS(file.tensor("W"), DataError);
  CHECK_THROWS_WITH(file.tensor("W"), Contains("no tensor \"W\"") && Contains("w"));
}

TEST_CASE("safetensors writer copies strided tensors and rejects bad input", "[io]") {
  testing::TempDir dir;
  at::Tensor t = at::arange(6, at::kInt).reshape({2, 3}).t();
  std::vector<std::pair<std::string, at::Tensor>> tensors = {{"t", t}};
  save_safetensors(dir / "t.safetensors", tensors);
  CHECK(same_bytes(SafetensorsFile::open(dir / "t.safetensors").tensor("t"), t));

  std::vector<std::pair<std::string, at::Tensor>> duplicate = {{"a", t}, {"a", t}};
  CHECK_THROWS_WITH(save_safetensors(dir / "d.safetensors", duplicate),
                    Contains("\"a\" given twice"));
  std::vector<std::pair<std::string, at::Tensor>> reserved = {{"__metadata__", t}};
  CHECK_THROWS_AS(save_safetensors(dir / "d.safetensors", reserved), DataError);
  std::vector<std::pair<std::string, at::Tensor>> undefined = {{"u", at::Tensor()}};
  CHECK_THROWS_AS(save_safetensors(dir / "d.safetensors", undefined), DataError);
  std::vector<std::pair<std::string, at::Tensor>> complex = {
      {"c", at::zeros({2}, at::TensorOptions().dtype(at::kComplexFloat))}};
  CHECK_THROWS_AS(save_safetensors(dir / "d.safetensors", complex), UnsupportedError);
  CHECK_THROWS_WITH(save_safetensors(dir / "d.safetensors", complex), Contains("tensor \"c\""));
  std::vector<std::pair<std::string, at::Tensor>> bad_utf8 = {{"\xff", t}};
  CHECK_THROWS_AS(save_safetensors(dir / "d.safetensors", bad_utf8), DataError);
  CHECK_FALSE(fs::exists(dir / "d.safetensors"));
}

// Lowers RLIMIT_FSIZE so that writes past `bytes` fail with EFBIG (SIGXFSZ ignored meanwhile).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, previous_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  void (*previous_handler_)(int) = nullptr;
};

TEST_CASE("a failed safetensors write keeps the previous file and leaves no temp file", "[io]") {
  testing::TempDir dir;
  const fs::path path = dir / "keep.safetensors";
  std::map<std::string, at::Tensor> small = {{"x", at::arange(4, at::kFloat)}};
  save_safetensors(path, small);
  const std::string before = read_file(path);
  std::map<std::string, at::Tensor> big = {{"x", at::zeros({1 << 20}, at::kFloat)}};
  {
    FileSizeLimit limit(64 * 1024);
    CHECK_THROWS_AS(save_safetensors(path, big), IoError);
  }
  CHECK(read_file(path) == before);
  std::vector<fs::path> left;
  for (const auto& entry : fs::directory_iterator(dir.path())) left.push_back(entry.path());
  CHECK(left == std::vector<fs::path>{path});
}

TEST_CASE("opening a missing safetensors file is an IoError naming the path", "[io]") {
  testing::TempDir dir;
  CHECK_THROWS_AS(SafetensorsFile::open(dir / "missing.safetensors"), IoError);
  CHECK_THROWS_WITH(SafetensorsFile::open(dir / "missing.safetensors"),
                    Contains("missing.safetensors") && Contains("No such file"));
}

TEST_CASE("safetensors reader rejects malformed files with one-line errors", "[io]") {
  testing::TempDir dir;
  const fs::path path = dir / "bad.safetensors";
  const std::string good_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

  SECTION("short file") {
    write_bytes(path, "abc");
    require_rejected(path, "fewer than the 8-byte header length");
    write_bytes(path, "");
    require_rejected(path, "file has 0 bytes");
  }
  SECTION("huge header") {
    write_bytes(path, u64_le(200'000'000) + "{}");
    require_rejected(path, "huge header");
  }
  SECTION("header longer than the file") {
    write_bytes(path, u64_le(64) + "{}      ");
    require_rejected(path, "exceeds the 8 bytes that follow");
  }
  SECTION("header not JSON") {
    write_raw(path, "{\"t\":", 0);
    require_rejected(path, "not valid JSON");
  }
  SECTION("header not UTF-8") {
    write_raw(path, "{\"\xff\":1}", 0);
    require_rejected(path, "not valid JSON");
  }
  SECTION("header not an object") {
    write_raw(path, "[1,2]", 0);
    require_rejected(path, "must be a JSON object, got array");
  }
  SECTION("duplicate tensor name") {
    write_raw(path, "{" + good_entry + "," + good_entry + "}", 8);
    require_rejected(path, "\"t\" twice");
  }
  SECTION("entry not an object") {
    write_raw(path, R"({"t":3})", 0);
    require_rejected(path, "tensor \"t\": expected an object");
  }
  SECTION("missing dtype, shape or data_offsets") {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"dtype", R"({"shape":[2],"data_offsets":[0,8]})"},
        {"shape", R"({"dtype":"F32","data_offsets":[0,8]})"},
        {"data_offsets", R"({"dtype":"F32","shape":[2]})"}};
    for (const auto& [key, entry] : cases) {
      write_raw(path, "{\"t\":" + entry + "}", 8);
      require_rejected(path, "tensor \"t\": missing \"" + key + "\"");
    }
  }
  SECTION("unknown dtype") {
    write_raw(path, R"({"t":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2);
    require_rejected(path, "tensor \"t\": unsupported dtype \"F8_E4M3\"");
  }
  SECTION("negative shape") {
    write_raw(path, R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8);
    require_rejected(path, "tensor \"t\": \"shape\" must hold integers >= 0");
  }
  SECTION("non-integer shape") {
    write_raw(path, R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8);
    require_rejected(path, "\"shape\" must hold integers >= 0");
  }
  SECTION("shape product overflows") {
    write_raw(path, R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
              8);
    require_rejected(path, "overflows");
  }
  SECTION("offsets not a pair") {
    write_raw(path, R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8);
    require_rejected(path, "must be [begin, end]");
  }
  SECTION("begin greater than end") {
    write_raw(path, R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8);
    require_rejected(path, "tensor \"t\": data_offsets [8, 0] have begin > end");
  }
  SECTION("offsets past the end of the file") {
    write_raw(path, R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4);
    require_rejected(path, "tensor \"t\": data_offsets [0, 8] out of range");
  }
  SECTION("offsets that disagree with dtype and shape") {
    write_raw(path, R"({"t":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8);
    require_rejected(path, "span 8 bytes, but dtype F16 and shape [2] need 4");
  }
  SECTION("overlapping tensors") {
    write_raw(path,
              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
              12);
    require_rejected(path, "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\"");
  }
  SECTION("a hole between tensors") {
    write_raw(path,
              R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
              12);
    require_rejected(path, "tensor \"b\": bytes [4, 8) of the data region belong to no tensor");
  }
  SECTION("trailing bytes after the last tensor") {
    write_raw(path, "{" + good_entry + "}", 12);
    require_rejected(path, "tensors cover 8 bytes but the data region");
  }
  SECTION("metadata value not a string") {
    write_raw(path, R"({"__metadata__":{"step":3},)" + good_entry + "}", 8);
    require_rejected(path, "\"__metadata__\" value of \"step\" must be a string, got 3");
  }
  SECTION("metadata not an object") {
    write_raw(path, R"({"__metadata__":"x"})", 0);
    require_rejected(path, "\"__metadata__\" must be an object");
  }
}

TEST_CASE("safetensors reader accepts an empty file list and whitespace padding", "[io]") {
  testing::TempDir dir;
  // The Python writer's bytes for no tensors and no metadata (safetensors tensor.rs test_empty).
  const std::string empty_file("\x08\0\0\0\0\0\0\0{}      ", 16);
  write_bytes(dir / "e.safetensors", empty_file);
  auto file = SafetensorsFile::open(dir / "e.safetensors");
  CHECK(file.names().empty());
  std::vector<std::pair<std::string, at::Tensor>> none;
  save_safetensors(dir / "w.safetensors", none);
  CHECK(read_file(dir / "w.safetensors") == empty_file);
}

TEST_CASE("safetensors reader ignores extra entry keys and accepts any entry order", "[io]") {
  testing::TempDir dir;
  write_raw(dir / "x.safetensors",
            R"( {"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6],"note":1},)"
            R"("a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",
            6);
  auto file = SafetensorsFile::open(dir / "x.safetensors");
  CHECK(file.names() == std::vector<std::string>{"a", "b"});
  CHECK(file.info("b").shape == std::vector<std::int64_t>{2});
}

// The tensors of tests/data/reference_all_dtypes.safetensors
// (tests/reference/make_safetensors_fixture.py).
std::map<std::string, at::Tensor> reference_tensors() {
  auto bf16 = [](std::vector<float> v, std::vector<std::int64_t> shape) {
    return make<float>(std::move(v), std::move(shape), at::kFloat).to(at::kBFloat16);
  };
  return {
      {"weight", at::arange(-1.0, 2.0, 0.25, at::kFloat).reshape({3, 4})},
      {"scalar", make<float>({42.5f}, {}, at::kFloat)},
      {"empty", at::zeros({0, 4}, at::kFloat)},
      {"half", make<float>({0.5f, -1.5f, 65504.0f, 0x1p-24f}, {4}, at::kFloat).to(at::kHalf)},
      {"brain", bf16({1.0f, -2.0f, 0.5f, 3.140625f, -0.0f, 0x1p100f}, {2, 3})},
      {"double", make<double>({1.0 / 3.0, -2.5, 1e300, -0.0}, {2, 2}, at::kDouble)},
      {"long", make<std::int64_t>({-(1LL << 62), 0, (1LL << 40) + 7}, {3}, at::kLong)},
      {"int", make<std::int32_t>({-7, 0, 123456, 2147483647}, {2, 2}, at::kInt)},
      {"short", make<std::int16_t>({-32768, 1, 32767}, {3}, at::kShort)},
      {"byte", make<std::int8_t>({-128, -1, 0, 127}, {4}, at::kChar)},
      {"ubyte", make<std::uint8_t>({0, 1, 128, 254, 255}, {5}, at::kByte)},
      {"mask", make<std::uint8_t>({1, 0, 1}, {3}, at::kByte).to(at::kBool)},
  };
}

const std::map<std::string, std::string> kReferenceMetadata = {
    {"note", "saes fixture \"v1\" \xE2\x80\x93 \xCF\x80"}};

TEST_CASE("safetensors reader reads the independently written reference file exactly", "[io]") {
  auto file = SafetensorsFile::open(fs::path(SAES_SOURCE_DIR) /
                                    "tests/data/reference_all_dtypes.safetensors");
  auto expected = reference_tensors();
  CHECK(file.names().size() == expected.size());
  CHECK(file.metadata() == kReferenceMetadata);
  for (const auto& [name, tensor] : expected) {
    INFO("tensor " << name);
    CHECK(same_bytes(file.tensor(name), tensor));
  }
}

TEST_CASE("safetensors writer output is byte-identical to the reference writer", "[io]") {
  testing::TempDir dir;
  save_safetensors(dir / "ours.safetensors", reference_tensors(), kReferenceMetadata);
  CHECK(read_file(dir / "ours.safetensors") ==
        read_file(fs::path(SAES_SOURCE_DIR) / "tests/data/reference_all_dtypes.safetensors"));
}

}  // namespace
}  // namespace saes::io

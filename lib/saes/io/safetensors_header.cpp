// safetensors reading without torch: the header's validation (SafetensorsFile::open) and the dtype
// table. Tensors (views of the mapping) and the writer are in safetensors.cpp. Layout and checks
// follow the Python `safetensors` library; see docs/formats.md "safetensors". Kept torch-free so
// the libFuzzer target (fuzz/safetensors_fuzz.cpp) builds with clang.
#include "saes/io/safetensors.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/mmap_file.h"

namespace saes::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; saes reads and writes it by memcpy");

using Json = nlohmann::json;

// The Python reader's limit (MAX_HEADER_SIZE in safetensors/src/tensor.rs).
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
constexpr std::string_view kMetadataKey = "__metadata__";

// In the order of the Python library's `Dtype` enum (increasing alignment); its writer sorts
// tensors by that order, descending, then by name. Index in this table = that order.
struct DTypeCode {
  DType dtype;
  std::string_view code;
};
constexpr std::array<DTypeCode, 10> kCodes = {{
    {DType::kBool, "BOOL"},
    {DType::kUInt8, "U8"},
    {DType::kInt8, "I8"},
    {DType::kInt16, "I16"},
    {DType::kFloat16, "F16"},
    {DType::kBFloat16, "BF16"},
    {DType::kInt32, "I32"},
    {DType::kFloat32, "F32"},
    {DType::kFloat64, "F64"},
    {DType::kInt64, "I64"},
}};

std::size_t alignment_rank(DType dtype) {
  for (std::size_t i = 0; i < kCodes.size(); ++i) {
    if (kCodes[i].dtype == dtype) return i;
  }
  SAES_ASSERT(false, "DType {} missing from the safetensors table", dtype_name(dtype));
  return 0;
}

std::string known_codes() {
  std::string out;
  for (const auto& entry : kCodes) out += (out.empty() ? "" : ", ") + std::string(entry.code);
  return out;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Error messages are one line: the JSON library may quote raw header bytes.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return text;
}

std::uint64_t read_u64_le(const std::byte* bytes) {
  std::uint64_t value = 0;
  std::memcpy(&value, bytes, sizeof(value));
  return value;
}

// ---- reading: header validation ----------------------------------------------------------------

Json parse_header_json(const std::string& file, std::string_view text) {
  std::set<std::string> seen;
  std::string duplicate;
  Json::parser_callback_t track_keys = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  Json header;
  try {
    header = Json::parse(text.begin(), text.end(), track_keys);
  } catch (const Json::exception& e) {
    SAES_THROW(DataError, "{}: safetensors header is not valid JSON: {}", file, one_line(e.what()));
  }
  SAES_CHECK(header.is_object(), DataError, "{}: safetensors header must be a JSON object, got {}",
             file, header.type_name());
  SAES_CHECK(duplicate.empty(), DataError, "{}: header lists \"{}\" twice", file, duplicate);
  return header;
}

const Json& require_key(const std::string& where, const Json& entry, const char* key) {
  auto it = entry.find(key);
  SAES_CHECK(it != entry.end(), DataError, "{}: missing \"{}\"", where, key);
  return *it;
}

std::vector<std::uint64_t> parse_unsigned_array(const std::string& where, const Json& value,
                                                const char* key) {
  SAES_CHECK(value.is_array(), DataError, "{}: \"{}\" must be an array of integers >= 0, got {}",
             where, key, one_line(value.dump()));
  std::vector<std::uint64_t> out;
  for (const auto& item : value) {
    SAES_CHECK(item.is_number_unsigned(), DataError, "{}: \"{}\" must hold integers >= 0, got {}",
               where, key, one_line(value.dump()));
    out.push_back(item.get<std::uint64_t>());
  }
  return out;
}

DType parse_dtype(const std::string& where, const Json& value) {
  SAES_CHECK(value.is_string(), DataError, "{}: \"dtype\" must be a string, got {}", where,
             one_line(value.dump()));
  const auto& code = value.get_ref<const std::string&>();
  for (const auto& entry : kCodes) {
    if (entry.code == code) return entry.dtype;
  }
  SAES_THROW(DataError, "{}: unsupported dtype \"{}\" (saes reads {})", where, one_line(code),
             known_codes());
}

// One tensor entry; checks everything that concerns this tensor alone.
SafetensorsTensorInfo parse_tensor(const std::string& where, const Json& entry,
                                   std::uint64_t buffer_bytes) {
  SAES_CHECK(entry.is_object(), DataError,
             "{}: expected an object with dtype, shape and data_offsets, got {}", where,
             entry.type_name());
  SafetensorsTensorInfo info;
  info.dtype = parse_dtype(where, require_key(where, entry, "dtype"));
  std::uint64_t n_bytes = dtype_size(info.dtype);
  for (std::uint64_t dim :
       parse_unsigned_array(where, require_key(where, entry, "shape"), "shape")) {
    bool overflow = dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
                    __builtin_mul_overflow(n_bytes, dim, &n_bytes);
    SAES_CHECK(!overflow, DataError, "{}: shape {} overflows 64-bit sizes", where,
               one_line(entry.at("shape").dump()));
    info.shape.push_back(static_cast<std::int64_t>(dim));
  }
  auto offsets =
      parse_unsigned_array(where, require_key(where, entry, "data_offsets"), "data_offsets");
  SAES_CHECK(offsets.size() == 2, DataError, "{}: \"data_offsets\" must be [begin, end], got {}",
             where, one_line(entry.at("data_offsets").dump()));
  info.data_begin = offsets[0];
  info.data_end = offsets[1];
  SAES_CHECK(info.data_begin <= info.data_end, DataError,
             "{}: data_offsets [{}, {}] have begin > end", where, info.data_begin, info.data_end);
  SAES_CHECK(info.data_end <= buffer_bytes, DataError,
             "{}: data_offsets [{}, {}] out of range: the data region has {} bytes", where,
             info.data_begin, info.data_end, buffer_bytes);
  SAES_CHECK(info.data_end - info.data_begin == n_bytes, DataError,
             "{}: data_offsets [{}, {}] span {} bytes, but dtype {} and shape {} need {}", where,
             info.data_begin, info.data_end, info.data_end - info.data_begin,
             safetensors_dtype_code(info.dtype), shape_text(info.shape), n_bytes);
  return info;
}

std::map<std::string, std::string> parse_metadata(const std::string& file, const Json& value) {
  SAES_CHECK(value.is_object(), DataError, "{}: \"__metadata__\" must be an object, got {}", file,
             value.type_name());
  std::map<std::string, std::string> out;
  for (const auto& [key, item] : value.items()) {
    SAES_CHECK(item.is_string(), DataError,
               "{}: \"__metadata__\" value of \"{}\" must be a string, got {}", file, one_line(key),
               one_line(item.dump()));
    out.emplace(key, item.get<std::string>());
  }
  return out;
}

// The tensors must tile the data region exactly, as the Python reader demands (it rejects holes
// and trailing bytes too). Returns the names in file order.
std::vector<std::string> check_coverage(const std::string& file,
                                        const std::map<std::string, SafetensorsTensorInfo>& infos,
                                        std::uint64_t buffer_bytes) {
  std::vector<std::tuple<std::uint64_t, std::uint64_t, std::string>> order;
  for (const auto& [name, info] : infos) order.emplace_back(info.data_begin, info.data_end, name);
  std::sort(order.begin(), order.end());
  std::uint64_t covered = 0;
  std::string previous;
  std::vector<std::string> names;
  for (const auto& [begin, end, name] : order) {
    SAES_CHECK(begin <= covered, DataError,
               "{}: tensor \"{}\": bytes [{}, {}) of the data region belong to no tensor (holes "
               "are invalid, as in the Python safetensors reader)",
               file, name, covered, begin);
    SAES_CHECK(begin == covered, DataError,
               "{}: tensor \"{}\": data_offsets [{}, {}] overlap tensor \"{}\" (which ends at {})",
               file, name, begin, end, previous, covered);
    covered = end;
    previous = name;
    names.push_back(name);
  }
  SAES_CHECK(covered == buffer_bytes, DataError,
             "{}: tensors cover {} bytes but the data region (file size - 8 - header length) has "
             "{}; the buffer must end at the end of the file",
             file, covered, buffer_bytes);
  return names;
}

}  // namespace

std::string_view safetensors_dtype_code(DType dtype) { return kCodes[alignment_rank(dtype)].code; }

std::int64_t SafetensorsTensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto dim : shape) n *= dim;
  return n;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile out;
  out.file_ = std::make_shared<const MmapFile>(MmapFile::open(path));
  const std::string file = path.string();
  const std::uint64_t size = out.file_->size();
  SAES_CHECK(size >= 8, DataError,
             "{}: file has {} bytes, fewer than the 8-byte header length of a safetensors file",
             file, size);
  const std::uint64_t header_bytes = read_u64_le(out.file_->data());
  SAES_CHECK(header_bytes <= kMaxHeaderBytes, DataError,
             "{}: huge header: header length {} exceeds the limit of {} bytes (not a safetensors "
             "file?)",
             file, header_bytes, kMaxHeaderBytes);
  SAES_CHECK(header_bytes <= size - 8, DataError,
             "{}: header length {} exceeds the {} bytes that follow the length field", file,
             header_bytes, size - 8);
  out.data_offset_ = 8 + header_bytes;
  const std::uint64_t buffer_bytes = size - out.data_offset_;

  Json header = parse_header_json(
      file, std::string_view(reinterpret_cast<const char*>(out.file_->data()) + 8, header_bytes));
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      out.metadata_ = parse_metadata(file, value);
    } else {
      std::string where = fmt::format("{}: tensor \"{}\"", file, one_line(key));
      out.infos_.emplace(key, parse_tensor(where, value, buffer_bytes));
    }
  }
  out.names_ = check_coverage(file, out.infos_, buffer_bytes);
  return out;
}

const std::filesystem::path& SafetensorsFile::path() const { return file_->path(); }

const SafetensorsTensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = infos_.find(name);
  if (it != infos_.end()) return it->second;
  std::vector<std::string> shown(names_.begin(),
                                 names_.begin() + std::min<std::size_t>(names_.size(), 8));
  SAES_THROW(DataError, "{}: no tensor \"{}\" (the file has {} tensors: {}{})", path().string(),
             name, names_.size(), fmt::join(shown, ", "),
             shown.size() < names_.size() ? ", ..." : "");
}

std::size_t safetensors_dtype_rank(DType dtype) { return alignment_rank(dtype); }

std::string safetensors_one_line(std::string text) { return one_line(std::move(text)); }

}  // namespace saes::io

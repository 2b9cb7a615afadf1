// DType names, sizes and the torch bridge.
#include "saes/core/dtype.h"

#include <array>

#include "saes/core/error.h"

namespace saes {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
  c10::ScalarType torch;
};

constexpr std::array<DTypeInfo, 10> kDTypes = {{
    {DType::kFloat32, "float32", 4, c10::ScalarType::Float},
    {DType::kFloat16, "float16", 2, c10::ScalarType::Half},
    {DType::kBFloat16, "bfloat16", 2, c10::ScalarType::BFloat16},
    {DType::kFloat64, "float64", 8, c10::ScalarType::Double},
    {DType::kInt64, "int64", 8, c10::ScalarType::Long},
    {DType::kInt32, "int32", 4, c10::ScalarType::Int},
    {DType::kInt16, "int16", 2, c10::ScalarType::Short},
    {DType::kInt8, "int8", 1, c10::ScalarType::Char},
    {DType::kUInt8, "uint8", 1, c10::ScalarType::Byte},
    {DType::kBool, "bool", 1, c10::ScalarType::Bool},
}};

const DTypeInfo& info(DType dtype) {
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  SAES_ASSERT(false, "unknown DType {}", static_cast<int>(dtype));
  return kDTypes[0];
}

}  // namespace

std::string_view dtype_name(DType dtype) { return info(dtype).name; }
std::size_t dtype_size(DType dtype) { return info(dtype).size; }
bool dtype_is_floating(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16 ||
         dtype == DType::kFloat64;
}
c10::ScalarType to_torch(DType dtype) { return info(dtype).torch; }

DType from_torch(c10::ScalarType type) {
  for (const auto& entry : kDTypes) {
    if (entry.torch == type) return entry.dtype;
  }
  SAES_THROW(UnsupportedError, "torch dtype {} is not supported by saes", c10::toString(type));
}

std::optional<DType> try_parse_dtype(std::string_view text) {
  if (text.substr(0, 6) == "torch.") text.remove_prefix(6);
  for (const auto& entry : kDTypes) {
    if (entry.name == text) return entry.dtype;
  }
  struct Alias {
    std::string_view alias;
    DType dtype;
  };
  static constexpr std::array<Alias, 10> kAliases = {{{"fp32", DType::kFloat32},
                                                      {"float", DType::kFloat32},
                                                      {"fp16", DType::kFloat16},
                                                      {"half", DType::kFloat16},
                                                      {"bf16", DType::kBFloat16},
                                                      {"fp64", DType::kFloat64},
                                                      {"double", DType::kFloat64},
                                                      {"int", DType::kInt64},
                                                      {"long", DType::kInt64},
                                                      {"f32", DType::kFloat32}}};
  for (const auto& alias : kAliases) {
    if (alias.alias == text) return alias.dtype;
  }
  return std::nullopt;
}

std::string dtype_choices() {
  std::string out;
  for (const auto& entry : kDTypes) {
    if (!out.empty()) out += ", ";
    out += entry.name;
  }
  return out;
}

c10::Device parse_device(const std::string& text) {
  try {
    return c10::Device(text);
  } catch (const std::exception&) {
    SAES_THROW(ConfigError, "invalid device \"{}\": expected cpu, cuda or cuda:N", text);
  }
}

}  // namespace saes

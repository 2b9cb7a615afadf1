// Element types and devices as saes names them in configs and files, and the one bridge to torch.
// Parsing accepts the original's spellings (`float32`, `fp32`, `torch.float32`, `bf16`, ...).
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace saes {

enum class DType {
  kFloat32,
  kFloat16,
  kBFloat16,
  kFloat64,
  kInt64,
  kInt32,
  kInt16,
  kInt8,
  kUInt8,
  kBool,
};

/// Canonical name: "float32", "float16", "bfloat16", "float64", "int64", ..., "bool".
std::string_view dtype_name(DType dtype);
/// Accepts canonical names, short forms (fp32, fp16, bf16, fp64, float, int) and `torch.`-prefixed
/// forms. Returns nullopt for anything else.
std::optional<DType> try_parse_dtype(std::string_view text);
/// All accepted canonical names, comma-separated (for error messages).
std::string dtype_choices();
/// Bytes per element.
std::size_t dtype_size(DType dtype);
bool dtype_is_floating(DType dtype);

c10::ScalarType to_torch(DType dtype);
/// Throws UnsupportedError for torch types saes does not store (complex, quantized, ...).
DType from_torch(c10::ScalarType type);

/// Parses "cpu", "cuda", "cuda:1"; throws ConfigError naming the text otherwise.
c10::Device parse_device(const std::string& text);

}  // namespace saes

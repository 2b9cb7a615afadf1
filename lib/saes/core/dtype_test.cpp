// Tests of DType names, aliases and the torch bridge.
#include <catch2/catch.hpp>

#include "saes/core/dtype.h"
#include "saes/core/error.h"

using saes::DType;

TEST_CASE("dtype names round-trip and accept the original's aliases", "[core]") {
  for (DType d : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt64,
                  DType::kInt32, DType::kInt16, DType::kInt8, DType::kUInt8, DType::kBool}) {
    auto parsed = saes::try_parse_dtype(saes::dtype_name(d));
    REQUIRE(parsed.has_value());
    CHECK(*parsed == d);
    CHECK(saes::from_torch(saes::to_torch(d)) == d);
  }
  CHECK(saes::try_parse_dtype("torch.bfloat16") == DType::kBFloat16);
  CHECK(saes::try_parse_dtype("fp16") == DType::kFloat16);
  CHECK(saes::try_parse_dtype("bf16") == DType::kBFloat16);
  CHECK_FALSE(saes::try_parse_dtype("float8").has_value());
  CHECK(saes::dtype_size(DType::kBFloat16) == 2);
}

TEST_CASE("device strings are parsed or rejected with the text", "[core]") {
  CHECK(saes::parse_device("cpu").is_cpu());
  CHECK(saes::parse_device("cuda:1").index() == 1);
  try {
    saes::parse_device("gpu0");
    FAIL("expected ConfigError");
  } catch (const saes::ConfigError& e) {
    CHECK(std::string(e.what()).find("gpu0") != std::string::npos);
  }
}

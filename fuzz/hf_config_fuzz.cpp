// Hugging Face config.json text -> TransformerSpec: a validated spec or a saes::Error.
#include "fuzz_support.h"
#include "saes/lm/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  saes::fuzz::expect_clean([&] { (void)saes::lm::parse_hf_config(text, "config.json"); });
  return 0;
}

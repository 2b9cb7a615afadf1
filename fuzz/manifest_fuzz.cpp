// Shard manifests (manifest.json): parsed and validated, or a saes::Error; an accepted manifest
// writes back to JSON that parses to the same manifest text.
#include "fuzz_support.h"
#include "saes/io/shard_format.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  saes::fuzz::expect_clean([&] {
    const auto manifest = saes::io::manifest_from_json(text, "manifest.json");
    const std::string again = saes::io::manifest_to_json(manifest);
    if (saes::io::manifest_to_json(saes::io::manifest_from_json(again, "again")) != again) {
      std::fprintf(stderr, "fuzz: manifest does not round-trip\n");
      std::abort();
    }
  });
  return 0;
}

// Experiment YAML files: the first byte picks the executable (generate, train, analyze, convert),
// the rest is the file. Parsing is strict and validates; an accepted file dumps to YAML that parses
// and validates again to the same dump (what save_resolved_config and --resume rely on).
#include "fuzz_support.h"
#include "saes/config/config_loader.h"

namespace {

template <typename Parse>
void round_trip(std::string_view text, Parse parse) {
  saes::fuzz::expect_clean([&] {
    const auto settings = parse(text, "fuzz.yaml");
    const std::string dumped = saes::config::dump_yaml(settings);
    const std::string again = saes::config::dump_yaml(parse(dumped, "dumped.yaml"));
    if (again != dumped) {
      std::fprintf(stderr, "fuzz_config: dump does not round-trip:\n%s\n---\n%s\n", dumped.c_str(),
                   again.c_str());
      std::abort();
    }
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  using namespace saes::config;
  switch (data[0] % 4) {
    case 0:
      round_trip(text, [](std::string_view t, std::string_view n) {
        return parse_generate_settings(t, n);
      });
      break;
    case 1:
      round_trip(text, [](std::string_view t, std::string_view n) {
        return parse_train_settings(t, n);
      });
      break;
    case 2:
      round_trip(text, [](std::string_view t, std::string_view n) {
        return parse_analyze_settings(t, n);
      });
      break;
    default:
      round_trip(text, [](std::string_view t, std::string_view n) {
        return parse_convert_settings(t, n);
      });
  }
  return 0;
}

// safetensors files: open() validates the whole header; every tensor it then lists must lie inside
// the data region with the byte count its dtype and shape imply (what tensor() relies on).
#include "fuzz_support.h"
#include "saes/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = saes::fuzz::write_input(data, size, "input.safetensors");
  saes::fuzz::expect_clean([&] {
    const auto file = saes::io::SafetensorsFile::open(path);
    const std::uint64_t region = size - file.data_offset();
    for (const auto& name : file.names()) {
      const auto& info = file.info(name);
      const auto bytes = static_cast<std::uint64_t>(info.numel()) * saes::dtype_size(info.dtype);
      if (info.data_begin > info.data_end || info.data_end > region ||
          info.data_end - info.data_begin != bytes) {
        std::fprintf(stderr, "fuzz: accepted tensor %s outside its bytes\n", name.c_str());
        std::abort();
      }
    }
    (void)file.metadata();
  });
  return 0;
}

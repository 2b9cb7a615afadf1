// Shard files: parse() checks magic, version, directory checksum and length; every section it
// accepts must then decode (all frames, decoded checksums verified) or fail with saes::Error.
#include <vector>

#include "fuzz_support.h"
#include "saes/io/shard_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  saes::fuzz::expect_clean([&] {
    const auto file = saes::io::ShardFile::parse(bytes, "input.shard");
    std::vector<std::vector<std::byte>> buffers;
    std::vector<saes::io::ShardFile::DecodeTarget> targets;
    for (const auto& section : file.sections()) {
      if (section.raw_bytes > (std::uint64_t{64} << 20)) return;  // a valid but huge claim
      buffers.emplace_back(section.raw_bytes);
    }
    for (std::size_t i = 0; i < file.sections().size(); ++i) {
      targets.push_back({&file.sections()[i], buffers[i].data()});
    }
    file.decode(targets, 1, /*verify_decoded=*/true);
  });
  return 0;
}

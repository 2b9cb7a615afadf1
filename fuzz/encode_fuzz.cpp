// Encoding arbitrary text with real tokenizers (the files named in SAES_FUZZ_TOKENIZERS, colon
// separated; bench/fuzz.sh passes the test assets' GPT-2, GPT-NeoX and tok512 tokenizers): ids in
// range, decode never fails on them, and printable-ASCII text round-trips through byte-level BPE.
#include <memory>
#include <vector>

#include "tokenizer_exercise.h"

namespace {

std::vector<std::unique_ptr<saes::lm::Tokenizer>> load_all() {
  std::vector<std::unique_ptr<saes::lm::Tokenizer>> out;
  const char* list = std::getenv("SAES_FUZZ_TOKENIZERS");
  if (list == nullptr || *list == '\0') {
    std::fprintf(stderr, "fuzz_encode: set SAES_FUZZ_TOKENIZERS=file[:file...]\n");
    std::exit(2);
  }
  std::string_view rest(list);
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const std::string path(rest.substr(0, colon));
    out.push_back(saes::lm::load_tokenizer(path));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
  }
  return out;
}

bool printable_ascii(std::string_view text) {
  for (const char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto tokenizers = load_all();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const auto& tokenizer : tokenizers) {
    saes::fuzz::expect_clean([&] {
      const auto ids = tokenizer->encode(text);
      for (const auto id : ids) {
        if (id < 0 || id >= tokenizer->vocab_size()) std::abort();
      }
      const std::string back = tokenizer->decode(ids);
      if (tokenizer->kind() == "byte_level_bpe" && printable_ascii(text) && back != text) {
        std::fprintf(stderr, "fuzz_encode: %s does not round-trip\n",
                     std::string(tokenizer->kind()).c_str());
        std::abort();
      }
    });
  }
  return 0;
}

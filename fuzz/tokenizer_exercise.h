// What the tokenizer targets do with a tokenizer that loaded: encode texts with special tokens,
// odd whitespace and invalid UTF-8, decode the ids back, and show pieces; every id returned must
// be inside the vocabulary.
#pragma once

#include <array>

#include "fuzz_support.h"
#include "saes/lm/tokenizer.h"

namespace saes::fuzz {

inline void exercise(const saes::lm::Tokenizer& tokenizer) {
  static constexpr std::array<std::string_view, 5> kTexts = {
      "Once upon a time, there was a little girl.", "  two  spaces\n\ttab <|endoftext|> <s></s>",
      "\xff\xfe invalid \xc3 utf-8", "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x8e\x89 <0x0A>", ""};
  const std::int64_t vocab = tokenizer.vocab_size();
  for (const auto text : kTexts) {
    const auto ids = tokenizer.encode(text);
    for (const auto id : ids) {
      if (id < 0 || id >= vocab) {
        std::fprintf(stderr, "fuzz: encode returned id %lld outside [0, %lld)\n",
                     static_cast<long long>(id), static_cast<long long>(vocab));
        std::abort();
      }
    }
    (void)tokenizer.decode(ids);
  }
  for (std::int64_t id = 0; id < vocab && id < 64; ++id) (void)tokenizer.piece(id);
  (void)tokenizer.special_ids();
}

/// Loads `path` with load_tokenizer and exercises it.
inline void load_and_exercise(const std::filesystem::path& path) {
  expect_clean([&] { exercise(*saes::lm::load_tokenizer(path)); });
}

}  // namespace saes::fuzz

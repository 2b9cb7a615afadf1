// RegexSplitter: a pre-tokenizer regex (PCRE2, UTF + Unicode properties, JIT-compiled once) that
// cuts text into pieces the way Hugging Face's Split(behavior="Isolated") and GPT-2's findall do.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace saes::lm {

/// GPT-2's pre-tokenizer pattern (also GPT-NeoX's, and HF's ByteLevel with use_regex=true).
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class RegexSplitter {
 public:
  /// Compiles `pattern`; throws DataError quoting the pattern and PCRE2's message when it is
  /// invalid.
  explicit RegexSplitter(const std::string& pattern);
  ~RegexSplitter();
  RegexSplitter(RegexSplitter&&) noexcept;
  RegexSplitter& operator=(RegexSplitter&&) noexcept;

  /// Pieces of `text` (valid UTF-8): every match, and every non-empty stretch between matches, in
  /// order. The pieces concatenate to `text` and view into it.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace saes::lm

// Text-level steps of Hugging Face tokenizer pipelines: splitting out added tokens (longest match
// first) and the normalizers we support. The BPE models themselves are in tokenizer_bpe.h.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace saes::lm {

/// An entry of tokenizer.json's `added_tokens` (or a GPT-2 special token).
struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool special = false;
  bool lstrip = false;       ///< also swallows white space on its left
  bool rstrip = false;       ///< also swallows white space on its right
  bool single_word = false;  ///< matches only when not inside a word
};

/// Plain text, or (token != nullptr) one occurrence of an added token.
struct TextSegment {
  std::string_view text;
  const AddedToken* token = nullptr;
};

class AddedTokenMatcher {
 public:
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);
  /// Cuts `text` at added tokens, leftmost first and longest first at one position. Tokens are
  /// matched on the raw text, before normalization (exact when normalizers leave their contents
  /// unchanged, as NFC does for GPT-NeoX's space runs).
  std::vector<TextSegment> split(std::string_view text) const;
  /// The added token with `id`, or nullptr.
  const AddedToken* find(int64_t id) const;
  /// The added token spelled `content`, or nullptr.
  const AddedToken* find(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  std::array<std::vector<std::size_t>, 256> by_first_byte_;  ///< indices, longest content first
  std::unordered_map<int64_t, std::size_t> by_id_;
};

/// One normalizer of tokenizer.json (a "Sequence" is flattened into a list of these).
struct NormalizerStep {
  enum class Kind { kNfc, kNfkc, kNfd, kNfkd, kPrepend, kReplace, kLowercase };
  Kind kind = Kind::kNfc;
  std::string pattern;  ///< kReplace: the literal string replaced
  std::string content;  ///< kPrepend: the prefix; kReplace: the replacement
};

/// `text` with every occurrence of `pattern` (non-empty; else unchanged) replaced by `content`.
std::string replace_all(std::string_view text, std::string_view pattern, std::string_view content);

/// The byte spelled by a byte-fallback token "<0xXX>" (upper-case hex), or nullopt for other
/// tokens.
std::optional<char> byte_token_value(std::string_view token);

/// `text` (valid UTF-8) after every step in order. Prepend leaves empty text empty, as HF does.
std::string apply_normalizers(const std::vector<NormalizerStep>& steps, std::string_view text);

}  // namespace saes::lm

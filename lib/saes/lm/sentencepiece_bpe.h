// SentencePieceBpeTokenizer: Hugging Face tokenizer.json BPE in SentencePiece style (Llama 1/2,
// Mistral, TinyLlama): "▁" for spaces (Replace/Prepend normalizers or a Metaspace pre-tokenizer),
// merges on characters and byte fallback ("<0x0A>"). Reading tokenizer.json is left to
// tokenizer_json.cpp.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "saes/lm/tokenizer.h"
#include "saes/lm/tokenizer_bpe.h"
#include "saes/lm/tokenizer_text.h"

namespace saes::lm {

inline constexpr std::string_view kMetaspace = "\u2581";

/// HF's Metaspace pre-tokenizer.
struct MetaspaceOptions {
  enum class Prepend { kAlways, kFirst, kNever };
  std::string replacement = std::string(kMetaspace);
  Prepend prepend = Prepend::kAlways;  ///< kFirst: only for text at the very start of the input
  bool split = true;                   ///< cut before every replacement character
};

struct SentencePieceBpeOptions {
  BpeVocab vocab;
  std::vector<AddedToken> added_tokens;
  std::vector<NormalizerStep> normalizers;
  std::optional<MetaspaceOptions> metaspace;
  UnknownPolicy unknown;
  std::string decode_replacement = std::string(kMetaspace);  ///< turned back into " " by decode
  int decode_strip_leading_spaces = 0;                       ///< HF Strip decoder (Llama: 1)
  SpecialTokenIds special_ids;
  std::string source;  ///< file name used in error messages
};

class SentencePieceBpeTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceBpeTokenizer(SentencePieceBpeOptions options);

  std::vector<int64_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int64_t> ids) const override;
  std::string piece(int64_t id) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  SpecialTokenIds special_ids() const override { return special_ids_; }
  std::string_view kind() const override { return "sentencepiece_bpe"; }

 private:
  void encode_segment(std::string_view text, bool at_start, std::vector<int64_t>& out) const;

  BpeModel model_;
  AddedTokenMatcher added_;
  std::vector<NormalizerStep> normalizers_;
  std::optional<MetaspaceOptions> metaspace_;
  UnknownPolicy unknown_;
  std::string decode_replacement_;
  int decode_strip_leading_spaces_ = 0;
  SpecialTokenIds special_ids_;
  int64_t vocab_size_ = 0;
};

}  // namespace saes::lm

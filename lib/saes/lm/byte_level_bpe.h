// ByteLevelBpeTokenizer: GPT-2-style byte-level BPE (GPT-2, GPT-NeoX/Pythia, Qwen2, Llama 3): added
// tokens, normalizers, a regex pre-tokenizer, bytes mapped to printable characters, then ranked BPE
// merges. Reading tokenizer.json is left to tokenizer_json.cpp; GPT-2's vocab/merges file pair is
// read here.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "saes/lm/tokenizer.h"
#include "saes/lm/tokenizer_bpe.h"
#include "saes/lm/tokenizer_regex.h"
#include "saes/lm/tokenizer_text.h"

namespace saes::lm {

struct ByteLevelBpeOptions {
  BpeVocab vocab;  ///< token strings in GPT-2's byte alphabet ("Ġthe")
  std::vector<AddedToken> added_tokens;
  std::vector<NormalizerStep> normalizers;
  std::string split_pattern = std::string(kGpt2SplitPattern);  ///< empty: no regex split
  bool add_prefix_space =
      false;  ///< HF ByteLevel: prepend " " to text that does not start with one
  SpecialTokenIds special_ids;
  std::string source;  ///< file name used in error messages
};

class ByteLevelBpeTokenizer final : public Tokenizer {
 public:
  explicit ByteLevelBpeTokenizer(ByteLevelBpeOptions options);

  std::vector<int64_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int64_t> ids) const override;
  std::string piece(int64_t id) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  SpecialTokenIds special_ids() const override { return special_ids_; }
  std::string_view kind() const override { return "byte_level_bpe"; }

 private:
  void encode_segment(std::string_view text, std::vector<int64_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int64_t>& out) const;

  BpeModel model_;
  AddedTokenMatcher added_;
  std::vector<NormalizerStep> normalizers_;
  std::optional<RegexSplitter> splitter_;
  bool add_prefix_space_ = false;
  SpecialTokenIds special_ids_;
  int64_t vocab_size_ = 0;
  std::unordered_map<std::string, char> alphabet_to_byte_;
  mutable std::mutex cache_mutex_;  ///< guards cache_ (piece -> ids), cleared when it grows large
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

/// GPT-2 from `vocab.json` (or `encoder.json`: {token: id}) and `merges.txt` (or `vocab.bpe`: an
/// optional
/// "#version" line, then "a b" per line in rank order). "<|endoftext|>" is a special added token
/// and serves as BOS and EOS, as in Hugging Face's GPT-2 tokenizer. Throws IoError/DataError naming
/// the file.
std::unique_ptr<Tokenizer> load_gpt2_bpe(const std::filesystem::path& vocab_json,
                                         const std::filesystem::path& merges_txt);

}  // namespace saes::lm

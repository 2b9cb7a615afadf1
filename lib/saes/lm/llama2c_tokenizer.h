// Llama2cTokenizer: llama2.c's `tokenizer.bin` format (e.g. tok512.bin) with run.c's own encode: a
// dummy " " prefix, one token per UTF-8 character (else its bytes as ids byte+3), then greedy
// merging of the adjacent pair whose concatenation is the highest-scoring vocabulary entry.
#pragma once

#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "saes/lm/tokenizer.h"

namespace saes::lm {

class Llama2cTokenizer final : public Tokenizer {
 public:
  /// Reads a uint32 max_token_length, then {float32 score; int32 len; len bytes} records up to the
  /// end of the file (one per id). Throws IoError when missing, DataError (naming the file and
  /// record) when truncated or malformed.
  explicit Llama2cTokenizer(const std::filesystem::path& path);

  /// run.c `encode(text, bos=0, eos=0)`. Unlike tok512.model it keeps runs of white space; see
  /// tokenizer_test.cpp for where the two differ.
  std::vector<int64_t> encode(std::string_view text) const override;
  /// Pieces concatenated; "<0xXX>" pieces give their byte, BOS/EOS give nothing, and the
  /// dummy-prefix space at the start is dropped (as SentencePiece decodes), so decode(encode(s)) ==
  /// s.
  std::string decode(std::span<const int64_t> ids) const override;
  /// The stored piece (llama2.c stores " " where SentencePiece has "▁").
  std::string piece(int64_t id) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  /// BOS 1 and EOS 2, as run.c hard-codes.
  SpecialTokenIds special_ids() const override;
  std::string_view kind() const override { return "llama2c"; }

  int max_token_length() const { return max_token_length_; }
  float score(int64_t id) const { return scores_.at(static_cast<std::size_t>(id)); }

 private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int32_t> ids_;
  int max_token_length_ = 0;
};

}  // namespace saes::lm

// SentencePieceModelTokenizer: a SentencePiece `.model` file (ModelProto) run by libsentencepiece, so
// results match Python's SentencePieceProcessor. The library's header stays inside the .cpp.
#pragma once

#include <filesystem>
#include <memory>

#include "saes/lm/tokenizer.h"

namespace saes::lm {

class SentencePieceModelTokenizer final : public Tokenizer {
 public:
  /// Loads `path`; throws IoError when it is missing, DataError when libsentencepiece rejects it.
  explicit SentencePieceModelTokenizer(const std::filesystem::path& path);
  ~SentencePieceModelTokenizer() override;

  /// SentencePieceProcessor.encode(text): the model's own normalization (e.g. collapsing white space).
  std::vector<int64_t> encode(std::string_view text) const override;
  /// SentencePieceProcessor.decode(ids): control tokens (BOS/EOS) give no text.
  std::string decode(std::span<const int64_t> ids) const override;
  std::string piece(int64_t id) const override;
  int64_t vocab_size() const override;
  SpecialTokenIds special_ids() const override { return special_ids_; }
  std::string_view kind() const override { return "sentencepiece_model"; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  SpecialTokenIds special_ids_;
};

}  // namespace saes::lm

// SentencePieceModelTokenizer: SentencePiece `.model` files (a ModelProto protobuf) read and run
// natively, matching SentencePieceProcessor for BPE models with the identity normalizer (Llama,
// llama2.c's tok512). We do not link libsentencepiece: it bundles its own protobuf and crashes next
// to LibTorch's libprotobuf.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "saes/lm/tokenizer.h"

namespace saes::lm {

/// The parts of a ModelProto that encoding and decoding use.
struct SentencePieceModelProto {
  enum class PieceType {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
  };
  struct Piece {
    std::string text;
    float score = 0;
    PieceType type = PieceType::kNormal;
  };
  std::vector<Piece> pieces;
  int model_type = 1;  ///< trainer_spec.model_type: 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR
  bool byte_fallback = false;
  int unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;  ///< -1: none
  bool treat_whitespace_as_suffix = false;
  std::string normalizer_name = "identity";
  std::string precompiled_charsmap;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

/// Parses a serialized ModelProto; throws DataError naming `source` when it is malformed.
SentencePieceModelProto parse_sentencepiece_model(const std::string& bytes,
                                                  const std::string& source);

class SentencePieceModelTokenizer final : public Tokenizer {
 public:
  /// Loads `path`; throws IoError when missing, DataError when malformed, UnsupportedError for a
  /// Unigram, word or char model or a normalizer other than identity (naming it).
  explicit SentencePieceModelTokenizer(const std::filesystem::path& path);

  /// SentencePieceProcessor.encode(text): dummy "▁" prefix, runs of spaces collapsed (when the
  /// model's remove_extra_whitespaces is set), BPE by piece score, byte fallback or <unk>.
  std::vector<int64_t> encode(std::string_view text) const override;
  /// SentencePieceProcessor.decode(ids): "▁" -> " ", byte pieces -> bytes, control pieces (BOS/EOS)
  /// -> "", <unk> -> " ⁇ ", and the dummy-prefix space dropped.
  std::string decode(std::span<const int64_t> ids) const override;
  std::string piece(int64_t id) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(model_.pieces.size()); }
  SpecialTokenIds special_ids() const override { return special_ids_; }
  std::string_view kind() const override { return "sentencepiece_model"; }

 private:
  std::string normalize(std::string_view text) const;

  SentencePieceModelProto model_;
  std::unordered_map<std::string, int32_t> mergeable_;  ///< normal, user-defined: merge targets
  std::vector<int32_t> user_defined_;                   ///< ids, longest piece first
  std::array<int32_t, 256> byte_ids_{};
  SpecialTokenIds special_ids_;
};

}  // namespace saes::lm

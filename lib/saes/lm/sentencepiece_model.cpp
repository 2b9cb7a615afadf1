// SentencePiece `.model` files through libsentencepiece (Debian libsentencepiece-dev).
#include "saes/lm/sentencepiece_model.h"

#include <sentencepiece_processor.h>

#include "saes/core/error.h"
#include "saes/lm/unicode.h"

namespace saes::lm {
namespace {

std::optional<int64_t> optional_id(int id) {
  if (id < 0) return std::nullopt;
  return id;
}

}  // namespace

struct SentencePieceModelTokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
  std::string path;
};

SentencePieceModelTokenizer::SentencePieceModelTokenizer(const std::filesystem::path& path)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = path.string();
  SAES_CHECK(std::filesystem::is_regular_file(path), IoError, "{}: no such SentencePiece model file",
             impl_->path);
  const auto status = impl_->processor.Load(impl_->path);
  SAES_CHECK(status.ok(), DataError, "{}: not a SentencePiece model: {}", impl_->path, status.ToString());
  const auto& p = impl_->processor;
  special_ids_ = SpecialTokenIds{optional_id(p.bos_id()), optional_id(p.eos_id()), optional_id(p.pad_id())};
}

SentencePieceModelTokenizer::~SentencePieceModelTokenizer() = default;

std::vector<int64_t> SentencePieceModelTokenizer::encode(std::string_view text) const {
  const std::string valid = is_valid_utf8(text) ? std::string(text) : repair_utf8(text);
  std::vector<int> ids;
  const auto status = impl_->processor.Encode(valid, &ids);
  SAES_CHECK(status.ok(), DataError, "{}: SentencePiece encode failed: {}", impl_->path, status.ToString());
  return {ids.begin(), ids.end()};
}

std::string SentencePieceModelTokenizer::decode(std::span<const int64_t> ids) const {
  std::vector<int> narrow;
  narrow.reserve(ids.size());
  for (const int64_t id : ids) {
    SAES_CHECK(id >= 0 && id < vocab_size(), DataError, "token id {} is outside the vocabulary [0, {})", id,
               vocab_size());
    narrow.push_back(static_cast<int>(id));
  }
  std::string text;
  const auto status = impl_->processor.Decode(narrow, &text);
  SAES_CHECK(status.ok(), DataError, "{}: SentencePiece decode failed: {}", impl_->path, status.ToString());
  return text;
}

std::string SentencePieceModelTokenizer::piece(int64_t id) const {
  SAES_CHECK(id >= 0 && id < vocab_size(), DataError, "token id {} is outside the vocabulary [0, {})", id,
             vocab_size());
  return impl_->processor.IdToPiece(static_cast<int>(id));
}

int64_t SentencePieceModelTokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }

}  // namespace saes::lm

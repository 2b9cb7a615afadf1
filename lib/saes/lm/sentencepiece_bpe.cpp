// SentencePiece-style BPE from tokenizer.json: normalize, Metaspace, BPE with byte fallback; and
// decode.
#include "saes/lm/sentencepiece_bpe.h"

#include <algorithm>

#include "saes/core/error.h"
#include "saes/lm/unicode.h"

namespace saes::lm {
SentencePieceBpeTokenizer::SentencePieceBpeTokenizer(SentencePieceBpeOptions options)
    : model_(std::move(options.vocab), options.source),
      added_(std::move(options.added_tokens)),
      normalizers_(std::move(options.normalizers)),
      metaspace_(std::move(options.metaspace)),
      unknown_(options.unknown),
      decode_replacement_(std::move(options.decode_replacement)),
      decode_strip_leading_spaces_(options.decode_strip_leading_spaces),
      special_ids_(options.special_ids) {
  vocab_size_ = model_.size();
  for (const auto& token : added_.tokens()) vocab_size_ = std::max(vocab_size_, token.id + 1);
}

std::vector<int64_t> SentencePieceBpeTokenizer::encode(std::string_view text) const {
  const std::string valid = is_valid_utf8(text) ? std::string(text) : repair_utf8(text);
  std::vector<int64_t> ids;
  for (const TextSegment& segment : added_.split(valid)) {
    if (segment.token != nullptr) {
      ids.push_back(segment.token->id);
    } else {
      encode_segment(segment.text, segment.text.data() == valid.data(), ids);
    }
  }
  return ids;
}

void SentencePieceBpeTokenizer::encode_segment(std::string_view text, bool at_start,
                                               std::vector<int64_t>& out) const {
  std::string normalized = apply_normalizers(normalizers_, text);
  if (!metaspace_) {
    model_.encode_word(normalized, unknown_, out);
    return;
  }
  const MetaspaceOptions& meta = *metaspace_;
  normalized = replace_all(normalized, " ", meta.replacement);
  const bool prepend = meta.prepend == MetaspaceOptions::Prepend::kAlways ||
                       (meta.prepend == MetaspaceOptions::Prepend::kFirst && at_start);
  if (prepend && !normalized.empty() && normalized.rfind(meta.replacement, 0) != 0)
    normalized = meta.replacement + normalized;
  if (!meta.split || meta.replacement.empty()) {
    model_.encode_word(normalized, unknown_, out);
    return;
  }
  // HF Metaspace split: each word starts at a replacement character ("MergedWithNext").
  const std::string_view all = normalized;
  std::size_t begin = 0;
  for (std::size_t hit = all.find(meta.replacement, 1); hit != std::string_view::npos;
       hit = all.find(meta.replacement, hit + meta.replacement.size())) {
    model_.encode_word(all.substr(begin, hit - begin), unknown_, out);
    begin = hit;
  }
  model_.encode_word(all.substr(begin), unknown_, out);
}

std::string SentencePieceBpeTokenizer::decode(std::span<const int64_t> ids) const {
  std::string text;
  // HF Strip decoder: drops up to this many spaces from the start of the text.
  std::size_t strip = static_cast<std::size_t>(std::max(decode_strip_leading_spaces_, 0));
  for (const int64_t id : ids) {
    SAES_CHECK(id >= 0 && id < vocab_size_, DataError,
               "token id {} is outside the vocabulary [0, {})", id, vocab_size_);
    if (const AddedToken* added = added_.find(id)) {
      text += added->content;
      strip = 0;
      continue;
    }
    const std::string& token = model_.token(static_cast<int32_t>(id));
    const auto byte = unknown_.byte_fallback ? byte_token_value(token) : std::nullopt;
    std::string part;
    if (byte) {
      part = std::string(1, *byte);
    } else {
      part = replace_all(token, decode_replacement_, " ");
    }
    if (text.empty()) {
      std::size_t n = 0;
      while (n < part.size() && n < strip && part[n] == ' ') ++n;
      part.erase(0, n);
      strip = part.empty() ? strip - n : 0;
    }
    text += part;
  }
  return text;
}

std::string SentencePieceBpeTokenizer::piece(int64_t id) const {
  SAES_CHECK(id >= 0 && id < vocab_size_, DataError,
             "token id {} is outside the vocabulary [0, {})", id, vocab_size_);
  if (const AddedToken* added = added_.find(id)) return added->content;
  return model_.token(static_cast<int32_t>(id));
}

}  // namespace saes::lm

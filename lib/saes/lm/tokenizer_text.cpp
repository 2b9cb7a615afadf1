// Added-token splitting and normalizers of Hugging Face tokenizer pipelines.
#include "saes/lm/tokenizer_text.h"

#include <utf8proc.h>

#include <algorithm>
#include <cctype>

#include "saes/lm/unicode.h"

namespace saes::lm {
namespace {

/// The code point that ends just before `end` in `text` (valid UTF-8, end > 0).
char32_t char_before(std::string_view text, std::size_t end) {
  std::size_t begin = end - 1;
  while (begin > 0 && (static_cast<unsigned char>(text[begin]) & 0xC0) == 0x80) --begin;
  return decode_utf8_char(text.substr(begin, end - begin)).first;
}

bool is_word_char(char32_t cp) {
  if (cp < 0x80) return std::isalnum(static_cast<int>(cp)) || cp == '_';
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return category >= UTF8PROC_CATEGORY_LU &&
         category <= UTF8PROC_CATEGORY_NO;  // letters, marks, numbers
}

std::string lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto [cp, len] = decode_utf8_char(text.substr(i));
    out.append(
        encode_utf8(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)))));
    i += len;
  }
  return out;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    by_id_.emplace(tokens_[i].id, i);
    if (!tokens_[i].content.empty())
      by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
  }
  for (auto& list : by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [this](std::size_t a, std::size_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
  }
}

std::vector<TextSegment> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<TextSegment> segments;
  std::size_t plain_begin = 0;
  for (std::size_t pos = 0; pos < text.size(); ++pos) {
    const auto& candidates = by_first_byte_[static_cast<unsigned char>(text[pos])];
    const AddedToken* hit = nullptr;
    for (const std::size_t index : candidates) {
      const AddedToken& token = tokens_[index];
      if (text.compare(pos, token.content.size(), token.content) != 0) continue;
      const std::size_t end = pos + token.content.size();
      if (token.single_word &&
          ((pos > 0 && is_word_char(char_before(text, pos))) ||
           (end < text.size() && is_word_char(decode_utf8_char(text.substr(end)).first))))
        continue;
      hit = &token;
      break;
    }
    if (hit == nullptr) continue;
    std::size_t begin = pos, end = pos + hit->content.size();
    while (hit->lstrip && begin > plain_begin && is_unicode_space(char_before(text, begin))) {
      do --begin;
      while ((static_cast<unsigned char>(text[begin]) & 0xC0) == 0x80);
    }
    while (hit->rstrip && end < text.size() &&
           is_unicode_space(decode_utf8_char(text.substr(end)).first))
      end += decode_utf8_char(text.substr(end)).second;
    if (begin > plain_begin)
      segments.push_back({text.substr(plain_begin, begin - plain_begin), nullptr});
    segments.push_back({text.substr(begin, end - begin), hit});
    plain_begin = end;
    pos = end - 1;
  }
  if (plain_begin < text.size()) segments.push_back({text.substr(plain_begin), nullptr});
  return segments;
}

const AddedToken* AddedTokenMatcher::find(int64_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedTokenMatcher::find(std::string_view content) const {
  for (const auto& token : tokens_)
    if (token.content == content) return &token;
  return nullptr;
}

std::string replace_all(std::string_view text, std::string_view pattern, std::string_view content) {
  if (pattern.empty()) return std::string(text);
  std::string out;
  std::size_t pos = 0;
  for (std::size_t hit; (hit = text.find(pattern, pos)) != std::string_view::npos;
       pos = hit + pattern.size()) {
    out.append(text.substr(pos, hit - pos));
    out.append(content);
  }
  out.append(text.substr(pos));
  return out;
}

std::optional<char> byte_token_value(std::string_view token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return std::nullopt;
  int value = 0;
  for (std::size_t i = 3; i < 5; ++i) {
    const char c = token[i];
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) return std::nullopt;
    value = value * 16 + digit;
  }
  return static_cast<char>(value);
}

std::string apply_normalizers(const std::vector<NormalizerStep>& steps, std::string_view text) {
  std::string current(text);
  for (const auto& step : steps) {
    switch (step.kind) {
      case NormalizerStep::Kind::kNfc:
        current = normalize_unicode(current, NormalForm::kNfc);
        break;
      case NormalizerStep::Kind::kNfkc:
        current = normalize_unicode(current, NormalForm::kNfkc);
        break;
      case NormalizerStep::Kind::kNfd:
        current = normalize_unicode(current, NormalForm::kNfd);
        break;
      case NormalizerStep::Kind::kNfkd:
        current = normalize_unicode(current, NormalForm::kNfkd);
        break;
      case NormalizerStep::Kind::kPrepend:
        if (!current.empty()) current = step.content + current;
        break;
      case NormalizerStep::Kind::kReplace:
        current = replace_all(current, step.pattern, step.content);
        break;
      case NormalizerStep::Kind::kLowercase:
        current = lowercase(current);
        break;
    }
  }
  return current;
}

}  // namespace saes::lm

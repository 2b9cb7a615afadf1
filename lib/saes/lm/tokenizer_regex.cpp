// PCRE2-backed RegexSplitter (8-bit library, PCRE2_UTF | PCRE2_UCP so \s, \w match Unicode as in
// HF).
#include "saes/lm/tokenizer_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "saes/core/error.h"

namespace saes::lm {

struct RegexSplitter::Impl {
  pcre2_code* code = nullptr;
  ~Impl() { pcre2_code_free(code); }
};

RegexSplitter::RegexSplitter(const std::string& pattern) : impl_(std::make_unique<Impl>()) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (impl_->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    SAES_THROW(DataError, "pre-tokenizer regex \"{}\" is invalid at offset {}: {}", pattern,
               error_offset, reinterpret_cast<const char*>(message));
  }
  // JIT is an optimization only: PCRE2 falls back to the interpreter when it is unavailable.
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);
}

RegexSplitter::~RegexSplitter() = default;
RegexSplitter::RegexSplitter(RegexSplitter&&) noexcept = default;
RegexSplitter& RegexSplitter::operator=(RegexSplitter&&) noexcept = default;

std::vector<std::string_view> RegexSplitter::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  const std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(impl_->code, nullptr), &pcre2_match_data_free);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t emitted = 0;  // end of the last piece
  std::size_t start = 0;    // where the next search begins
  while (start <= text.size()) {
    // The caller guarantees valid UTF-8, so skip PCRE2's O(n) check on every call.
    const int rc = pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                               match.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    SAES_CHECK(rc >= 0, DataError, "pre-tokenizer regex failed with PCRE2 error {}", rc);
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    const std::size_t begin = ovector[0], end = ovector[1];
    if (begin > emitted) pieces.push_back(text.substr(emitted, begin - emitted));
    if (end > begin) {
      pieces.push_back(text.substr(begin, end - begin));
      emitted = end;
      start = end;
    } else {
      emitted = begin;
      if (begin >= text.size()) break;
      // Empty match: step over one character so the search advances.
      std::size_t step = 1;
      while (begin + step < text.size() &&
             (static_cast<unsigned char>(text[begin + step]) & 0xC0) == 0x80)
        ++step;
      start = begin + step;
    }
  }
  if (emitted < text.size()) pieces.push_back(text.substr(emitted));
  return pieces;
}

}  // namespace saes::lm

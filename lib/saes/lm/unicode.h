// UTF-8 and Unicode helpers for the tokenizers: validation with U+FFFD repair, code-point
// iteration, normalization forms (NFC/NFKC/NFD/NFKD, via utf8proc) and GPT-2's byte <->
// printable-character table.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace saes::lm {

/// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view text);
/// `text` with every ill-formed byte sequence replaced by U+FFFD (one per maximal bad subsequence).
std::string repair_utf8(std::string_view text);
/// Byte length of the UTF-8 character that starts with `lead` (1 for a stray continuation byte).
std::size_t utf8_char_length(unsigned char lead);
/// UTF-8 encoding of code point `cp`.
std::string encode_utf8(char32_t cp);
/// True for Unicode white space (categories Zs/Zl/Zp, and \t \n \v \f \r, U+0085).
bool is_unicode_space(char32_t cp);
/// The code point at the start of `text` (which must be valid UTF-8 and non-empty) and its byte
/// length.
std::pair<char32_t, std::size_t> decode_utf8_char(std::string_view text);

enum class NormalForm { kNfc, kNfkc, kNfd, kNfkd };
/// `text` (valid UTF-8) in normal form `form`; ASCII text is returned unchanged without work.
std::string normalize_unicode(std::string_view text, NormalForm form);

/// GPT-2's `bytes_to_unicode`: byte b -> the UTF-8 of a printable stand-in character (printable
/// Latin-1 bytes map to themselves, the other 68 to U+0100 + k in byte order).
const std::array<std::string, 256>& byte_to_unicode();

}  // namespace saes::lm

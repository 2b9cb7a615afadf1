// llama2.c tokenizer.bin reader and run.c's encode/decode.
#include "saes/lm/llama2c_tokenizer.h"

#include <cstring>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/tokenizer_bpe.h"
#include "saes/lm/unicode.h"

namespace saes::lm {
namespace {

constexpr int64_t kBos = 1;
constexpr int64_t kEos = 2;
constexpr int32_t kByteOffset = 3;  ///< run.c: byte b is token b + 3
constexpr int32_t kMaxPieceBytes = 1 << 16;

template <typename T>
T read_le(const std::string& data, std::size_t& pos) {
  T value;
  std::memcpy(&value, data.data() + pos, sizeof(T));
  pos += sizeof(T);
  return value;
}

}  // namespace

Llama2cTokenizer::Llama2cTokenizer(const std::filesystem::path& path) {
  const std::string data = io::read_file(path);
  const std::string name = path.string();
  SAES_CHECK(data.size() >= 4, DataError, "{}: {} bytes, too short for a llama2.c tokenizer", name,
             data.size());
  std::size_t pos = 0;
  const auto max_len = read_le<uint32_t>(data, pos);
  SAES_CHECK(max_len > 0 && max_len < static_cast<uint32_t>(kMaxPieceBytes), DataError,
             "{}: max_token_length {} is implausible; not a llama2.c tokenizer file", name,
             max_len);
  max_token_length_ = static_cast<int>(max_len);
  while (pos < data.size()) {
    const std::size_t id = pieces_.size();
    SAES_CHECK(data.size() - pos >= 8, DataError, "{}: record {} is truncated at byte {}", name, id,
               pos);
    const auto score = read_le<float>(data, pos);
    const auto len = read_le<int32_t>(data, pos);
    SAES_CHECK(
        len >= 0 && len <= kMaxPieceBytes && data.size() - pos >= static_cast<std::size_t>(len),
        DataError, "{}: record {} has length {} with {} bytes left", name, id, len,
        data.size() - pos);
    pieces_.push_back(data.substr(pos, static_cast<std::size_t>(len)));
    scores_.push_back(score);
    ids_.emplace(pieces_.back(), static_cast<int32_t>(id));  // first id wins for a repeated piece
    pos += static_cast<std::size_t>(len);
  }
  SAES_CHECK(pieces_.size() > kByteOffset + 255, DataError,
             "{}: {} pieces; a llama2.c tokenizer has at least 259 (3 specials + 256 bytes)", name,
             pieces_.size());
}

std::vector<int64_t> Llama2cTokenizer::encode(std::string_view text) const {
  const std::string valid = is_valid_utf8(text) ? std::string(text) : repair_utf8(text);
  std::vector<int32_t> symbols;
  if (valid.empty()) return {};
  if (const auto it = ids_.find(" "); it != ids_.end()) symbols.push_back(it->second);
  for (std::size_t i = 0; i < valid.size();) {
    const std::size_t len =
        std::min(utf8_char_length(static_cast<unsigned char>(valid[i])), valid.size() - i);
    const std::string ch = valid.substr(i, len);
    i += len;
    if (const auto it = ids_.find(ch); it != ids_.end()) {
      symbols.push_back(it->second);
    } else {
      for (const char c : ch) symbols.push_back(static_cast<unsigned char>(c) + kByteOffset);
    }
  }
  // run.c merges the pair with the highest score, the leftmost on ties: priority = -score.
  merge_symbols(symbols, [this](int32_t left, int32_t right) -> std::optional<PairMerge> {
    const auto it = ids_.find(pieces_[static_cast<std::size_t>(left)] +
                              pieces_[static_cast<std::size_t>(right)]);
    if (it == ids_.end()) return std::nullopt;
    return PairMerge{-static_cast<double>(scores_[static_cast<std::size_t>(it->second)]),
                     it->second};
  });
  return {symbols.begin(), symbols.end()};
}

std::string Llama2cTokenizer::decode(std::span<const int64_t> ids) const {
  std::string text;
  bool at_start = true;
  for (const int64_t id : ids) {
    SAES_CHECK(id >= 0 && id < vocab_size(), DataError,
               "token id {} is outside the vocabulary [0, {})", id, vocab_size());
    if (id == kBos || id == kEos) continue;
    std::string_view part = pieces_[static_cast<std::size_t>(id)];
    if (id >= kByteOffset && id < kByteOffset + 256) {
      text += static_cast<char>(id - kByteOffset);
    } else {
      if (at_start && !part.empty() && part[0] == ' ') part.remove_prefix(1);
      text += part;
    }
    at_start = false;
  }
  return text;
}

std::string Llama2cTokenizer::piece(int64_t id) const {
  SAES_CHECK(id >= 0 && id < vocab_size(), DataError,
             "token id {} is outside the vocabulary [0, {})", id, vocab_size());
  return pieces_[static_cast<std::size_t>(id)];
}

SpecialTokenIds Llama2cTokenizer::special_ids() const {
  return SpecialTokenIds{kBos, kEos, std::nullopt};
}

}  // namespace saes::lm

// Byte-level BPE encode/decode and the GPT-2 vocab.json + merges.txt reader.
#include "saes/lm/byte_level_bpe.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/unicode.h"

namespace saes::lm {
namespace {

constexpr std::size_t kMaxCacheEntries = 1 << 16;
constexpr std::size_t kMaxCachedPieceBytes = 256;

}  // namespace

ByteLevelBpeTokenizer::ByteLevelBpeTokenizer(ByteLevelBpeOptions options)
    : model_(std::move(options.vocab), options.source),
      added_(std::move(options.added_tokens)),
      normalizers_(std::move(options.normalizers)),
      add_prefix_space_(options.add_prefix_space),
      special_ids_(options.special_ids) {
  if (!options.split_pattern.empty()) splitter_.emplace(options.split_pattern);
  vocab_size_ = model_.size();
  for (const auto& token : added_.tokens()) vocab_size_ = std::max(vocab_size_, token.id + 1);
  const auto& table = byte_to_unicode();
  for (int b = 0; b < 256; ++b)
    alphabet_to_byte_.emplace(table[static_cast<std::size_t>(b)], static_cast<char>(b));
}

std::vector<int64_t> ByteLevelBpeTokenizer::encode(std::string_view text) const {
  const std::string valid = is_valid_utf8(text) ? std::string(text) : repair_utf8(text);
  std::vector<int64_t> ids;
  for (const TextSegment& segment : added_.split(valid)) {
    if (segment.token != nullptr) {
      ids.push_back(segment.token->id);
    } else {
      encode_segment(segment.text, ids);
    }
  }
  return ids;
}

void ByteLevelBpeTokenizer::encode_segment(std::string_view text, std::vector<int64_t>& out) const {
  std::string normalized = apply_normalizers(normalizers_, text);
  if (add_prefix_space_ && !normalized.empty() && normalized[0] != ' ')
    normalized = " " + normalized;
  if (!splitter_) {
    encode_piece(normalized, out);
    return;
  }
  for (const std::string_view piece : splitter_->split(normalized)) encode_piece(piece, out);
}

void ByteLevelBpeTokenizer::encode_piece(std::string_view piece, std::vector<int64_t>& out) const {
  std::string key(piece);
  {
    const std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const auto& table = byte_to_unicode();
  std::string mapped;
  mapped.reserve(piece.size() * 2);
  for (const char c : piece) mapped += table[static_cast<unsigned char>(c)];
  std::vector<int64_t> ids;
  model_.encode_word(mapped, UnknownPolicy{}, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (key.size() > kMaxCachedPieceBytes) return;
  const std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::move(key), std::move(ids));
}

std::string ByteLevelBpeTokenizer::decode(std::span<const int64_t> ids) const {
  std::string text;
  for (const int64_t id : ids) {
    SAES_CHECK(id >= 0 && id < vocab_size_, DataError,
               "token id {} is outside the vocabulary [0, {})", id, vocab_size_);
    if (const AddedToken* added = added_.find(id)) {
      text += added->content;
      continue;
    }
    const std::string& token = model_.token(static_cast<int32_t>(id));
    for (std::size_t i = 0; i < token.size();) {
      const std::size_t len =
          std::min(utf8_char_length(static_cast<unsigned char>(token[i])), token.size() - i);
      const auto it = alphabet_to_byte_.find(token.substr(i, len));
      if (it != alphabet_to_byte_.end()) {
        text += it->second;
      } else {
        text.append(token, i, len);
      }
      i += len;
    }
  }
  return text;
}

std::string ByteLevelBpeTokenizer::piece(int64_t id) const {
  SAES_CHECK(id >= 0 && id < vocab_size_, DataError,
             "token id {} is outside the vocabulary [0, {})", id, vocab_size_);
  if (const AddedToken* added = added_.find(id)) return added->content;
  return model_.token(static_cast<int32_t>(id));
}

std::unique_ptr<Tokenizer> load_gpt2_bpe(const std::filesystem::path& vocab_json,
                                         const std::filesystem::path& merges_txt) {
  ByteLevelBpeOptions options;
  options.source = vocab_json.string();
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(io::read_file(vocab_json));
  } catch (const nlohmann::json::exception& e) {
    SAES_THROW(DataError, "{}: not valid JSON: {}", vocab_json.string(), e.what());
  }
  SAES_CHECK(vocab.is_object(), DataError, "{}: expected a JSON object {{token: id}}, got {}",
             vocab_json.string(), vocab.type_name());
  for (const auto& [token, id_json] : vocab.items()) {
    SAES_CHECK(id_json.is_number_integer(), DataError,
               "{}: token \"{}\" has id {}, expected a non-negative integer", vocab_json.string(),
               token, id_json.dump());
    options.vocab.place(token, id_json.get<int64_t>(), vocab.size(), vocab_json.string());
  }
  std::istringstream lines(io::read_file(merges_txt));
  std::string line;
  for (std::size_t line_no = 1; std::getline(lines, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const auto space = line.find(' ');
    SAES_CHECK(
        space != std::string::npos && space > 0 && line.find(' ', space + 1) == std::string::npos,
        DataError, "{}:{}: expected a merge \"a b\", got \"{}\"", merges_txt.string(), line_no,
        line);
    options.vocab.merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  const std::string eot = "<|endoftext|>";
  const auto it = std::find(options.vocab.tokens.begin(), options.vocab.tokens.end(), eot);
  if (it != options.vocab.tokens.end()) {
    const int64_t id = it - options.vocab.tokens.begin();
    options.added_tokens.push_back(AddedToken{eot, id, true});
    options.special_ids = SpecialTokenIds{id, id, std::nullopt};
  }
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(options));
}

}  // namespace saes::lm

// SentencePiece ModelProto reader (protobuf wire format) and SentencePiece's BPE encode/decode.
#include "saes/lm/sentencepiece_model.h"

#include <cstring>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/tokenizer_bpe.h"
#include "saes/lm/tokenizer_text.h"
#include "saes/lm/unicode.h"

namespace saes::lm {
namespace {

using PieceType = SentencePieceModelProto::PieceType;
constexpr std::string_view kSpace = "\u2581";
constexpr std::string_view kUnkSurface = " \u2047 ";  // SentencePiece's default unk_surface

/// Minimal protobuf wire-format reader over one message.
class WireReader {
 public:
  WireReader(std::string_view data, const std::string& source) : data_(data), source_(source) {}
  bool done() const { return pos_ >= data_.size(); }

  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      SAES_CHECK(pos_ < data_.size(), DataError, "{}: truncated protobuf varint", source_);
      const auto byte = static_cast<unsigned char>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    SAES_THROW(DataError, "{}: protobuf varint longer than 10 bytes", source_);
  }
  std::string_view bytes() {
    const uint64_t size = varint();
    SAES_CHECK(size <= data_.size() - pos_, DataError,
               "{}: protobuf field of {} bytes overruns the message", source_, size);
    const std::string_view out = data_.substr(pos_, size);
    pos_ += size;
    return out;
  }
  float fixed32_float() {
    SAES_CHECK(data_.size() - pos_ >= 4, DataError, "{}: truncated protobuf fixed32", source_);
    float value;
    std::memcpy(&value, data_.data() + pos_, 4);
    pos_ += 4;
    return value;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0:
        varint();
        return;
      case 1:
        advance(8);
        return;
      case 2:
        bytes();
        return;
      case 5:
        advance(4);
        return;
      default:
        SAES_THROW(DataError, "{}: protobuf wire type {} is not valid here", source_, wire_type);
    }
  }

 private:
  void advance(std::size_t n) {
    SAES_CHECK(data_.size() - pos_ >= n, DataError, "{}: truncated protobuf field", source_);
    pos_ += n;
  }
  std::string_view data_;
  const std::string& source_;
  std::size_t pos_ = 0;
};

SentencePieceModelProto::Piece parse_piece(std::string_view data, const std::string& source) {
  SentencePieceModelProto::Piece piece;
  WireReader r(data, source);
  while (!r.done()) {
    const uint64_t tag = r.varint();
    const auto field = tag >> 3;
    const int wire = static_cast<int>(tag & 7);
    if (field == 1 && wire == 2)
      piece.text = std::string(r.bytes());
    else if (field == 2 && wire == 5)
      piece.score = r.fixed32_float();
    else if (field == 3 && wire == 0)
      piece.type = static_cast<PieceType>(r.varint());
    else
      r.skip(wire);
  }
  return piece;
}

void parse_trainer_spec(std::string_view data, const std::string& source,
                        SentencePieceModelProto& m) {
  WireReader r(data, source);
  while (!r.done()) {
    const uint64_t tag = r.varint();
    const auto field = tag >> 3;
    const int wire = static_cast<int>(tag & 7);
    if (wire != 0) {
      r.skip(wire);
      continue;
    }
    const auto value =
        static_cast<int32_t>(r.varint());  // int32 fields: negatives are 10-byte varints
    switch (field) {
      case 3:
        m.model_type = value;
        break;
      case 24:
        m.treat_whitespace_as_suffix = value != 0;
        break;
      case 35:
        m.byte_fallback = value != 0;
        break;
      case 40:
        m.unk_id = value;
        break;
      case 41:
        m.bos_id = value;
        break;
      case 42:
        m.eos_id = value;
        break;
      case 43:
        m.pad_id = value;
        break;
      default:
        break;
    }
  }
}

void parse_normalizer_spec(std::string_view data, const std::string& source,
                           SentencePieceModelProto& m) {
  WireReader r(data, source);
  while (!r.done()) {
    const uint64_t tag = r.varint();
    const auto field = tag >> 3;
    const int wire = static_cast<int>(tag & 7);
    if (field == 1 && wire == 2)
      m.normalizer_name = std::string(r.bytes());
    else if (field == 2 && wire == 2)
      m.precompiled_charsmap = std::string(r.bytes());
    else if (field == 3 && wire == 0)
      m.add_dummy_prefix = r.varint() != 0;
    else if (field == 4 && wire == 0)
      m.remove_extra_whitespaces = r.varint() != 0;
    else if (field == 5 && wire == 0)
      m.escape_whitespaces = r.varint() != 0;
    else
      r.skip(wire);
  }
}

std::optional<int64_t> optional_id(int id, std::size_t size) {
  if (id < 0 || static_cast<std::size_t>(id) >= size) return std::nullopt;
  return id;
}

}  // namespace

SentencePieceModelProto parse_sentencepiece_model(const std::string& bytes,
                                                  const std::string& source) {
  SentencePieceModelProto m;
  WireReader r(bytes, source);
  while (!r.done()) {
    const uint64_t tag = r.varint();
    const auto field = tag >> 3;
    const int wire = static_cast<int>(tag & 7);
    if (wire != 2) {
      r.skip(wire);
      continue;
    }
    const std::string_view body = r.bytes();
    if (field == 1)
      m.pieces.push_back(parse_piece(body, source));
    else if (field == 2)
      parse_trainer_spec(body, source, m);
    else if (field == 3)
      parse_normalizer_spec(body, source, m);
  }
  SAES_CHECK(!m.pieces.empty(), DataError, "{}: no pieces; not a SentencePiece model", source);
  return m;
}

SentencePieceModelTokenizer::SentencePieceModelTokenizer(const std::filesystem::path& path)
    : model_(parse_sentencepiece_model(io::read_file(path), path.string())) {
  const std::string name = path.string();
  static const char* const kTypes[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
  SAES_CHECK(
      model_.model_type == 2, UnsupportedError,
      "{}: SentencePiece model type {} is not supported (supported: BPE)", name,
      model_.model_type >= 1 && model_.model_type <= 4 ? kTypes[model_.model_type] : "unknown");
  SAES_CHECK(model_.precompiled_charsmap.empty() || model_.normalizer_name == "identity",
             UnsupportedError,
             "{}: SentencePiece normalizer \"{}\" is not supported (supported: identity)", name,
             model_.normalizer_name);
  byte_ids_.fill(-1);
  for (std::size_t i = 0; i < model_.pieces.size(); ++i) {
    const auto& piece = model_.pieces[i];
    const auto id = static_cast<int32_t>(i);
    // SentencePiece refuses empty pieces too; an empty user-defined piece matched everywhere and
    // encode() never advanced (fuzz_sentencepiece: a timeout).
    SAES_CHECK(!piece.text.empty(), DataError, "{}: piece {} is empty", name, id);
    if (piece.type == PieceType::kNormal || piece.type == PieceType::kUserDefined)
      mergeable_.emplace(piece.text, id);
    if (piece.type == PieceType::kUserDefined) user_defined_.push_back(id);
    if (piece.type == PieceType::kByte) {
      const auto byte = byte_token_value(piece.text);
      SAES_CHECK(byte.has_value(), DataError, "{}: byte piece {} is \"{}\", expected \"<0xXX>\"",
                 name, id, piece.text);
      byte_ids_[static_cast<unsigned char>(*byte)] = id;
    }
  }
  std::stable_sort(user_defined_.begin(), user_defined_.end(), [this](int32_t a, int32_t b) {
    return model_.pieces[static_cast<std::size_t>(a)].text.size() >
           model_.pieces[static_cast<std::size_t>(b)].text.size();
  });
  const std::size_t n = model_.pieces.size();
  // encode() emits unk_id for unknown characters: it must name a piece (fuzz_sentencepiece found
  // a model whose unk_id 91 of 10 pieces came back as a token id).
  SAES_CHECK(model_.unk_id >= 0 && static_cast<std::size_t>(model_.unk_id) < n, DataError,
             "{}: trainer_spec.unk_id {} is not a piece id (the model has {} pieces)", name,
             model_.unk_id, n);
  special_ids_ = SpecialTokenIds{optional_id(model_.bos_id, n), optional_id(model_.eos_id, n),
                                 optional_id(model_.pad_id, n)};
}

std::string SentencePieceModelTokenizer::normalize(std::string_view text) const {
  std::string collapsed;
  if (model_.remove_extra_whitespaces) {
    for (const char c : text) {
      if (c == ' ' && (collapsed.empty() || collapsed.back() == ' ')) continue;
      collapsed += c;
    }
    while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
  } else {
    collapsed = std::string(text);
  }
  if (collapsed.empty()) return collapsed;
  const std::string_view space = model_.escape_whitespaces ? kSpace : " ";
  std::string out = model_.escape_whitespaces ? replace_all(collapsed, " ", kSpace) : collapsed;
  if (model_.add_dummy_prefix)
    out = model_.treat_whitespace_as_suffix ? out + std::string(space) : std::string(space) + out;
  return out;
}

std::vector<int64_t> SentencePieceModelTokenizer::encode(std::string_view text) const {
  const std::string normalized = normalize(is_valid_utf8(text) ? text : repair_utf8(text));
  const auto vocab = static_cast<int32_t>(model_.pieces.size());
  std::vector<std::string> unknown;  // text of symbol ids >= vocab (characters that are not pieces)
  std::vector<int32_t> symbols;
  for (std::size_t pos = 0; pos < normalized.size();) {
    const auto user = std::find_if(user_defined_.begin(), user_defined_.end(), [&](int32_t id) {
      return normalized.compare(pos, model_.pieces[static_cast<std::size_t>(id)].text.size(),
                                model_.pieces[static_cast<std::size_t>(id)].text) == 0;
    });
    if (user != user_defined_.end()) {
      symbols.push_back(*user);
      pos += model_.pieces[static_cast<std::size_t>(*user)].text.size();
      continue;
    }
    const std::size_t len = std::min(utf8_char_length(static_cast<unsigned char>(normalized[pos])),
                                     normalized.size() - pos);
    const std::string ch = normalized.substr(pos, len);
    pos += len;
    if (const auto it = mergeable_.find(ch); it != mergeable_.end()) {
      symbols.push_back(it->second);
    } else {
      symbols.push_back(vocab + static_cast<int32_t>(unknown.size()));
      unknown.push_back(ch);
    }
  }
  const auto text_of = [&](int32_t id) -> const std::string& {
    return id < vocab ? model_.pieces[static_cast<std::size_t>(id)].text
                      : unknown[static_cast<std::size_t>(id - vocab)];
  };
  // SentencePiece BPE: merge the adjacent pair whose concatenation is the highest-scoring piece,
  // leftmost first.
  merge_symbols(symbols, [&](int32_t left, int32_t right) -> std::optional<PairMerge> {
    const auto it = mergeable_.find(text_of(left) + text_of(right));
    if (it == mergeable_.end()) return std::nullopt;
    return PairMerge{
        -static_cast<double>(model_.pieces[static_cast<std::size_t>(it->second)].score),
        it->second};
  });
  std::vector<int64_t> ids;
  for (const int32_t id : symbols) {
    if (id < vocab) {
      ids.push_back(id);
      continue;
    }
    const std::string& ch = text_of(id);
    bool bytes = model_.byte_fallback;
    for (const char c : ch) bytes = bytes && byte_ids_[static_cast<unsigned char>(c)] >= 0;
    if (bytes) {
      for (const char c : ch) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    } else if (ids.empty() || ids.back() != model_.unk_id) {
      ids.push_back(model_.unk_id);  // SentencePiece fuses runs of unknown characters
    }
  }
  return ids;
}

std::string SentencePieceModelTokenizer::decode(std::span<const int64_t> ids) const {
  std::string text, pending_bytes;
  bool at_start = model_.add_dummy_prefix && !model_.treat_whitespace_as_suffix;
  const auto flush = [&] {
    text += repair_utf8(pending_bytes);
    pending_bytes.clear();
  };
  for (const int64_t id : ids) {
    SAES_CHECK(id >= 0 && id < vocab_size(), DataError,
               "token id {} is outside the vocabulary [0, {})", id, vocab_size());
    const auto& piece = model_.pieces[static_cast<std::size_t>(id)];
    if (piece.type == PieceType::kControl) continue;
    if (piece.type == PieceType::kByte) {
      pending_bytes += *byte_token_value(piece.text);  // validated at load
      at_start = false;
      continue;
    }
    flush();
    std::string part = piece.type == PieceType::kUnknown ? std::string(kUnkSurface)
                                                         : replace_all(piece.text, kSpace, " ");
    if (at_start && !part.empty() && part[0] == ' ') part.erase(0, 1);
    at_start = false;
    text += part;
  }
  flush();
  return text;
}

std::string SentencePieceModelTokenizer::piece(int64_t id) const {
  SAES_CHECK(id >= 0 && id < vocab_size(), DataError,
             "token id {} is outside the vocabulary [0, {})", id, vocab_size());
  return model_.pieces[static_cast<std::size_t>(id)].text;
}

}  // namespace saes::lm

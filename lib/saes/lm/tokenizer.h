// Tokenizer: the text <-> token-id interface of every tokenizer format, and load_tokenizer(), which
// picks the format from a path. The formats live in byte_level_bpe, sentencepiece_bpe,
// sentencepiece_model and llama2c_tokenizer; this file only dispatches.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace saes::lm {

/// Ids of the special tokens a model uses; absent when the tokenizer files do not name one.
struct SpecialTokenIds {
  std::optional<int64_t> bos;
  std::optional<int64_t> eos;
  std::optional<int64_t> pad;
};

/// Converts text to token ids and back. Implementations are immutable after construction and their
/// const methods are safe to call from several threads.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// Token ids of `text` (UTF-8), without BOS/EOS. Special tokens written in the text (e.g.
  /// "<|endoftext|>") become their ids in Hugging Face formats; SentencePiece and llama2.c formats
  /// treat them as plain text, as those libraries do. Invalid UTF-8 bytes are read as U+FFFD.
  virtual std::vector<int64_t> encode(std::string_view text) const = 0;
  /// Text of `ids` (bytes; may be invalid UTF-8 when `ids` cut a character). Hugging Face formats
  /// keep the text of special tokens; SentencePiece-family formats drop control tokens (BOS/EOS) as
  /// their libraries do. Throws DataError for an id outside [0, vocab_size()).
  virtual std::string decode(std::span<const int64_t> ids) const = 0;
  /// The vocabulary's own spelling of `id` (e.g. "Ġthe", "▁the", "<0x0A>"): valid UTF-8, for
  /// display.
  virtual std::string piece(int64_t id) const = 0;
  /// Number of ids: every id in [0, vocab_size()) is valid for decode() and piece().
  virtual int64_t vocab_size() const = 0;
  /// Special-token ids (see load_tokenizer for where they come from).
  virtual SpecialTokenIds special_ids() const = 0;
  /// Format name: "byte_level_bpe", "sentencepiece_bpe", "sentencepiece_model" or "llama2c".
  virtual std::string_view kind() const = 0;

  std::optional<int64_t> bos_id() const { return special_ids().bos; }
  std::optional<int64_t> eos_id() const { return special_ids().eos; }
  std::optional<int64_t> pad_id() const { return special_ids().pad; }
  std::string decode(const std::vector<int64_t>& ids) const {
    return decode(std::span<const int64_t>(ids.data(), ids.size()));
  }
};

/// Loads the tokenizer at `path`, which is one of:
///  * a Hugging Face `tokenizer.json` (any *.json other than the two below), or a folder holding
///  one;
///  * GPT-2's `vocab.json` + `merges.txt` or `encoder.json` + `vocab.bpe` (either file, or their
///  folder);
///  * a SentencePiece model (`*.model`, or a folder with `tokenizer.model`);
///  * a llama2.c tokenizer (`*.bin`, e.g. tok512.bin).
/// In a folder the first match in that order wins. Special ids: for Hugging Face folders from
/// `tokenizer_config.json`, then `special_tokens_map.json` (keys bos_token/eos_token/pad_token),
/// then from well-known added tokens ("<s>", "</s>", "<pad>", "<|endoftext|>" as both BOS and EOS
/// as in GPT-2,
/// "<|padding|>"); SentencePiece and llama2.c from the model (llama2.c: BOS 1, EOS 2).
/// Throws IoError/DataError naming the file for missing or malformed files (and, for a path that is
/// none of the above, listing what was looked for), UnsupportedError for tokenizer.json parts we do
/// not implement.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path);

}  // namespace saes::lm

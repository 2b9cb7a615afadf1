// BpeModel: a BPE vocabulary with ranked merges, as in Hugging Face's `model.type == "BPE"` and
// GPT-2's vocab.bpe, plus merge_symbols(), the priority-queue merge loop shared with the llama2.c
// tokenizer.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace saes::lm {

/// A merge found for an adjacent pair: lower priority merges first, ties go to the leftmost pair.
struct PairMerge {
  double priority = 0;
  int32_t merged = 0;
};
using PairLookup = std::function<std::optional<PairMerge>(int32_t left, int32_t right)>;

/// Repeatedly replaces the best adjacent pair of `symbols` by its merge until no pair merges.
/// O(n log n) in the number of symbols.
void merge_symbols(std::vector<int32_t>& symbols, const PairLookup& lookup);

/// What a BPE word does with a character that is not in the vocabulary.
struct UnknownPolicy {
  bool byte_fallback = false;     ///< spell it as "<0xXX>" byte tokens (when all 256 exist)
  std::optional<int32_t> unk_id;  ///< else this id (else DataError)
  bool fuse_unk = false;          ///< merge runs of unk into one
};

/// Vocabulary (id -> token string; unused ids are empty) and merges in rank order.
struct BpeVocab {
  std::vector<std::string> tokens;
  std::vector<std::pair<std::string, std::string>> merges;
  bool ignore_merges =
      false;  ///< a word that is itself a token is emitted whole (HF, e.g. Llama 3)

  /// Puts `token` at `id` (a JSON vocabulary entry; `n_entries` is how many the file lists).
  /// Throws DataError naming `source` for a negative id or one that would leave more holes than
  /// tokens (fuzz_tokenizer_json: an id of 5e18 asked for that many strings).
  void place(std::string token, int64_t id, std::size_t n_entries, const std::string& source);
};

class BpeModel {
 public:
  /// Throws DataError when a merge names a token missing from the vocabulary (`source` names the
  /// file).
  BpeModel(BpeVocab vocab, const std::string& source);

  std::optional<int32_t> find(std::string_view token) const;
  const std::string& token(int32_t id) const { return tokens_[static_cast<std::size_t>(id)]; }
  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  /// Id of byte token "<0xXX>" for `byte`, if the vocabulary has it.
  std::optional<int32_t> byte_token(unsigned char byte) const;

  /// Appends the ids of `word` (a string in the vocabulary's own alphabet) to `out`.
  void encode_word(std::string_view word, const UnknownPolicy& policy,
                   std::vector<int64_t>& out) const;

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> ids_;
  std::unordered_map<uint64_t, PairMerge> merges_;
  std::array<int32_t, 256> byte_tokens_{};
  bool ignore_merges_ = false;
};

}  // namespace saes::lm

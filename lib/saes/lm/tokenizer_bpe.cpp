// BPE merge loop (heap of candidate pairs over a linked list of symbols) and BpeModel.
#include "saes/lm/tokenizer_bpe.h"

#include <fmt/format.h>

#include <queue>

#include "saes/core/error.h"
#include "saes/lm/unicode.h"

namespace saes::lm {
namespace {

struct Candidate {
  PairMerge merge;
  int32_t left = 0;  ///< index of the left symbol
  int32_t left_id = 0;
  int32_t right_id = 0;
};

struct WorseCandidate {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.merge.priority != b.merge.priority) return a.merge.priority > b.merge.priority;
    return a.left > b.left;
  }
};

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

void merge_symbols(std::vector<int32_t>& symbols, const PairLookup& lookup) {
  const auto n = static_cast<int32_t>(symbols.size());
  if (n < 2) return;
  std::vector<int32_t> prev(symbols.size()), next(symbols.size());
  for (int32_t i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
  std::priority_queue<Candidate, std::vector<Candidate>, WorseCandidate> heap;
  const auto consider = [&](int32_t left) {
    if (left < 0 || next[left] < 0) return;
    const int32_t right = next[left];
    if (auto merge = lookup(symbols[left], symbols[right]))
      heap.push({*merge, left, symbols[left], symbols[right]});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const int32_t right = next[c.left];
    // Stale entries: the left symbol was merged away or changed, or its neighbour changed.
    if (symbols[c.left] != c.left_id || right < 0 || symbols[right] != c.right_id) continue;
    symbols[c.left] = c.merge.merged;
    symbols[right] = -1;
    next[c.left] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.left;
    consider(prev[c.left]);
    consider(c.left);
  }
  std::erase(symbols, -1);
}

void BpeVocab::place(std::string token, int64_t id, std::size_t n_entries,
                     const std::string& source) {
  // Ids may leave gaps (added tokens fill some) but never more gaps than entries.
  const auto bound = static_cast<int64_t>(2 * n_entries + 1024);
  SAES_CHECK(id >= 0 && id < bound, DataError,
             "{}: token \"{}\" has id {}, expected an id in [0, {}) for a vocabulary of {} entries",
             source, token, id, bound, n_entries);
  const auto index = static_cast<std::size_t>(id);
  if (index >= tokens.size()) tokens.resize(index + 1);
  tokens[index] = std::move(token);
}

BpeModel::BpeModel(BpeVocab vocab, const std::string& source)
    : tokens_(std::move(vocab.tokens)), ignore_merges_(vocab.ignore_merges) {
  ids_.reserve(tokens_.size());
  for (std::size_t i = 0; i < tokens_.size(); ++i)
    if (!tokens_[i].empty()) ids_.emplace(tokens_[i], static_cast<int32_t>(i));
  merges_.reserve(vocab.merges.size());
  for (std::size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const auto& [a, b] = vocab.merges[rank];
    const auto left = find(a), right = find(b), merged = find(a + b);
    SAES_CHECK(left && right && merged, DataError,
               "{}: merge {} \"{} {}\" uses a token that is not in the vocabulary", source, rank, a,
               b);
    merges_.emplace(pair_key(*left, *right), PairMerge{static_cast<double>(rank), *merged});
  }
  for (int b = 0; b < 256; ++b) {
    const auto id = find(fmt::format("<0x{:02X}>", b));
    byte_tokens_[static_cast<std::size_t>(b)] = id ? *id : -1;
  }
}

std::optional<int32_t> BpeModel::find(std::string_view token) const {
  const auto it = ids_.find(std::string(token));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

std::optional<int32_t> BpeModel::byte_token(unsigned char byte) const {
  const int32_t id = byte_tokens_[byte];
  if (id < 0) return std::nullopt;
  return id;
}

void BpeModel::encode_word(std::string_view word, const UnknownPolicy& policy,
                           std::vector<int64_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const auto id = find(word)) {
      out.push_back(*id);
      return;
    }
  }
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  for (std::size_t i = 0; i < word.size();) {
    const std::size_t len =
        std::min(utf8_char_length(static_cast<unsigned char>(word[i])), word.size() - i);
    const std::string_view ch = word.substr(i, len);
    i += len;
    if (const auto id = find(ch)) {
      symbols.push_back(*id);
      continue;
    }
    bool all_bytes = policy.byte_fallback;
    for (const char c : ch) all_bytes = all_bytes && byte_token(static_cast<unsigned char>(c));
    if (all_bytes) {
      for (const char c : ch) symbols.push_back(*byte_token(static_cast<unsigned char>(c)));
    } else if (policy.unk_id) {
      if (!(policy.fuse_unk && !symbols.empty() && symbols.back() == *policy.unk_id))
        symbols.push_back(*policy.unk_id);
    } else {
      SAES_THROW(DataError,
                 "character \"{}\" is not in the tokenizer vocabulary and it has no unk_token", ch);
    }
  }
  merge_symbols(symbols, [this](int32_t left, int32_t right) -> std::optional<PairMerge> {
    const auto it = merges_.find(pair_key(left, right));
    if (it == merges_.end()) return std::nullopt;
    return it->second;
  });
  out.insert(out.end(), symbols.begin(), symbols.end());
}

}  // namespace saes::lm

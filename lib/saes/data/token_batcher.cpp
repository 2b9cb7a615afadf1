// TokenBatcher: packing and pad/truncate row filling, the BOS/pad/ignore mask rule and provenance.
// Rows are filled in plain vectors and turned into CPU tensors once per batch.
#include "saes/data/token_batcher.h"

#include <algorithm>
#include <utility>

#include <ATen/ops/empty.h>
#include <ATen/ops/ones_like.h>

#include "saes/core/error.h"

namespace saes::data {
namespace {

template <typename T>
at::Tensor to_tensor(const std::vector<T>& values, at::ScalarType dtype, int64_t rows,
                     int64_t cols) {
  at::Tensor out = at::empty({rows, cols}, at::TensorOptions().dtype(dtype));
  std::copy(values.begin(), values.end(), out.data_ptr<T>());
  return out;
}

}  // namespace

/// Row-major buffers for the rows of one batch; `put` appends to the current row.
struct TokenBatcher::RowWriter {
  int64_t context_size = 0;
  size_t row_start = 0;
  std::vector<int64_t> tokens;
  std::vector<int64_t> document_index;
  std::vector<int32_t> position;
  std::vector<int32_t> attention;

  bool full() const { return tokens.size() - row_start == static_cast<size_t>(context_size); }
  void begin_row() { row_start = tokens.size(); }
  void put(int64_t token, int64_t doc, int64_t pos, int32_t real = 1) {
    tokens.push_back(token);
    document_index.push_back(doc);
    position.push_back(static_cast<int32_t>(pos));
    attention.push_back(real);
  }
  void pad_row(int64_t pad_id) {
    while (!full()) put(pad_id, -1, -1, 0);
  }
  void drop_row() {
    tokens.resize(row_start);
    document_index.resize(row_start);
    position.resize(row_start);
    attention.resize(row_start);
  }
};

TokenBatcher::TokenBatcher(TextSource source, EncodeFn encode, SpecialTokenIds special_ids,
                           TokenBatcherOptions options)
    : source_(std::move(source)),
      encode_(std::move(encode)),
      special_ids_(special_ids),
      options_(std::move(options)) {
  SAES_ASSERT(encode_ != nullptr, "TokenBatcher needs an encode function");
  const int64_t min_context = options_.prepend_bos ? 2 : 1;
  SAES_CHECK(options_.context_size >= min_context, ConfigError,
             "context_size: expected >= {}{}, got {}", min_context,
             options_.prepend_bos ? " with prepend_bos" : "", options_.context_size);
  SAES_CHECK(!options_.prepend_bos || special_ids_.bos, ConfigError,
             "prepend_bos: the tokenizer has no BOS token; set prepend_bos: false");
  SAES_CHECK(!options_.packing || special_ids_.eos, ConfigError,
             "packing: the tokenizer has no EOS token to separate documents; set packing: false");
  const std::optional<int64_t> pad = special_ids_.pad ? special_ids_.pad : special_ids_.eos;
  SAES_CHECK(pad.has_value(), ConfigError,
             "the tokenizer has neither a PAD nor an EOS token to pad rows with");
  pad_id_ = *pad;
}

bool TokenBatcher::load_next_document() {
  std::optional<TextDocument> doc = source_.next();
  if (!doc) return false;
  doc_tokens_ = encode_(doc->text);
  // Reference backend: BOS is added (or stripped) by prepend_bos, never taken from the tokenizer.
  if (special_ids_.bos && !doc_tokens_.empty() && doc_tokens_.front() == *special_ids_.bos) {
    doc_tokens_.erase(doc_tokens_.begin());
  }
  doc_index_ = doc->index;
  doc_cursor_ = 0;
  doc_done_ = false;
  return true;
}

bool TokenBatcher::fill_packed_row(RowWriter& row) {
  if (options_.prepend_bos) row.put(*special_ids_.bos, -1, -1);
  bool placed = false;
  while (!row.full()) {
    if (doc_done_ && !load_next_document()) break;
    if (doc_cursor_ < doc_tokens_.size()) {
      row.put(doc_tokens_[doc_cursor_], doc_index_, static_cast<int64_t>(doc_cursor_));
      ++doc_cursor_;
    } else {
      row.put(*special_ids_.eos, doc_index_, static_cast<int64_t>(doc_cursor_));
      doc_done_ = true;
    }
    placed = true;
  }
  return placed;
}

bool TokenBatcher::fill_padded_row(RowWriter& row) {
  if (!load_next_document()) return false;
  if (options_.prepend_bos) row.put(*special_ids_.bos, -1, -1);
  for (size_t i = 0; i < doc_tokens_.size() && !row.full(); ++i) {
    row.put(doc_tokens_[i], doc_index_, static_cast<int64_t>(i));
  }
  doc_done_ = true;  // the tail past context_size is dropped (truncation)
  return true;
}

std::optional<TokenBatch> TokenBatcher::next_batch(int64_t batch_size) {
  SAES_CHECK(batch_size >= 1, ConfigError, "batch size: expected >= 1, got {}", batch_size);
  RowWriter rows;
  rows.context_size = options_.context_size;
  int64_t n_rows = 0;
  while (n_rows < batch_size) {
    rows.begin_row();
    const bool filled = options_.packing ? fill_packed_row(rows) : fill_padded_row(rows);
    if (!filled) {
      rows.drop_row();
      break;
    }
    rows.pad_row(pad_id_);
    ++n_rows;
  }
  if (n_rows == 0) return std::nullopt;

  // DEVIATION(#3): the reference computes mask = (token != pad) && (token != bos) from ids
  // (spec §6.2); padding here is known by position, so an EOS that doubles as pad is still kept.
  std::vector<int32_t> mask(rows.tokens.size());
  for (size_t i = 0; i < mask.size(); ++i) {
    const int64_t token = rows.tokens[i];
    const bool ignored =
        options_.ignore_token_ids.empty()
            ? (special_ids_.bos && token == *special_ids_.bos)
            : std::find(options_.ignore_token_ids.begin(), options_.ignore_token_ids.end(),
                        token) != options_.ignore_token_ids.end();
    mask[i] = rows.attention[i] != 0 && !ignored ? 1 : 0;
  }
  const int64_t cols = options_.context_size;
  return TokenBatch{to_tensor(rows.tokens, at::kLong, n_rows, cols),
                    to_tensor(mask, at::kInt, n_rows, cols),
                    to_tensor(rows.attention, at::kInt, n_rows, cols),
                    to_tensor(rows.document_index, at::kLong, n_rows, cols),
                    to_tensor(rows.position, at::kInt, n_rows, cols)};
}

TokenBatch flatten_kept_tokens(const TokenBatch& batch) {
  const at::Tensor keep = batch.mask.to(at::kBool);
  at::Tensor tokens = batch.tokens.masked_select(keep);
  at::Tensor ones = at::ones_like(tokens, at::TensorOptions().dtype(at::kInt));
  return TokenBatch{tokens, ones, ones.clone(), batch.document_index.masked_select(keep),
                    batch.position.masked_select(keep)};
}

}  // namespace saes::data

// TokenBatcher: tokenizes TextSource documents into fixed [batch, context_size] token batches with
// mask, attention mask and per-token provenance (spec §6.2, §6.5). The tokenizer is a callback, so
// this file does not depend on lm/; flatten_kept_tokens gives the 1-D (kept tokens only) view.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/data/text_source.h"

namespace saes::data {

/// Text → token ids, without special tokens (a leading BOS it adds anyway is dropped).
using EncodeFn = std::function<std::vector<int64_t>(std::string_view)>;

/// The tokenizer's special ids; any may be absent.
struct SpecialTokenIds {
  std::optional<int64_t> bos;
  std::optional<int64_t> eos;
  std::optional<int64_t> pad;  ///< when absent, eos pads (as the reference backend does)
};

/// Knobs of the batcher; field names are the config keys.
struct TokenBatcherOptions {
  int64_t context_size = 128;  ///< tokens per row, BOS included
  bool prepend_bos = true;     ///< every row starts with BOS (needs a bos id)
  /// false: one document per row, truncated to context_size, then padded (reference behaviour).
  /// true: documents concatenated, each followed by EOS, cut into rows; only the last row pads.
  bool packing = false;
  /// Non-empty: mask = (not padding) && token ∉ ignore_token_ids, replacing the default
  /// mask = (not padding) && token != bos (EOS is kept; spec §6.5).
  std::vector<int64_t> ignore_token_ids;
};

/// A batch of rows. Every tensor is [batch, context_size] on CPU (or [n_tokens] after
/// flatten_kept_tokens). The last batch of a stream may have fewer rows.
struct TokenBatch {
  at::Tensor tokens;          ///< int64 token ids
  at::Tensor mask;            ///< int32, 1 = token used for training/analysis
  at::Tensor attention_mask;  ///< int32, 1 = not padding
  at::Tensor document_index;  ///< int64, TextDocument::index the token came from; -1 for BOS/pad
  /// int32, index of the token in its document's token sequence; -1 for BOS/pad. A packed EOS
  /// carries its document's index and position = that document's token count.
  at::Tensor position;
};

/// Pulls documents from an owned TextSource and emits token batches.
class TokenBatcher {
 public:
  /// Throws ConfigError when an option needs an id the tokenizer lacks, or context_size is tiny.
  TokenBatcher(TextSource source, EncodeFn encode, SpecialTokenIds special_ids,
               TokenBatcherOptions options);

  /// Up to batch_size rows; nullopt once the source is exhausted.
  std::optional<TokenBatch> next_batch(int64_t batch_size);

 private:
  struct RowWriter;
  bool fill_packed_row(RowWriter& row);
  bool fill_padded_row(RowWriter& row);
  bool load_next_document();

  TextSource source_;
  EncodeFn encode_;
  SpecialTokenIds special_ids_;
  TokenBatcherOptions options_;
  int64_t pad_id_ = 0;
  // Packing state: the current document's tokens, the next one to emit, whether its EOS is out.
  std::vector<int64_t> doc_tokens_;
  int64_t doc_index_ = -1;
  size_t doc_cursor_ = 0;
  bool doc_done_ = true;
};

/// 1-D view: the tokens with mask == 1, in row-major order, with their provenance. All five
/// outputs are [n_tokens]; mask and attention_mask are all ones.
TokenBatch flatten_kept_tokens(const TokenBatch& batch);

}  // namespace saes::data

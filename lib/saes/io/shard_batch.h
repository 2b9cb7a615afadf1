// ShardBatch: the rows of activation shards as tensors — what ShardWriter appends and what
// ShardReader/ShardStream yield. Section names inside a shard file are defined here too.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <ATen/core/Tensor.h>

namespace saes::io {

inline constexpr std::string_view kTokensSection = "tokens";
inline constexpr std::string_view kDocIndexSection = "doc_index";
inline constexpr std::string_view kPositionSection = "position";
inline constexpr std::string_view kMaskSection = "mask";
/// Activation sections are named "act/<hook point>".
std::string activation_section_name(std::string_view hook);

/// Rows of one run (1-D: a row is a token; 2-D: a row is a context of context_size tokens).
/// Writer input accepts any integer dtype for tokens/doc_index/position, bool or integer masks and
/// any floating activation dtype (cast to the storage dtype). Reader output dtypes are fixed below.
struct ShardBatch {
  at::Tensor tokens;     ///< 1-D [n_rows], 2-D [n_rows, context_size]; reader: int64, CPU
  at::Tensor doc_index;  ///< [n_rows] source document of the row; reader: int64
  at::Tensor
      position;     ///< [n_rows] token position (1-D) / context start (2-D) in it; reader: int64
  at::Tensor mask;  ///< 2-D only: [n_rows, context_size], true = real token; reader: bool
  std::map<std::string, at::Tensor> activations;  ///< hook → [n_rows, (context_size,) d_model]
  std::string shard;                              ///< reader: the shard file the rows came from

  std::int64_t n_rows() const { return tokens.defined() ? tokens.size(0) : 0; }
};

}  // namespace saes::io

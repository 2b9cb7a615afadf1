// Rows: a run of activation rows with their provenance ids, the unit passed between the stages of
// an activation stream (sources → mixer → shuffle buffer). "Ghost" rows carry ids only; resume
// replays the pipeline with ghost rows, then re-reads just the chunks the buffer still refers to.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace saes::data {

/// Row provenance: (source index, chunk sequence number within the source, row within the chunk)
/// packed as source << 56 | seq << 24 | row.
inline constexpr int kRowBits = 24;
inline constexpr int kSeqBits = 32;
inline constexpr int kMaxSources = 128;
std::int64_t row_id(std::int64_t source, std::int64_t seq, std::int64_t row);
std::int64_t id_source(std::int64_t id);
std::int64_t id_seq(std::int64_t id);

struct Rows {
  at::Tensor ids;                          ///< [n] int64 on CPU
  std::map<std::string, at::Tensor> acts;  ///< hook → [n, (seq,) d]; empty for ghost rows
  at::Tensor tokens;                       ///< [n] or [n, seq] int64; undefined for ghost rows
  at::Tensor mask;                         ///< 2-D only: [n, seq] bool

  std::int64_t size() const { return ids.defined() ? ids.size(0) : 0; }
  bool ghost() const { return !tokens.defined(); }
};

/// ids of chunk `seq` of `source` with `n_rows` rows.
at::Tensor chunk_ids(std::int64_t source, std::int64_t seq, std::int64_t n_rows);
Rows cat_rows(const std::vector<Rows>& parts);
Rows slice_rows(const Rows& rows, std::int64_t start, std::int64_t length);
/// rows[index] for a CPU int64 index tensor (moved to the data's device for gathering).
Rows index_rows(const Rows& rows, const at::Tensor& index);
Rows rows_to(const Rows& rows, const c10::Device& device);

/// A source of chunks (a shard, a legacy chunk, one model batch), read in a fixed order.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  /// The next chunk (ids from row_id(index, seq, row)); ghost: ids only, skipping decode/forward
  /// where the row count is known without them. nullopt at the end.
  virtual std::optional<Rows> next_chunk(bool ghost) = 0;
  /// Chunk `seq` (already passed by next_chunk) in full, for resume.
  virtual Rows load_chunk(std::int64_t seq) = 0;
  /// Resume bookkeeping: chunks that load_chunk may still be asked for (others may be forgotten).
  virtual void retain(const std::set<std::int64_t>& /*seqs*/) {}
  /// Identifies the data this source reads, for --resume (shard folders: io::manifest_digest as
  /// hex); empty when the source cannot tell (live model forwards, the original's cache).
  virtual std::string data_digest() const { return {}; }
};

/// A deterministic permutation of 0..n-1 (Fisher–Yates driven by `rng`, platform independent).
template <class Rng>
std::vector<std::int64_t> seeded_permutation(std::int64_t n, Rng& rng) {
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) perm[static_cast<std::size_t>(i)] = i;
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(i + 1));
    std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
  }
  return perm;
}

}  // namespace saes::data

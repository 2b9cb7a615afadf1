// ShardSource and LegacySource: chunk order (rank slice, seeded permutation), ghost chunks from
// the manifest's row counts, and conversion of decoded shards/chunks into Rows.
#include "saes/data/shard_source.h"

#include <algorithm>
#include <random>

#include <ATen/ops/ne.h>

#include "saes/core/error.h"
#include "saes/io/checksum.h"

namespace saes::data {

namespace fs = std::filesystem;

namespace {

std::vector<std::int64_t> ordered_slice(std::int64_t n, const ChunkOrder& order) {
  std::vector<std::int64_t> mine = io::shard_indices_for_rank(n, order.rank, order.world);
  if (!order.shuffle) return mine;
  std::mt19937_64 rng(order.seed);
  std::vector<std::int64_t> out;
  for (auto i : seeded_permutation(static_cast<std::int64_t>(mine.size()), rng)) {
    out.push_back(mine[static_cast<std::size_t>(i)]);
  }
  return out;
}

}  // namespace

Rows shard_batch_rows(io::ShardBatch batch, std::int64_t index, std::int64_t seq) {
  Rows rows;
  rows.ids = chunk_ids(index, seq, batch.n_rows());
  rows.tokens = std::move(batch.tokens);
  if (batch.mask.defined()) {
    rows.mask = batch.mask.scalar_type() == at::kBool ? batch.mask : at::ne(batch.mask, 0);
  }
  rows.acts = std::move(batch.activations);
  return rows;
}

ShardSource::ShardSource(std::int64_t index, const fs::path& dir, std::vector<std::string> hooks,
                         std::optional<DType> dtype, ChunkOrder order, Logger& logger)
    : index_(index), logger_(logger) {
  SAES_CHECK(fs::is_directory(dir), IoError, "activation source: shard folder {} does not exist",
             dir.string());
  reader_ = io::ShardReader::open(dir);
  options_.hooks = std::move(hooks);
  options_.dtype = dtype;
  reader_.check_options(options_);
  order_ = ordered_slice(static_cast<std::int64_t>(reader_.manifest().shards.size()), order);
}

std::string ShardSource::data_digest() const {
  return io::checksum_hex(io::manifest_digest(reader_.manifest()));
}

std::optional<Rows> ShardSource::next_chunk(bool ghost) {
  if (next_ >= static_cast<std::int64_t>(order_.size())) return std::nullopt;
  const std::int64_t seq = next_++;
  if (ghost) {
    const auto& entry = reader_.manifest().shards[static_cast<std::size_t>(order_[seq])];
    Rows rows;
    rows.ids = chunk_ids(index_, seq, entry.n_rows);
    return rows;
  }
  if (!stream_) {
    io::ShardReadOptions options = options_;
    options.shards.assign(order_.begin() + seq, order_.end());
    stream_ = std::make_unique<io::ShardStream>(reader_, std::move(options), logger_);
  }
  auto batch = stream_->next();
  SAES_ASSERT(batch.has_value(), "shard stream ended before its order");
  return shard_batch_rows(std::move(*batch), index_, seq);
}

Rows ShardSource::load_chunk(std::int64_t seq) {
  return shard_batch_rows(reader_.read_shard(order_.at(static_cast<std::size_t>(seq)), options_),
                          index_, seq);
}

LegacySource::LegacySource(std::int64_t index, const fs::path& dir, std::vector<std::string> hooks,
                           std::optional<DType> dtype, ChunkOrder order)
    : index_(index),
      reader_([&] {
        SAES_CHECK(fs::is_directory(dir), IoError,
                   "activation source: chunk folder {} does not exist", dir.string());
        // Neither a saes-generate run nor the original's cache: say what was expected.
        const bool any_hook = std::any_of(hooks.begin(), hooks.end(), [&](const std::string& h) {
          return fs::is_directory(dir / h);
        });
        SAES_CHECK(any_hook, IoError,
                   "activation source: {} has no manifest.json (not a saes-generate output_dir) "
                   "and no hook folders of the original's chunk cache (e.g. {}/{}); point the "
                   "source's path at saes-generate's output_dir",
                   dir.string(), dir.string(), hooks.empty() ? std::string("<hook>") : hooks.front());
        return io::LegacyChunkReader::open(dir, std::move(hooks));
      }()),
      dtype_(dtype),
      order_(ordered_slice(static_cast<std::int64_t>(reader_.chunks().size()), order)) {}

std::optional<Rows> LegacySource::next_chunk(bool ghost) {
  if (next_ >= static_cast<std::int64_t>(order_.size())) return std::nullopt;
  Rows rows = load_chunk(next_++);
  if (ghost) {
    Rows ids_only;
    ids_only.ids = rows.ids;
    return ids_only;
  }
  return rows;
}

Rows LegacySource::load_chunk(std::int64_t seq) {
  return shard_batch_rows(
      reader_.read_chunk(static_cast<std::size_t>(order_.at(static_cast<std::size_t>(seq))),
                         dtype_),
      index_, seq);
}

std::optional<std::int64_t> LegacySource::d_model() const {
  if (order_.empty()) return std::nullopt;
  auto batch = reader_.read_chunk(static_cast<std::size_t>(order_.front()), dtype_);
  return batch.activations.begin()->second.size(-1);
}

}  // namespace saes::data

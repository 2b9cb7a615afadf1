// ShardReader (checks + decode of one shard) and ShardStream (background decode thread feeding a
// bounded queue; errors travel to the consumer as exception_ptr).
#include "saes/io/shard_reader.h"

#include <algorithm>
#include <random>

#include <ATen/ops/empty.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/io/checksum.h"
#include "saes/io/shard_file.h"

namespace saes::io {
namespace {

namespace fs = std::filesystem;

// Finds `name` in `file` and checks its dtype (one of `dtypes`) and shape.
const SectionInfo& require_section(const ShardFile& file, std::string_view name,
                                   std::initializer_list<DType> dtypes,
                                   const std::vector<std::int64_t>& shape) {
  const SectionInfo* s = file.find(name);
  SAES_CHECK(s != nullptr, DataError, "shard {}: section \"{}\" is missing", file.name(), name);
  bool dtype_ok = std::find(dtypes.begin(), dtypes.end(), s->dtype) != dtypes.end();
  SAES_CHECK(dtype_ok, DataError, "shard {}: section \"{}\" has dtype {}", file.name(), name,
             dtype_name(s->dtype));
  SAES_CHECK(s->shape == shape, DataError, "shard {}: section \"{}\" has shape [{}], expected [{}]",
             file.name(), name, fmt::join(s->shape, ", "), fmt::join(shape, ", "));
  return *s;
}

at::Tensor empty_for(const SectionInfo& s) {
  return at::empty(s.shape, at::TensorOptions().dtype(to_torch(s.dtype)));
}

std::vector<std::string> requested_hooks(const ShardManifest& m, const ShardReadOptions& o) {
  return o.hooks.empty() ? m.hook_points : o.hooks;
}

}  // namespace

ShardReader ShardReader::open(const fs::path& dir) {
  ShardReader reader;
  reader.dir_ = dir;
  reader.manifest_ = load_manifest(dir / kManifestFileName);
  return reader;
}

void ShardReader::check_options(const ShardReadOptions& o) const {
  for (const auto& hook : o.hooks) {
    bool found = std::find(manifest_.hook_points.begin(), manifest_.hook_points.end(), hook) !=
                 manifest_.hook_points.end();
    SAES_CHECK(found, ConfigError, "shards {}: hook \"{}\" is not in the run; available: {}",
               dir_.string(), hook, fmt::join(manifest_.hook_points, ", "));
  }
  SAES_CHECK(!o.dtype || dtype_is_floating(*o.dtype), ConfigError,
             "shards {}: dtype {} is not a floating type", dir_.string(),
             o.dtype ? dtype_name(*o.dtype) : "");
  auto n = static_cast<std::int64_t>(manifest_.shards.size());
  for (auto i : o.shards) {
    SAES_CHECK(i >= 0 && i < n, ConfigError, "shards {}: shard index {} out of range [0, {})",
               dir_.string(), i, n);
  }
  SAES_CHECK(o.queue_depth >= 1 && o.decode_threads >= 1, ConfigError,
             "shards {}: queue_depth and decode_threads must be >= 1", dir_.string());
}

std::vector<std::int64_t> ShardReader::shard_order(const ShardReadOptions& o) const {
  std::vector<std::int64_t> order = o.shards;
  if (order.empty()) {
    order.resize(manifest_.shards.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);
  }
  if (o.shuffle) {
    // Fisher–Yates with an explicit generator: std::shuffle's algorithm is implementation-defined.
    std::mt19937_64 rng(o.seed);
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  }
  return order;
}

ShardBatch ShardReader::read_shard(std::int64_t index, const ShardReadOptions& o) const {
  const ShardEntry& entry = manifest_.shards.at(static_cast<std::size_t>(index));
  fs::path path = dir_ / entry.file;
  SAES_CHECK(fs::exists(path), IoError, "shard {}: file {} listed in the manifest is missing",
             entry.file, path.string());
  std::uint64_t size = fs::file_size(path);
  SAES_CHECK(size == entry.bytes, DataError,
             "shard {}: truncated or overwritten: {} bytes, manifest says {}", entry.file, size,
             entry.bytes);
  ShardFile file = ShardFile::load(path);
  SAES_CHECK(file.checksum() == entry.checksum, DataError,
             "shard {}: checksum {} does not match the manifest ({})", entry.file,
             checksum_hex(file.checksum()), checksum_hex(entry.checksum));
  SAES_CHECK(file.n_rows() == entry.n_rows, DataError, "shard {}: {} rows, manifest says {}",
             entry.file, file.n_rows(), entry.n_rows);

  const bool two_d = manifest_.target == ShardTarget::kActivations2d;
  std::vector<std::int64_t> row_shape = {entry.n_rows};
  if (two_d) row_shape.push_back(manifest_.context_size);
  auto act_shape = row_shape;
  act_shape.push_back(manifest_.d_model);

  std::vector<const SectionInfo*> sections = {
      &require_section(file, kTokensSection, {DType::kInt32, DType::kInt64}, row_shape),
      &require_section(file, kDocIndexSection, {DType::kInt64}, {entry.n_rows}),
      &require_section(file, kPositionSection, {DType::kInt32, DType::kInt64}, {entry.n_rows})};
  if (two_d) sections.push_back(&require_section(file, kMaskSection, {DType::kUInt8}, row_shape));
  auto hooks = requested_hooks(manifest_, o);
  for (const auto& hook : hooks) {
    sections.push_back(
        &require_section(file, activation_section_name(hook), {manifest_.dtype}, act_shape));
  }
  std::vector<at::Tensor> tensors;
  std::vector<ShardFile::DecodeTarget> targets;
  for (const auto* s : sections) {
    tensors.push_back(empty_for(*s));
    targets.push_back({s, tensors.back().data_ptr()});
  }
  file.decode(targets, o.decode_threads, o.verify_raw_checksums);

  ShardBatch batch;
  batch.shard = entry.file;
  batch.tokens = tensors[0].to(at::kLong);
  batch.doc_index = tensors[1];
  batch.position = tensors[2].to(at::kLong);
  std::size_t next = 3;
  if (two_d) batch.mask = tensors[next++].to(at::kBool);
  for (const auto& hook : hooks) {
    at::Tensor act = tensors[next++];
    batch.activations[hook] = o.dtype ? act.to(to_torch(*o.dtype)) : act;
  }
  return batch;
}

ShardStream::ShardStream(ShardReader reader, ShardReadOptions options, Logger& logger)
    : reader_(std::move(reader)), options_(std::move(options)), logger_(logger) {
  reader_.check_options(options_);
  order_ = reader_.shard_order(options_);
  thread_ = std::thread([this] { run(); });
}

ShardStream::~ShardStream() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void ShardStream::run() {
  for (auto index : order_) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] {
        return stop_ || queue_.size() < static_cast<std::size_t>(options_.queue_depth);
      });
      if (stop_) break;
    }
    try {
      ShardBatch batch = reader_.read_shard(index, options_);
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(batch));
    } catch (const Error& e) {
      bool skip = options_.on_corrupt == OnCorrupt::kSkip &&
                  (dynamic_cast<const DataError*>(&e) != nullptr ||
                   dynamic_cast<const IoError*>(&e) != nullptr);
      std::lock_guard<std::mutex> lock(mutex_);
      if (!skip) {
        error_ = std::current_exception();
        break;
      }
      ++skipped_;
      logger_.warn("skipping corrupt shard: {}", e.what());
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
      break;
    }
    changed_.notify_all();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
  }
  changed_.notify_all();
}

std::optional<ShardBatch> ShardStream::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !queue_.empty() || done_; });
  if (!queue_.empty()) {
    ShardBatch batch = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    changed_.notify_all();
    return batch;
  }
  if (error_) std::rethrow_exception(error_);
  return std::nullopt;
}

std::int64_t ShardStream::skipped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return skipped_;
}

}  // namespace saes::io

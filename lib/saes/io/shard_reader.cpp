// ShardReader (checks + decode of one shard) and ShardStream (workers decoding the frames of a
// window of shards, returned in order; errors travel to the consumer as exception_ptr).
#include "saes/io/shard_reader.h"

#include <algorithm>
#include <random>

#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/io/checksum.h"
#include "saes/io/shard_buffers.h"
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

// Shards whose buffers a reader's pool keeps: a default stream's queue_depth waiting, one
// decoding and the one the caller holds.
constexpr std::size_t kPooledShards = 4;

std::vector<std::string> requested_hooks(const ShardManifest& m, const ShardReadOptions& o) {
  return o.hooks.empty() ? m.hook_points : o.hooks;
}

// A shard mapped and checked against the manifest, with output tensors for the sections read.
struct OpenShard {
  std::optional<ShardFile> file;
  std::string name;
  std::vector<at::Tensor> tensors;  // tokens, doc_index, position, (mask), one per hook
  std::vector<ShardFile::DecodeTarget> targets;
};

OpenShard open_shard(const ShardReader& reader, std::int64_t index, const ShardReadOptions& o) {
  const ShardManifest& m = reader.manifest();
  const ShardEntry& entry = m.shards.at(static_cast<std::size_t>(index));
  fs::path path = reader.dir() / entry.file;
  SAES_CHECK(fs::exists(path), IoError, "shard {}: file {} listed in the manifest is missing",
             entry.file, path.string());
  std::uint64_t size = fs::file_size(path);
  SAES_CHECK(size == entry.bytes, DataError,
             "shard {}: truncated or overwritten: {} bytes, manifest says {}", entry.file, size,
             entry.bytes);
  OpenShard shard{ShardFile::load(path), entry.file, {}, {}};
  const ShardFile& file = *shard.file;
  SAES_CHECK(file.checksum() == entry.checksum, DataError,
             "shard {}: checksum {} does not match the manifest ({})", entry.file,
             checksum_hex(file.checksum()), checksum_hex(entry.checksum));
  SAES_CHECK(file.n_rows() == entry.n_rows, DataError, "shard {}: {} rows, manifest says {}",
             entry.file, file.n_rows(), entry.n_rows);

  const bool two_d = m.target == ShardTarget::kActivations2d;
  std::vector<std::int64_t> row_shape = {entry.n_rows};
  if (two_d) row_shape.push_back(m.context_size);
  auto act_shape = row_shape;
  act_shape.push_back(m.d_model);

  std::vector<const SectionInfo*> sections = {
      &require_section(file, kTokensSection, {DType::kInt32, DType::kInt64}, row_shape),
      &require_section(file, kDocIndexSection, {DType::kInt64}, {entry.n_rows}),
      &require_section(file, kPositionSection, {DType::kInt32, DType::kInt64}, {entry.n_rows})};
  if (two_d) sections.push_back(&require_section(file, kMaskSection, {DType::kUInt8}, row_shape));
  for (const auto& hook : requested_hooks(m, o)) {
    sections.push_back(&require_section(file, activation_section_name(hook), {m.dtype}, act_shape));
  }
  for (const auto* s : sections) {
    shard.tensors.push_back(reader.buffers().empty(s->shape, s->dtype));
    shard.targets.push_back({s, shard.tensors.back().data_ptr()});
  }
  return shard;
}

// `t` in `dtype`, converted into a buffer of the reader's pool when it is not already.
at::Tensor pooled_as(const ShardReader& reader, const at::Tensor& t, at::ScalarType dtype) {
  if (t.scalar_type() == dtype) return t;
  at::Tensor out = reader.buffers().empty(t.sizes().vec(), from_torch(dtype));
  out.copy_(t);
  return out;
}

// The rows of a decoded shard, in the reader's output dtypes.
ShardBatch finish_shard(OpenShard& shard, const ShardReader& reader, const ShardReadOptions& o) {
  const ShardManifest& m = reader.manifest();
  ShardBatch batch;
  batch.shard = shard.name;
  batch.tokens = pooled_as(reader, shard.tensors[0], at::kLong);
  batch.doc_index = shard.tensors[1];
  batch.position = pooled_as(reader, shard.tensors[2], at::kLong);
  std::size_t next = 3;
  if (m.target == ShardTarget::kActivations2d) batch.mask = shard.tensors[next++].to(at::kBool);
  for (const auto& hook : requested_hooks(m, o)) {
    const at::Tensor& act = shard.tensors[next++];
    batch.activations[hook] = o.dtype ? pooled_as(reader, act, to_torch(*o.dtype)) : act;
  }
  return batch;
}

}  // namespace

ShardReader ShardReader::open(const fs::path& dir) {
  ShardReader reader;
  reader.dir_ = dir;
  reader.manifest_ = load_manifest(dir / kManifestFileName);
  // Every listed shard is there, whole, before any is read: a missing or truncated file found
  // only when the stream reaches it would lose the work done until then.
  for (const ShardEntry& e : reader.manifest_.shards) {
    const fs::path file = dir / e.file;
    std::error_code ec;
    const std::uintmax_t size = fs::file_size(file, ec);
    SAES_CHECK(!ec, IoError, "shards {}: {} is missing ({} lists {} shards)", dir.string(),
               e.file, kManifestFileName, reader.manifest_.shards.size());
    SAES_CHECK(size == e.bytes, DataError,
               "shards {}: {} has {} bytes, {} records {} (truncated or replaced?)", dir.string(),
               e.file, size, kManifestFileName, e.bytes);
  }
  // Enough for every section of the shards a default stream holds (in flight, waiting, caller's).
  const std::size_t sections = 4 + reader.manifest_.hook_points.size();
  reader.buffers_ = ShardBufferPool::create(kPooledShards * sections);
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
  OpenShard shard = open_shard(*this, index, o);
  shard.file->decode(shard.targets, o.decode_threads, o.verify_decoded_checksums);
  return finish_shard(shard, *this, o);
}

// One shard of the stream: opened by a worker, its frames claimed and decoded by any worker,
// settled (batch, skipped or error) once no worker touches it any more.
struct ShardStream::Slot {
  std::unique_ptr<OpenShard> shard;  // null while opening and once settled
  std::vector<ShardFile::FrameTask> tasks;
  std::size_t claimed = 0;
  std::size_t done = 0;
  std::exception_ptr failure;  // first error of the open or of a frame
  bool settled = false;
  std::optional<ShardBatch> batch;
  std::exception_ptr error;  // settled failure that next() rethrows
};

ShardStream::ShardStream(ShardReader reader, ShardReadOptions options, Logger& logger)
    : reader_(std::move(reader)), options_(std::move(options)), logger_(logger) {
  reader_.check_options(options_);
  order_ = reader_.shard_order(options_);
  for (int w = 0; w < options_.decode_threads; ++w) workers_.emplace_back([this] { work(); });
}

ShardStream::~ShardStream() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ShardStream::work() {
  FrameDecoder decoder;
  const auto n = static_cast<std::int64_t>(order_.size());
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    std::int64_t seq = 0;
    std::size_t task = 0;
    if (claim_frame(seq, task)) {
      decode_claimed(lock, decoder, seq, task);
    } else if (!halted_ && next_open_ < n && next_open_ <= next_out_ + options_.queue_depth) {
      open_next(lock);
    } else if ((halted_ || next_open_ >= n) && opening_ == 0) {
      break;  // every shard is opened and every frame claimed: the rest is other workers' work
    } else {
      changed_.wait(lock);
    }
  }
}

bool ShardStream::claim_frame(std::int64_t& seq, std::size_t& task) {
  for (auto& [s, slot] : slots_) {
    if (slot->shard && !slot->failure && slot->claimed < slot->tasks.size()) {
      seq = s;
      task = slot->claimed++;
      return true;
    }
  }
  return false;
}

void ShardStream::decode_claimed(std::unique_lock<std::mutex>& lock, FrameDecoder& decoder,
                                 std::int64_t seq, std::size_t task) {
  Slot& slot = *slots_.at(seq);
  const OpenShard& shard = *slot.shard;
  const ShardFile::FrameTask frame = slot.tasks[task];
  lock.unlock();
  std::exception_ptr error;
  try {
    shard.file->decode_frame(shard.targets[frame.target], frame.frame, decoder,
                             options_.verify_decoded_checksums);
  } catch (...) {
    error = std::current_exception();
  }
  lock.lock();
  ++slot.done;
  if (error && !slot.failure) slot.failure = error;
  if (slot.failure) {
    settle_failed(slot);
  } else if (slot.done == slot.tasks.size()) {
    finish(lock, slot);
  }
}

void ShardStream::open_next(std::unique_lock<std::mutex>& lock) {
  const std::int64_t seq = next_open_++;
  Slot& slot = *(slots_[seq] = std::make_unique<Slot>());
  ++opening_;
  lock.unlock();
  std::unique_ptr<OpenShard> shard;
  std::vector<ShardFile::FrameTask> tasks;
  std::exception_ptr error;
  try {
    shard = std::make_unique<OpenShard>(
        open_shard(reader_, order_[static_cast<std::size_t>(seq)], options_));
    tasks = shard->file->prepare_decode(shard->targets);
  } catch (...) {
    error = std::current_exception();
  }
  lock.lock();
  --opening_;
  if (error) {
    slot.failure = error;
    settle_failed(slot);
  } else {
    slot.shard = std::move(shard);
    slot.tasks = std::move(tasks);
    if (slot.tasks.empty()) finish(lock, slot);
  }
  changed_.notify_all();
}

void ShardStream::finish(std::unique_lock<std::mutex>& lock, Slot& slot) {
  // Every frame is decoded, so no other worker needs the shard: take it out of the slot and
  // release it (munmap, ~0.5 ms for 7 MB) without holding the lock the other workers wait on.
  std::unique_ptr<OpenShard> shard = std::move(slot.shard);
  lock.unlock();
  std::optional<ShardBatch> batch;
  std::exception_ptr error;
  try {
    batch = finish_shard(*shard, reader_, options_);
  } catch (...) {
    error = std::current_exception();
  }
  shard.reset();
  lock.lock();
  if (error) {
    slot.failure = error;
    settle_failed(slot);
    return;
  }
  slot.batch = std::move(batch);
  slot.settled = true;
  changed_.notify_all();
}

void ShardStream::settle_failed(Slot& slot) {
  if (slot.settled || slot.claimed != slot.done) return;
  slot.shard.reset();
  slot.settled = true;
  std::string skip_message;
  try {
    std::rethrow_exception(slot.failure);
  } catch (const DataError& e) {
    skip_message = e.what();
  } catch (const IoError& e) {
    skip_message = e.what();
  } catch (...) {
  }
  if (options_.on_corrupt == OnCorrupt::kSkip && !skip_message.empty()) {
    ++skipped_;
    logger_.warn("skipping corrupt shard: {}", skip_message);
  } else {
    slot.error = slot.failure;
    halted_ = true;
  }
  changed_.notify_all();
}

std::optional<ShardBatch> ShardStream::next() {
  const auto n = static_cast<std::int64_t>(order_.size());
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    if (error_) std::rethrow_exception(error_);
    if (next_out_ >= n) return std::nullopt;
    auto it = slots_.find(next_out_);
    if (it == slots_.end() || !it->second->settled) {
      changed_.wait(lock);
      continue;
    }
    if (it->second->error) {
      error_ = it->second->error;
      continue;
    }
    std::unique_ptr<Slot> slot = std::move(it->second);
    slots_.erase(it);
    ++next_out_;
    changed_.notify_all();
    if (slot->batch) return std::move(slot->batch);
  }
}

std::int64_t ShardStream::skipped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return skipped_;
}

}  // namespace saes::io

// ShardWriter: batch validation/conversion to storage dtypes, shard rolling, atomic shard +
// manifest writes, and resume (cleanup of temp files and un-manifested shards).
#include "saes/io/shard_writer.h"

#include <limits>

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"

namespace saes::io {
namespace {

namespace fs = std::filesystem;

bool is_2d(const ShardWriterOptions& o) { return o.target == ShardTarget::kActivations2d; }

void check_options(const ShardWriterOptions& o) {
  SAES_CHECK(!o.dir.empty(), ConfigError, "shard writer: output directory is empty");
  SAES_CHECK(!o.hook_points.empty(), ConfigError, "shard writer {}: no hook points",
             o.dir.string());
  SAES_CHECK(
      o.dtype == DType::kFloat32 || o.dtype == DType::kFloat16 || o.dtype == DType::kBFloat16,
      ConfigError, "shard writer {}: dtype must be float32, float16 or bfloat16, got {}",
      o.dir.string(), dtype_name(o.dtype));
  SAES_CHECK(o.d_model > 0, ConfigError, "shard writer {}: d_model must be > 0, got {}",
             o.dir.string(), o.d_model);
  SAES_CHECK(is_2d(o) == (o.context_size > 0), ConfigError,
             "shard writer {}: context_size must be > 0 exactly for activations-2d, got {}",
             o.dir.string(), o.context_size);
  SAES_CHECK(o.rows_per_shard > 0, ConfigError,
             "shard writer {}: rows_per_shard must be > 0, got {}", o.dir.string(),
             o.rows_per_shard);
  SAES_CHECK(o.world >= 1 && o.rank >= 0 && o.rank < o.world, ConfigError,
             "shard writer {}: rank {} of world {}", o.dir.string(), o.rank, o.world);
}

ShardManifest manifest_for(const ShardWriterOptions& o) {
  ShardManifest m;
  m.created_by = o.created_by;
  m.model_name = o.model_name;
  m.hook_points = o.hook_points;
  m.dtype = o.dtype;
  m.d_model = o.d_model;
  m.target = o.target;
  m.context_size = o.context_size;
  m.config_yaml = o.config_yaml;
  return m;
}

void check_resume_matches(const ShardManifest& old, const ShardManifest& now,
                          const fs::path& path) {
  auto field = [&](bool same, const char* name) {
    SAES_CHECK(same, ConfigError, "resume {}: \"{}\" differs from the run being resumed",
               path.string(), name);
  };
  field(old.model_name == now.model_name, "model_name");
  field(old.hook_points == now.hook_points, "hook_points");
  field(old.dtype == now.dtype, "dtype");
  field(old.d_model == now.d_model, "d_model");
  field(old.target == now.target, "target");
  field(old.context_size == now.context_size, "context_size");
}

// Narrows an integer tensor to int32, checking every value fits.
at::Tensor to_int32(const at::Tensor& t, const char* what) {
  at::Tensor wide = t.to(at::kCPU).to(at::kLong).contiguous();
  at::Tensor out = at::empty(wide.sizes(), at::TensorOptions().dtype(at::kInt));
  const auto* src = wide.data_ptr<std::int64_t>();
  auto* dst = out.data_ptr<std::int32_t>();
  for (std::int64_t i = 0; i < wide.numel(); ++i) {
    SAES_CHECK(src[i] >= std::numeric_limits<std::int32_t>::min() &&
                   src[i] <= std::numeric_limits<std::int32_t>::max(),
               ConfigError, "shard writer: {} value {} does not fit in int32", what, src[i]);
    dst[i] = static_cast<std::int32_t>(src[i]);
  }
  return out;
}

void check_shape(const at::Tensor& t, std::vector<std::int64_t> expected, const std::string& what) {
  SAES_CHECK(t.defined(), ConfigError, "shard writer: batch has no {}", what);
  SAES_CHECK(t.sizes().vec() == expected, ConfigError, "shard writer: {} has shape {}, expected {}",
             what, fmt::format("{}", fmt::join(t.sizes().vec(), "x")),
             fmt::format("{}", fmt::join(expected, "x")));
}

ShardBatch to_storage(const ShardBatch& in, const ShardWriterOptions& o) {
  std::int64_t n = in.n_rows();
  std::vector<std::int64_t> row_shape = {n};
  if (is_2d(o)) row_shape.push_back(o.context_size);
  check_shape(in.tokens, row_shape, "tokens");
  check_shape(in.doc_index, {n}, "doc_index");
  check_shape(in.position, {n}, "position");
  ShardBatch out;
  out.tokens = to_int32(in.tokens, "token id");
  out.doc_index = in.doc_index.to(at::kCPU).to(at::kLong).contiguous();
  out.position = to_int32(in.position, "position");
  if (is_2d(o)) {
    check_shape(in.mask, row_shape, "mask");
    out.mask = in.mask.to(at::kCPU).to(at::kBool).to(at::kByte).contiguous();
  }
  SAES_CHECK(in.activations.size() == o.hook_points.size(), ConfigError,
             "shard writer: batch has {} activation tensors, expected {} (one per hook point)",
             in.activations.size(), o.hook_points.size());
  auto act_shape = row_shape;
  act_shape.push_back(o.d_model);
  for (const auto& hook : o.hook_points) {
    auto it = in.activations.find(hook);
    SAES_CHECK(it != in.activations.end(), ConfigError, "shard writer: batch lacks hook \"{}\"",
               hook);
    check_shape(it->second, act_shape, "activation \"" + hook + "\"");
    out.activations[hook] = it->second.to(at::kCPU).to(to_torch(o.dtype)).contiguous();
  }
  return out;
}

// Concatenates the pending batches along rows.
ShardBatch concat(const std::vector<ShardBatch>& parts) {
  if (parts.size() == 1) return parts.front();
  auto cat_field = [&](at::Tensor ShardBatch::*field) {
    std::vector<at::Tensor> list;
    for (const auto& p : parts) list.push_back(p.*field);
    return list.front().defined() ? at::cat(list, 0) : at::Tensor();
  };
  ShardBatch out;
  out.tokens = cat_field(&ShardBatch::tokens);
  out.doc_index = cat_field(&ShardBatch::doc_index);
  out.position = cat_field(&ShardBatch::position);
  out.mask = cat_field(&ShardBatch::mask);
  for (const auto& [hook, unused] : parts.front().activations) {
    std::vector<at::Tensor> list;
    for (const auto& p : parts) list.push_back(p.activations.at(hook));
    out.activations[hook] = at::cat(list, 0);
  }
  return out;
}

ShardBatch rows(const ShardBatch& b, std::int64_t start, std::int64_t count) {
  auto cut = [&](const at::Tensor& t) {
    return t.defined() ? t.narrow(0, start, count).contiguous() : t;
  };
  ShardBatch out{cut(b.tokens), cut(b.doc_index), cut(b.position), cut(b.mask), {}, {}};
  for (const auto& [hook, t] : b.activations) out.activations[hook] = cut(t);
  return out;
}

SectionData section(std::string_view name, const at::Tensor& t) {
  return {std::string(name), from_torch(t.scalar_type()), t.sizes().vec(), t.data_ptr()};
}

// Removes this rank's temp files and shard files that `manifest` does not list.
void remove_strays(const fs::path& dir, const ShardManifest& manifest, int rank,
                   const fs::path& manifest_path, Logger& logger) {
  std::string shard_prefix = fmt::format("shard-r{:03d}-", rank);
  std::string manifest_temp = manifest_path.filename().string() + ".tmp.";
  for (const auto& item : fs::directory_iterator(dir)) {
    std::string name = item.path().filename().string();
    bool ours = name.rfind(shard_prefix, 0) == 0 || name.rfind(manifest_temp, 0) == 0;
    if (!ours) continue;
    bool listed = false;
    for (const auto& entry : manifest.shards) listed = listed || entry.file == name;
    if (listed) continue;
    logger.warn("resume {}: removing {} (not listed in {})", dir.string(), name,
                manifest_path.filename().string());
    fs::remove(item.path());
  }
}

}  // namespace

std::string activation_section_name(std::string_view hook) { return fmt::format("act/{}", hook); }

ShardWriter::ShardWriter(ShardWriterOptions options) : options_(std::move(options)) {
  check_options(options_);
  manifest_ = manifest_for(options_);
}

fs::path ShardWriter::manifest_path() const {
  return options_.dir / (options_.world > 1 ? rank_manifest_file_name(options_.rank)
                                            : std::string(kManifestFileName));
}

ShardWriter ShardWriter::create(ShardWriterOptions options) {
  ShardWriter writer(std::move(options));
  SAES_CHECK(!fs::exists(writer.manifest_path()), ConfigError,
             "shard writer: {} already exists; resume that run or choose another directory",
             writer.manifest_path().string());
  save_manifest(writer.manifest_, writer.manifest_path());
  return writer;
}

ShardWriter ShardWriter::open_for_resume(ShardWriterOptions options, Logger& logger) {
  ShardWriter writer(std::move(options));
  auto path = writer.manifest_path();
  if (!fs::exists(path)) {
    logger.info("resume {}: no manifest, starting a new run", writer.options_.dir.string());
    fs::create_directories(writer.options_.dir);
    remove_strays(writer.options_.dir, writer.manifest_, writer.options_.rank, path, logger);
    save_manifest(writer.manifest_, path);
    return writer;
  }
  ShardManifest old = load_manifest(path);
  check_resume_matches(old, writer.manifest_, path);
  remove_strays(writer.options_.dir, old, writer.options_.rank, path, logger);
  writer.manifest_.shards = old.shards;
  for (const auto& entry : old.shards) {
    auto file = writer.options_.dir / entry.file;
    SAES_CHECK(fs::exists(file) && fs::file_size(file) == entry.bytes, DataError,
               "resume {}: shard {} listed in the manifest is missing or has the wrong size",
               path.string(), entry.file);
    writer.next_index_ = std::max(writer.next_index_, entry.index + 1);
  }
  save_manifest(writer.manifest_, path);
  logger.info("resume {}: {} shards, {} tokens already written", writer.options_.dir.string(),
              old.shards.size(), writer.tokens_done());
  return writer;
}

void ShardWriter::append(const ShardBatch& batch) {
  if (batch.n_rows() == 0) return;
  pending_.push_back(to_storage(batch, options_));
  pending_rows_ += batch.n_rows();
  while (pending_rows_ >= options_.rows_per_shard) write_shard(options_.rows_per_shard);
}

void ShardWriter::finish() {
  if (pending_rows_ > 0) write_shard(pending_rows_);
  manifest_.complete = true;
  save_manifest(manifest_, manifest_path());
}

void ShardWriter::write_shard(std::int64_t n_rows) {
  ShardBatch all = concat(pending_);
  ShardBatch shard = rows(all, 0, n_rows);
  pending_.clear();
  if (pending_rows_ > n_rows) pending_.push_back(rows(all, n_rows, pending_rows_ - n_rows));
  pending_rows_ -= n_rows;

  std::vector<SectionData> sections = {section(kTokensSection, shard.tokens),
                                       section(kDocIndexSection, shard.doc_index),
                                       section(kPositionSection, shard.position)};
  if (shard.mask.defined()) sections.push_back(section(kMaskSection, shard.mask));
  for (const auto& hook : options_.hook_points) {
    sections.push_back(section(activation_section_name(hook), shard.activations.at(hook)));
  }
  ShardEntry entry;
  entry.file = shard_file_name(options_.rank, next_index_);
  entry.rank = options_.rank;
  entry.index = next_index_;
  entry.n_rows = n_rows;
  entry.n_tokens = n_rows * (options_.context_size > 0 ? options_.context_size : 1);
  auto summary = write_shard_file(options_.dir / entry.file, n_rows, sections, options_.encode);
  entry.bytes = summary.bytes;
  entry.checksum = summary.checksum;
  manifest_.shards.push_back(entry);
  save_manifest(manifest_, manifest_path());
  ++next_index_;
}

}  // namespace saes::io

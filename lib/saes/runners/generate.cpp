// run_generate: text -> tokens -> language model -> activation shards, split across data ranks,
// resumable after the last complete shard (docs/generate.md).
#include <algorithm>
#include <limits>
#include <set>
#include <sstream>

#include <ATen/core/Tensor.h>
#include <ATen/ops/any.h>
#include <ATen/ops/full.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/sum.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/config/config_loader.h"
#include "saes/core/error.h"
#include "saes/data/token_batcher.h"
#include "saes/distributed/communicator.h"
#include "saes/distributed/mesh.h"
#include "saes/io/shard_format.h"
#include "saes/io/shard_writer.h"
#include "saes/training/stop_signal.h"
#include "saes/lm/hf_folder.h"
#include "saes/runners/activation_input.h"
#include "saes/runners/runners.h"
#include "saes/version.h"

namespace saes::runners {
namespace {

namespace fs = std::filesystem;
using config::GenerateSettings;

void check_supported(const GenerateSettings& s) {
  SAES_CHECK(s.format != data::ActivationFormat::kPt, UnsupportedError,
             "format: pt is not supported: saes writes its own shard format "
             "(docs/shard-format.md); remove `format` or set it to safetensors");
  SAES_CHECK(!s.n_shards && s.start_shard == 0, UnsupportedError,
             "n_shards/start_shard: saes splits the text across ranks itself (model batch i goes "
             "to rank i % world size); remove them");
  SAES_CHECK(!s.buffer_size && !s.buffer_shuffle, UnsupportedError,
             "buffer_size/buffer_shuffle: saes-generate writes in stream order; shuffle when "
             "reading (the shard reader's seed); remove them");
}

/// The settings that decide the shards' content, as YAML (run-time knobs left out).
std::string identity_yaml(GenerateSettings s) {
  s.overwrite = false;
  s.threads = 0;
  s.num_workers.reset();
  s.logging = {};
  return config::dump_yaml(s);
}

/// What differs between the run on disk and this one (empty: the same run).
std::string run_differences(const io::ShardManifest& old, const io::ShardWriterOptions& now,
                            const std::string& now_yaml) {
  std::vector<std::string> diffs;
  if (old.model_name != now.model_name) diffs.push_back("model_name");
  if (old.hook_points != now.hook_points) diffs.push_back("hook_points");
  if (old.d_model != now.d_model) diffs.push_back("d_model");
  if (old.dtype != now.dtype) diffs.push_back("dtype");
  if (old.target != now.target) diffs.push_back("target");
  std::string old_yaml;
  try {
    old_yaml = identity_yaml(
        config::parse_generate_settings(old.config_yaml, "manifest", {}, config::Validation::kOff));
  } catch (const Error&) {
    diffs.push_back("config (unreadable in the manifest)");
  }
  if (!old_yaml.empty() && old_yaml != now_yaml) {
    diffs.push_back(fmt::format("config ({})", config::changed_lines(old_yaml, now_yaml)));
  }
  std::string out;
  for (const auto& d : diffs) out += (out.empty() ? "" : ", ") + d;
  return out;
}

/// Deletes this rank's shard files and manifest (and rank 0's merged manifest).
void remove_rank_files(const fs::path& dir, int rank, const fs::path& manifest, Logger& logger) {
  const std::string prefix = fmt::format("shard-r{:03d}-", rank);
  for (const auto& item : fs::directory_iterator(dir)) {
    if (item.path().filename().string().rfind(prefix, 0) == 0) fs::remove(item.path());
  }
  fs::remove(manifest);
  if (rank == 0) fs::remove(dir / io::kManifestFileName);
  logger.warn("overwrite: removed the previous run's files of rank {} in {}", rank, dir.string());
}

/// Checks `dir` against this run; returns true when this rank's part is already complete.
bool prepare_output(const GenerateSettings& s, const io::ShardWriterOptions& options,
                    const fs::path& manifest, Logger& logger) {
  if (!fs::exists(manifest)) return false;
  const io::ShardManifest old = io::load_manifest(manifest);
  const std::string diff = run_differences(old, options, identity_yaml(s));
  if (diff.empty()) {
    for (const auto& entry : old.shards) {
      const fs::path file = options.dir / entry.file;
      SAES_CHECK(fs::exists(file) && fs::file_size(file) == entry.bytes, DataError,
                 "{}: shard {} is missing or has the wrong size; remove it from the manifest to "
                 "regenerate it, or set overwrite: true",
                 manifest.string(), entry.file);
    }
    return old.complete;
  }
  SAES_CHECK(s.overwrite, ConfigError,
             "output_dir {} holds a run with a different config: {}; choose another output_dir or "
             "set overwrite: true to replace it",
             options.dir.string(), diff);
  remove_rank_files(options.dir, options.rank, manifest, logger);
  return false;
}

/// Width of every hook (trailing dims flattened); all must agree. Runs a 2-token forward.
int64_t hook_width(const lm::ModelSet& models, const std::vector<std::string>& hooks) {
  const auto out = models.forward(at::full({1, 2}, int64_t{0}, at::kLong), nullptr, hooks);
  int64_t width = -1;
  for (const auto& h : hooks) {
    const int64_t w = out.at(h).flatten(2).size(2);
    SAES_CHECK(width < 0 || w == width, ConfigError,
               "hook_points: \"{}\" has width {} but \"{}\" has {}; one run stores hooks of one "
               "width",
               h, w, hooks.front(), width);
    width = w;
  }
  return width;
}

io::ShardWriterOptions writer_options(const GenerateSettings& s, const lm::LanguageModel& lm,
                                      const distributed::Mesh& mesh) {
  io::ShardWriterOptions o;
  o.dir = s.output_dir;
  o.model_name = s.model_name;
  o.hook_points = s.hook_points;
  o.dtype = s.override_dtype.value_or(s.model.dtype);
  o.d_model = hook_width(lm.model_set(), s.hook_points);
  const bool is_2d = s.target == data::ActivationTarget::kActivations2d;
  o.target = is_2d ? io::ShardTarget::kActivations2d : io::ShardTarget::kActivations1d;
  o.context_size = is_2d ? s.context_size : 0;
  o.rows_per_shard = s.n_samples_per_chunk.value_or(s.batch_size);
  o.rank = mesh.data_rank();
  o.world = mesh.data_size();
  auto codec = io::try_parse_shard_codec(s.compression);
  SAES_CHECK(codec.has_value(), ConfigError, "compression: unknown codec \"{}\"", s.compression);
  o.encode.codec = *codec;
  o.encode.zstd_level = static_cast<int>(s.compression_level);
  o.encode.threads = static_cast<int>(s.num_workers.value_or(1));
  o.created_by = fmt::format("saes-generate {}", kVersion);
  o.config_yaml = config::dump_yaml(s);
  return o;
}

/// Every rank reads the whole text into the same sequence of model batches (see generate_rows).
data::TokenBatcher make_batcher(const GenerateSettings& s, const lm::LanguageModel& lm) {
  data::TokenBatcherOptions options;
  options.context_size = s.context_size;
  options.prepend_bos = s.model.prepend_bos;
  options.packing = s.packing;
  options.ignore_token_ids = s.ignore_token_ids.value_or(std::vector<int64_t>{});
  return make_token_batcher(s.dataset, lm, options, 0, 1);
}

/// Per 2-D row: the document and position of its first token with a document (-1 when none).
std::pair<at::Tensor, at::Tensor> row_provenance(const data::TokenBatch& b) {
  const at::Tensor doc = b.document_index.contiguous();
  const at::Tensor pos = b.position.to(at::kLong).contiguous();
  const int64_t rows = doc.size(0), cols = doc.size(1);
  at::Tensor row_doc = at::full({rows}, int64_t{-1}, at::kLong);
  at::Tensor row_pos = at::full({rows}, int64_t{-1}, at::kLong);
  const int64_t* d = doc.data_ptr<int64_t>();
  const int64_t* p = pos.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      if (d[r * cols + c] < 0) continue;
      row_doc.data_ptr<int64_t>()[r] = d[r * cols + c];
      row_pos.data_ptr<int64_t>()[r] = p[r * cols + c];
      break;
    }
  }
  return {row_doc, row_pos};
}

/// Runs the model (or each checkpoint) on contexts and returns their shard rows (1-D: kept
/// tokens; 2-D: contexts).
io::ShardBatch shard_rows(const lm::ModelSet& models, const std::vector<std::string>& hooks,
                          const data::TokenBatch& b, bool is_2d) {
  const auto acts = models.forward(b.tokens, &b.attention_mask, hooks);
  io::ShardBatch out;
  if (is_2d) {
    out.tokens = b.tokens;
    out.mask = b.mask;
    std::tie(out.doc_index, out.position) = row_provenance(b);
    for (const auto& [hook, value] : acts) out.activations[hook] = value.flatten(2);
    return out;
  }
  const data::TokenBatch flat = data::flatten_kept_tokens(b);
  out.tokens = flat.tokens;
  out.doc_index = flat.document_index;
  out.position = flat.position;
  const at::Tensor kept = at::nonzero(b.mask.flatten().to(models.device())).squeeze(1);
  for (const auto& [hook, value] : acts) {
    out.activations[hook] = value.flatten(2).flatten(0, 1).index_select(0, kept);
  }
  return out;
}

io::ShardBatch narrow_rows(const io::ShardBatch& b, int64_t begin, int64_t end) {
  auto cut = [&](const at::Tensor& t) { return t.defined() ? t.narrow(0, begin, end - begin) : t; };
  io::ShardBatch out{cut(b.tokens), cut(b.doc_index), cut(b.position), cut(b.mask), {}, {}};
  for (const auto& [hook, t] : b.activations) out.activations[hook] = cut(t);
  return out;
}

/// Stops the run when a hook's activations in `rows` (the real tokens of 2-D rows) are NaN or
/// infinite: shards must never hold them (training would fail far from the cause).
void check_finite(const io::ShardBatch& rows, int64_t batch_index, const GenerateSettings& s) {
  for (const auto& [hook, value] : rows.activations) {
    at::Tensor bad = value.isfinite().logical_not();
    if (rows.mask.defined()) {
      bad = bad.flatten(2).any(-1).logical_and(rows.mask.to(bad.device()));
    }
    if (!bad.any().item<bool>()) continue;
    const auto n_bad = bad.flatten(1).any(-1).sum().item<int64_t>();
    SAES_THROW(DataError,
               "{}: hook {} has NaN or infinite activations in model batch {} ({} of its {} rows); "
               "nothing of that batch was written. Check the model's weights and dtype ({}: "
               "float16 overflows easily)",
               s.output_dir.string(), hook, batch_index, n_bad, value.size(0),
               dtype_name(s.model.dtype));
  }
}

/// The generation loop of one rank. Every rank forms the same global sequence of model batches
/// from the whole text, and rank r takes batches r, r + world, ...: the ranks together write
/// exactly the rows one process writes (the first total_tokens of the stream, in the same batches,
/// so the same values), however the documents' lengths fall. Skips the rows already in this rank's
/// complete shards (without running the model on batches that lie wholly inside them), then
/// appends rows until total_tokens or the text ends.
/// Returns false when SIGTERM/SIGUSR1 stopped it: the complete shards stay (a rerun resumes after
/// them), the rows after them are dropped and the manifest is not marked complete.
bool generate_rows(const GenerateSettings& s, const lm::LanguageModel& lm,
                   data::TokenBatcher& batcher, io::ShardWriter& writer, int rank, int world,
                   const training::SignalGuard& signals, RunContext& context) {
  const bool is_2d = s.target == data::ActivationTarget::kActivations2d;
  const int64_t tokens_per_row = is_2d ? s.context_size : 1;
  constexpr int64_t kUnbounded = std::numeric_limits<int64_t>::max();
  const int64_t target_rows = !s.total_tokens ? kUnbounded
                              : is_2d         ? (*s.total_tokens + s.context_size - 1) / s.context_size
                                              : *s.total_tokens;
  const int64_t skip = writer.rows_done();
  const lm::ModelSet models = lm.model_set();
  Progress progress = context.make_progress(
      "generate", s.total_tokens ? *s.total_tokens / world : 0, "tok");
  progress.advance(writer.tokens_done());
  int64_t global = 0;  // rows of the global stream before this batch
  int64_t own = 0;     // rows of this rank's batches before this batch
  for (int64_t index = 0; global < target_rows; ++index) {
    if (signals.requested()) return false;
    auto batch = batcher.next_batch(s.model_batch_size);
    if (!batch) break;
    const int64_t n = is_2d ? batch->tokens.size(0) : batch->mask.sum().item<int64_t>();
    const int64_t mine = std::min(n, target_rows - global);  // the last batch may be cut
    global += n;
    if (index % world != rank) continue;
    const int64_t lo = std::max(skip, own), hi = own + mine;
    if (lo < hi) {
      // The whole batch runs (as in an uninterrupted run, so values are bit-identical).
      const io::ShardBatch rows =
          narrow_rows(shard_rows(models, s.hook_points, *batch, is_2d), lo - own, hi - own);
      check_finite(rows, index, s);
      writer.append(rows);
      progress.advance((hi - lo) * tokens_per_row);
    }
    own += mine;
  }
  writer.finish();
  progress.finish(fmt::format("{} shards", writer.manifest().shards.size()));
  return true;
}

}  // namespace

int run_generate(const GenerateSettings& s, RunContext& context) {
  check_supported(s);
  distributed::Mesh mesh(context.world, distributed::ParallelismConfig{context.world.size(), 1});
  const lm::LanguageModel lm = lm::load_language_model(s.model);
  const io::ShardWriterOptions options = writer_options(s, lm, mesh);
  fs::create_directories(s.output_dir);
  const fs::path manifest =
      s.output_dir / (options.world > 1 ? io::rank_manifest_file_name(options.rank)
                                        : std::string(io::kManifestFileName));
  const bool done = prepare_output(s, options, manifest, context.logger);
  bool interrupted = false;
  if (mesh.is_primary()) config::save_resolved_config(s, s.output_dir);
  if (done) {
    context.logger.info("{}: this run is already complete; nothing to do", s.output_dir.string());
  } else {
    io::ShardWriter writer = io::ShardWriter::open_for_resume(options, context.logger);
    data::TokenBatcher batcher = make_batcher(s, lm);
    const training::SignalGuard signals;
    interrupted = !generate_rows(s, lm, batcher, writer, mesh.data_rank(), mesh.data_size(),
                                 signals, context);
    if (interrupted) {
      context.logger.warn(
          "{}: stopped by signal {} with {} tokens in {} complete shards (the rows after them are "
          "dropped); run the same command again to continue",
          s.output_dir.string(), signals.signal_number(), writer.tokens_done(),
          writer.manifest().shards.size());
    }
  }
  context.world.barrier();
  if (mesh.is_primary() && !interrupted) {
    io::ShardManifest merged = options.world > 1 ? io::merge_manifests(s.output_dir, options.world)
                                                 : io::load_manifest(manifest);
    if (s.total_tokens && merged.requested_tokens != s.total_tokens) {
      merged.requested_tokens = s.total_tokens;  // the manifest records a shortfall
      io::save_manifest(merged, s.output_dir / io::kManifestFileName);
    }
    context.logger.info("{}: {} shards, {} tokens ({} rows) in {}", s.model_name,
                        merged.shards.size(), merged.n_tokens(), merged.n_rows(),
                        s.output_dir.string());
    if (s.total_tokens && merged.n_tokens() < *s.total_tokens) {  // the text ran out first
      std::vector<std::int64_t> per_rank(static_cast<std::size_t>(options.world), 0);
      for (const auto& shard : merged.shards) {
        if (shard.rank >= 0 && shard.rank < options.world) {
          per_rank[static_cast<std::size_t>(shard.rank)] += shard.n_tokens;
        }
      }
      context.logger.warn(
          "{}: the text ran out: {} of total_tokens {} tokens written ({:.1f}%; per rank: {}); "
          "add text or lower total_tokens",
          s.output_dir.string(), merged.n_tokens(), *s.total_tokens,
          100.0 * static_cast<double>(merged.n_tokens()) / static_cast<double>(*s.total_tokens),
          fmt::join(per_rank, ", "));
    }
  }
  return 0;
}

}  // namespace saes::runners

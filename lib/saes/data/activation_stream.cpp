// PipelineStream (mixer → RowBatcher → cast → Prefetcher) with ghost-replay resume, and the
// factory that builds sources from an ActivationFactoryConfig.
#include "saes/data/activation_stream.h"

#include <filesystem>
#include <set>
#include <unordered_map>

#include <ATen/ops/empty_like.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/data/activation_rows.h"
#include "saes/data/live_source.h"
#include "saes/data/mixer.h"
#include "saes/data/prefetch.h"
#include "saes/data/shard_source.h"
#include "saes/data/shuffle_buffer.h"
#include "saes/io/checksum.h"
#include "saes/lm/model_set.h"

namespace saes::data {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kStateFormat = "saes-activation-stream";
constexpr std::int64_t kRetainEvery = 16;

class PipelineStream final : public ActivationStream {
 public:
  PipelineStream(std::vector<std::unique_ptr<ChunkSource>> sources, std::vector<double> weights,
                 PipelineOptions options)
      : options_(std::move(options)),
        mixer_(std::move(sources), std::move(weights), options_.mix_seed),
        batcher_(options_.batch_size, options_.buffer_size, options_.perm_seed) {}

  std::optional<ActivationBatch> next() override {
    if (!prefetcher_) {
      prefetcher_ = std::make_unique<Prefetcher<ActivationBatch>>([this] { return produce(); },
                                                                  options_.prefetch_batches);
    }
    auto batch = prefetcher_->next();
    if (batch) ++delivered_;
    return batch;
  }

  std::string state() const override {
    nlohmann::json data = nlohmann::json::array();
    for (std::size_t s = 0; s < mixer_.size(); ++s) data.push_back(mixer_.source(s).data_digest());
    return nlohmann::json{{"format", std::string(kStateFormat)},
                          {"version", 1},
                          {"batches", delivered_},
                          {"fingerprint", options_.fingerprint},
                          {"data", data}}
        .dump();
  }

  void restore(const std::string& text) override {
    SAES_CHECK(!prefetcher_ && delivered_ == 0, ConfigError,
               "activation stream: restore() needs a fresh stream (next() was already called)");
    nlohmann::json state;
    try {
      state = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      SAES_THROW(ConfigError, "activation stream state: invalid JSON ({})", e.what());
    }
    SAES_CHECK(state.value("format", "") == kStateFormat && state.contains("batches"), ConfigError,
               "activation stream state: not a {} state", kStateFormat);
    const std::string fingerprint = state.value("fingerprint", "");
    SAES_CHECK(fingerprint == options_.fingerprint, ConfigError,
               "activation stream state: saved with other data settings (fingerprint {}, now {})",
               fingerprint, options_.fingerprint);
    check_same_data(state);
    replay(state.at("batches").get<std::int64_t>());
  }

  StreamStats stats() const override {
    return {delivered_, prefetcher_ ? prefetcher_->waited_seconds() : 0.0};
  }

 private:
  std::optional<ActivationBatch> produce() {
    auto rows = batcher_.next([this]() -> std::optional<Rows> {
      auto chunk = mixer_.next(false);
      if (chunk) return rows_to(*chunk, options_.device);
      return chunk;
    });
    if (!rows) return std::nullopt;
    ActivationBatch batch;
    for (auto& [hook, act] : rows->acts) {
      batch.acts.emplace(hook, options_.override_dtype ? act.to(to_torch(*options_.override_dtype))
                                                       : std::move(act));
    }
    batch.tokens = std::move(rows->tokens);
    batch.mask = std::move(rows->mask);
    batch.n_tokens = batch.tokens.numel();
    return batch;
  }

  // The data digests saved with the state (absent in states of older versions) must be today's,
  // unless the run allows other data.
  void check_same_data(const nlohmann::json& state) const {
    if (options_.allow_data_change || !state.contains("data") || !state.at("data").is_array()) {
      return;
    }
    const auto& saved = state.at("data");
    for (std::size_t s = 0; s < mixer_.size() && s < saved.size(); ++s) {
      const std::string now = mixer_.source(s).data_digest();
      const std::string then = saved.at(s).is_string() ? saved.at(s).get<std::string>() : "";
      const std::string label =
          s < options_.source_labels.size() ? options_.source_labels[s] : std::to_string(s);
      SAES_CHECK(then.empty() || now.empty() || then == now, ConfigError,
                 "--resume: the activation data of source {} is not the data the checkpoint was "
                 "trained on (manifest digest {}, the checkpoint's {}): resume on the same shards, "
                 "or set resume_allow_data_change: true",
                 label, now, then);
    }
  }

  // Retains, per source, the chunks the buffered rows still come from.
  std::vector<std::set<std::int64_t>> buffered_chunks() const {
    std::vector<std::set<std::int64_t>> seqs(mixer_.size());
    const at::Tensor ids = batcher_.buffered_ids();
    if (!ids.defined()) return seqs;
    const auto* data = ids.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < ids.numel(); ++i) {
      seqs[static_cast<std::size_t>(id_source(data[i]))].insert(id_seq(data[i]));
    }
    return seqs;
  }

  void retain(const std::vector<std::set<std::int64_t>>& seqs) {
    for (std::size_t s = 0; s < mixer_.size(); ++s) mixer_.source(s).retain(seqs[s]);
  }

  // Ghost replay of `batches` batches (row ids only: no decode, no forward), then re-reads the
  // chunks the shuffle buffer still holds rows of and rebuilds the buffer's tensors.
  void replay(std::int64_t batches) {
    const RowBatcher::Pull ghost_pull = [this] { return mixer_.next(true); };
    for (std::int64_t i = 0; i < batches; ++i) {
      SAES_CHECK(batcher_.next(ghost_pull).has_value(), ConfigError,
                 "activation stream state: {} batches saved but the data ends after {}", batches,
                 i);
      if ((i + 1) % kRetainEvery == 0) retain(buffered_chunks());
    }
    const auto seqs = buffered_chunks();
    retain(seqs);
    std::vector<Rows> parts;
    for (std::size_t s = 0; s < seqs.size(); ++s) {
      for (auto seq : seqs[s])
        parts.push_back(rows_to(mixer_.source(s).load_chunk(seq), options_.device));
    }
    retain(std::vector<std::set<std::int64_t>>(mixer_.size()));
    delivered_ = batches;
    if (parts.empty()) return;
    const Rows pool = cat_rows(parts);
    std::unordered_map<std::int64_t, std::int64_t> where;
    const auto* pool_ids = pool.ids.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < pool.ids.numel(); ++i) where.emplace(pool_ids[i], i);
    const at::Tensor ids = batcher_.buffered_ids();
    at::Tensor index = at::empty_like(ids);
    auto* out = index.data_ptr<std::int64_t>();
    const auto* want = ids.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < ids.numel(); ++i) out[i] = where.at(want[i]);
    batcher_.replace_buffer(index_rows(pool, index));
  }

  PipelineOptions options_;
  SourceMixer mixer_;
  RowBatcher batcher_;
  std::int64_t delivered_ = 0;
  std::unique_ptr<Prefetcher<ActivationBatch>> prefetcher_;  ///< last: its thread uses the above
};

std::string fingerprint_of(const ActivationFactoryConfig& config, const StreamInputs& inputs) {
  nlohmann::json j{
      {"target", std::string(kActivationTargetNames[static_cast<std::size_t>(config.target)])},
      {"hooks", config.hook_points},
      {"batch_size", config.batch_size},
      {"buffer_size", config.buffer_size.value_or(0)},
      {"perm_seed", config.buffer_shuffle ? config.buffer_shuffle->perm_seed : 42},
      {"model_batch_size", config.model_batch_size},
      {"rank", inputs.rank},
      {"world", inputs.world},
      {"seed", inputs.seed}};
  for (const auto& source : config.sources) {
    j["sources"].push_back(
        {source.name, source.sample_weights, source.path.root.string(), source.shuffle_shards});
  }
  const std::string text = j.dump();
  return io::checksum_hex(io::xxh64(text.data(), text.size()));
}

// The first width seen (or the dictionary's) is the reference every other source must match.
void check_width(const ActivationSourceConfig& source, std::int64_t width,
                 std::optional<std::int64_t>& expected, std::string& expected_from) {
  if (!expected) {
    expected = width;
    expected_from = "source " + source.name;
    return;
  }
  SAES_CHECK(width == *expected, ConfigError,
             "source {}: d_model {} does not match d_model {} of {}", source.name, width, *expected,
             expected_from);
}

std::unique_ptr<ChunkSource> make_cached_source(const ActivationFactoryConfig& config,
                                                const ActivationSourceConfig& source,
                                                std::int64_t index, ChunkOrder order,
                                                std::optional<std::int64_t>& d_model,
                                                std::string& d_model_from, Logger& logger) {
  SAES_CHECK(source.path.per_hook.empty(), UnsupportedError,
             "source {}: a per-hook path map is not supported; give the run folder", source.name);
  const fs::path& root = source.path.root;
  const bool two_d = config.target == ActivationTarget::kActivations2d;
  if (!fs::exists(root / io::kManifestFileName) && fs::is_directory(root)) {
    auto legacy =
        std::make_unique<LegacySource>(index, root, config.hook_points, source.dtype, order);
    if (auto width = legacy->d_model()) check_width(source, *width, d_model, d_model_from);
    return legacy;
  }
  auto shards =
      std::make_unique<ShardSource>(index, root, config.hook_points, source.dtype, order, logger);
  const auto& manifest = shards->manifest();
  const bool shards_2d = manifest.target == io::ShardTarget::kActivations2d;
  SAES_CHECK(shards_2d == two_d, ConfigError, "source {}: shards in {} are {} but target is {}",
             source.name, root.string(), io::shard_target_name(manifest.target),
             kActivationTargetNames[static_cast<std::size_t>(config.target)]);
  check_width(source, manifest.d_model, d_model, d_model_from);
  return shards;
}

}  // namespace

std::unique_ptr<ActivationStream> make_pipeline_stream(
    std::vector<std::unique_ptr<ChunkSource>> sources, std::vector<double> weights,
    PipelineOptions options) {
  return std::make_unique<PipelineStream>(std::move(sources), std::move(weights),
                                          std::move(options));
}

std::unique_ptr<ActivationStream> make_activation_stream(const ActivationFactoryConfig& config,
                                                         const StreamInputs& inputs,
                                                         Logger& logger) {
  SAES_CHECK(config.target != ActivationTarget::kTokens, UnsupportedError,
             "activation stream: target tokens is not supported for training");
  SAES_CHECK(!config.hook_points.empty(), ConfigError, "hook_points is empty");
  SAES_CHECK(inputs.world >= 1 && config.batch_size % inputs.world == 0, ConfigError,
             "batch_size {} is not divisible by the data-parallel size {}", config.batch_size,
             inputs.world);
  std::optional<std::int64_t> d_model = inputs.d_model;
  std::string d_model_from = inputs.d_model ? "the dictionary config" : "";
  std::vector<std::unique_ptr<ChunkSource>> sources;
  std::vector<double> weights;
  for (const auto& source : config.sources) {
    const auto index = static_cast<std::int64_t>(sources.size());
    if (source.type == SourceType::kDataset) {
      SAES_CHECK(inputs.models != nullptr && inputs.make_batcher, ConfigError,
                 "source {} has type dataset but no model was configured", source.name);
      check_width(source, inputs.models->spec().d_model, d_model, d_model_from);
      sources.push_back(
          std::make_unique<LiveSource>(index, *inputs.models, inputs.make_batcher(source),
                                       config.hook_points, config.target, config.model_batch_size));
    } else {
      const ChunkOrder order{inputs.rank, inputs.world, source.shuffle_shards,
                             inputs.seed + static_cast<std::uint64_t>(index)};
      sources.push_back(
          make_cached_source(config, source, index, order, d_model, d_model_from, logger));
    }
    weights.push_back(source.sample_weights);
  }
  if (config.buffer_shuffle && config.buffer_shuffle->generator_device) {
    SAES_CHECK(*config.buffer_shuffle->generator_device == "cpu", UnsupportedError,
               "activation_factory.buffer_shuffle.generator_device: \"{}\" is not supported: the "
               "shuffle permutation is drawn on the CPU from perm_seed; set it to null or cpu",
               *config.buffer_shuffle->generator_device);
  }
  PipelineOptions options;
  options.batch_size = config.batch_size / inputs.world;
  if (config.buffer_size) options.buffer_size = *config.buffer_size / inputs.world;
  options.perm_seed = static_cast<std::uint64_t>(
      config.buffer_shuffle ? config.buffer_shuffle->perm_seed : BufferShuffleConfig{}.perm_seed);
  options.mix_seed = inputs.seed;
  options.override_dtype = config.override_dtype;
  options.device = inputs.device;
  options.prefetch_batches = static_cast<int>(config.prefetch_batches);
  options.fingerprint = fingerprint_of(config, inputs);
  options.allow_data_change = inputs.allow_data_change;
  for (const auto& source : config.sources) {
    options.source_labels.push_back(fmt::format("{} ({})", source.name, source.path.root.string()));
  }
  return make_pipeline_stream(std::move(sources), std::move(weights), std::move(options));
}

}  // namespace saes::data

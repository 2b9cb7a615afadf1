// ActivationStream: the batches of hook activations a trainer consumes (spec §6.1), from saes
// shards, the original's chunk layout or a language model run on the fly, mixed by sample_weights,
// shuffled, re-batched, cast and prefetched; state()/restore() give exact resume (docs/data.md).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "saes/core/logging.h"
#include "saes/data/config.h"
#include "saes/data/token_batcher.h"

namespace saes::lm {
class ModelSet;
}

namespace saes::data {

class ChunkSource;

/// One training batch. 1-D target: rows are tokens, acts[hook] is [n, d_model], tokens [n] and mask
/// undefined. 2-D target: rows are contexts, acts[hook] is [b, seq, d_model], tokens [b, seq] and
/// mask [b, seq] bool (true = token used). A transcoder's input and label are two hooks of the same
/// batch. tokens/mask are never cast by override_dtype.
struct ActivationBatch {
  std::map<std::string, at::Tensor> acts;  ///< hook point → activations on the stream's device
  at::Tensor tokens;                       ///< int64, on the stream's device
  at::Tensor mask;                         ///< 2-D only (bool); undefined for 1-D
  std::int64_t n_tokens = 0;  ///< tokens.numel() (2-D: padding included, as spec §6.1)

  std::int64_t n_rows() const { return tokens.defined() ? tokens.size(0) : 0; }
};

/// Consumer-side figures of a stream.
struct StreamStats {
  std::int64_t batches = 0;  ///< batches delivered by next()
  double wait_seconds = 0;   ///< time next() spent waiting for the background producer
};

class ActivationStream {
 public:
  virtual ~ActivationStream() = default;
  /// The next batch (batch_size rows; the last one may be shorter), nullopt at the end of the data.
  virtual std::optional<ActivationBatch> next() = 0;
  /// Opaque JSON text: the exact position (batches emitted plus a fingerprint of the settings).
  virtual std::string state() const = 0;
  /// Moves a freshly built stream (same config, seed, rank and world; next() not called yet) to
  /// the position `state` describes, so the following batches are bitwise those the saved stream
  /// would have produced. Throws ConfigError for a state of other settings or a used stream.
  virtual void restore(const std::string& state) = 0;
  virtual StreamStats stats() const { return {}; }
};

/// Builds the token batcher of a `dataset` source (the runner owns tokenizer and dataset configs).
using MakeTokenBatcher = std::function<TokenBatcher(const ActivationSourceConfig& source)>;

/// What make_activation_stream needs besides the config.
struct StreamInputs {
  /// The model(s) `dataset` sources run (required by them); its models must outlive the stream.
  const lm::ModelSet* models = nullptr;
  MakeTokenBatcher make_batcher;           ///< required by `dataset` sources
  std::optional<std::int64_t> d_model;     ///< expected width; checked against every source
  c10::Device device = c10::Device(c10::DeviceType::CPU);  ///< where batches are delivered
  int rank = 0;   ///< data-parallel rank: reads shards/chunks i with i % world == rank
  int world = 1;  ///< each rank emits batch_size / world rows (batch_size must divide)
  std::uint64_t seed =
      0;  ///< mixing RNG and shard order; the shuffle uses buffer_shuffle.perm_seed
  /// restore() accepts a state saved on other data (by default a shard source whose manifest
  /// digest differs from the saved one is a ConfigError).
  bool allow_data_change = false;
};

/// Builds the source chain of `config` (one source per entry, the mixer, shuffle buffer, batching,
/// override_dtype, device move, background prefetch). Throws ConfigError for a dataset source
/// without model ("source X has type dataset but no model was configured"), unknown hooks (listing
/// the available ones), a d_model mismatch (naming both), an unsupported target; IoError naming a
/// missing shard folder.
std::unique_ptr<ActivationStream> make_activation_stream(const ActivationFactoryConfig& config,
                                                         const StreamInputs& inputs,
                                                         Logger& logger);

/// The stages after the sources, for callers that build sources themselves (tests, benches).
struct PipelineOptions {
  std::int64_t batch_size = 0;              ///< rows per batch on this rank
  std::optional<std::int64_t> buffer_size;  ///< rows in the shuffle buffer (nullopt: no shuffle)
  std::uint64_t perm_seed = 42;             ///< shuffle permutation seed
  std::uint64_t mix_seed = 0;               ///< source-draw seed
  std::optional<DType> override_dtype;      ///< cast activations only
  c10::Device device = c10::Device(c10::DeviceType::CPU);
  int prefetch_batches = 4;  ///< batches produced ahead on the background thread
  std::string fingerprint;   ///< identifies the settings in state()
  bool allow_data_change = false;          ///< see StreamInputs
  std::vector<std::string> source_labels;  ///< per source, for messages ("name (path)")
};

/// Mixer (by `weights`) → shuffle buffer / re-batching → dtype cast → prefetch. Source i's chunks
/// must carry source index i in their row ids.
std::unique_ptr<ActivationStream> make_pipeline_stream(
    std::vector<std::unique_ptr<ChunkSource>> sources, std::vector<double> weights,
    PipelineOptions options);

}  // namespace saes::data

// LiveSource: a ChunkSource that runs a language model on the fly (no disk): each chunk is one
// model batch of a TokenBatcher, with the activations of the requested hooks (spec §6.1 stages
// 1–2); with several checkpoints, each batch runs through each of them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "saes/data/activation_rows.h"
#include "saes/data/config.h"
#include "saes/data/token_batcher.h"
#include "saes/lm/model_set.h"

namespace saes::data {

class LiveSource final : public ChunkSource {
 public:
  /// The models of `models` must outlive the source; each batch's tokens run through every model
  /// the hooks name (several checkpoints: aligned token for token). Hook names are checked now
  /// (ConfigError listing the valid ones). Target activations-1d keeps tokens with mask == 1
  /// (pad/BOS/ignored dropped).
  LiveSource(std::int64_t index, lm::ModelSet models, TokenBatcher batcher,
             std::vector<std::string> hooks, ActivationTarget target,
             std::int64_t model_batch_size);

  /// Ghost chunks tokenize only (no forward) and keep the tokens for load_chunk.
  std::optional<Rows> next_chunk(bool ghost) override;
  Rows load_chunk(std::int64_t seq) override;
  void retain(const std::set<std::int64_t>& seqs) override;

 private:
  Rows run_model(const TokenBatch& batch, std::int64_t seq) const;

  std::int64_t index_;
  lm::ModelSet models_;
  TokenBatcher batcher_;
  std::vector<std::string> hooks_;
  ActivationTarget target_;
  std::int64_t model_batch_size_;
  std::int64_t next_ = 0;
  std::map<std::int64_t, TokenBatch> replayed_;  ///< ghost chunks the resume may still load
};

}  // namespace saes::data

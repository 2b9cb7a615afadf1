// LiveSource: a ChunkSource that runs a language model on the fly (no disk): each chunk is one
// model batch of a TokenBatcher, with the activations of the requested hooks (spec §6.1 stages
// 1–2).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "saes/data/activation_rows.h"
#include "saes/data/config.h"
#include "saes/data/token_batcher.h"

namespace saes::lm {
class Transformer;
}

namespace saes::data {

class LiveSource final : public ChunkSource {
 public:
  /// `model` must outlive the source. Hook names are checked now (ConfigError listing the valid
  /// ones). Target activations-1d keeps tokens with mask == 1 (pad/BOS/ignored dropped).
  LiveSource(std::int64_t index, const lm::Transformer& model, TokenBatcher batcher,
             std::vector<std::string> hooks, ActivationTarget target,
             std::int64_t model_batch_size);

  /// Ghost chunks tokenize only (no forward) and keep the tokens for load_chunk.
  std::optional<Rows> next_chunk(bool ghost) override;
  Rows load_chunk(std::int64_t seq) override;
  void retain(const std::set<std::int64_t>& seqs) override;

 private:
  Rows run_model(const TokenBatch& batch, std::int64_t seq) const;

  std::int64_t index_;
  const lm::Transformer& model_;
  TokenBatcher batcher_;
  std::vector<std::string> hooks_;
  ActivationTarget target_;
  std::int64_t model_batch_size_;
  std::int64_t next_ = 0;
  std::map<std::int64_t, TokenBatch> replayed_;  ///< ghost chunks the resume may still load
};

}  // namespace saes::data

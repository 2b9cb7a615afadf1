// The dictionary variant table: sae_type → constructor (style §B4).
#include "saes/dictionaries/registry.h"

#include "saes/core/error.h"
#include "saes/dictionaries/clt.h"
#include "saes/dictionaries/crosscoder.h"
#include "saes/dictionaries/lorsa.h"
#include "saes/dictionaries/molt.h"
#include "saes/dictionaries/sae.h"

namespace saes::dictionaries {

namespace {

std::unique_ptr<SparseDictionary> construct(const SparseDictionaryConfig& cfg, FeatureShard shard) {
  switch (cfg.sae_type) {
    case SaeType::kSae:
      return std::make_unique<SparseAutoEncoder>(cfg, shard);
    case SaeType::kClt:
      return std::make_unique<CrossLayerTranscoder>(cfg, shard);
    case SaeType::kLorsa:
      return std::make_unique<LowRankSparseAttention>(cfg, shard);
    case SaeType::kMolt:
      return std::make_unique<MixtureOfLinearTransforms>(cfg, shard);
    case SaeType::kCrosscoder:
      return std::make_unique<CrossCoder>(cfg, shard);
  }
  SAES_THROW(UnsupportedError, "sae_type {} is not implemented",
             kSaeTypeNames[static_cast<std::size_t>(cfg.sae_type)]);
}

}  // namespace

std::unique_ptr<SparseDictionary> make_dictionary(const SparseDictionaryConfig& cfg,
                                                  FeatureShard shard) {
  std::unique_ptr<SparseDictionary> dict = construct(cfg, shard);
  SAES_CHECK(!shard.heads_sharded() || dict->splits_heads(), ConfigError,
             "head_parallel_size {}: {} dictionaries have no heads to split (only a crosscoder's "
             "hook points are)",
             shard.head_size(), kSaeTypeNames[static_cast<std::size_t>(cfg.sae_type)]);
  return dict;
}

}  // namespace saes::dictionaries

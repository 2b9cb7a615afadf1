// SourceMixer: seeded weighted draws over the sources that still have chunks.
#include "saes/data/mixer.h"

#include "saes/core/error.h"

namespace saes::data {

SourceMixer::SourceMixer(std::vector<std::unique_ptr<ChunkSource>> sources,
                         std::vector<double> weights, std::uint64_t seed)
    : sources_(std::move(sources)),
      weights_(std::move(weights)),
      exhausted_(sources_.size(), false),
      rng_(seed) {
  SAES_ASSERT(weights_.size() == sources_.size(), "one weight per source");
  SAES_CHECK(!sources_.empty(), ConfigError, "activation stream: no sources configured");
  for (std::size_t i = 0; i < weights_.size(); ++i) {
    SAES_CHECK(weights_[i] > 0, ConfigError, "sources[{}].sample_weights must be > 0, got {}", i,
               weights_[i]);
  }
}

std::optional<Rows> SourceMixer::next(bool ghost) {
  while (true) {
    double total = 0;
    for (std::size_t i = 0; i < sources_.size(); ++i) total += exhausted_[i] ? 0 : weights_[i];
    if (total <= 0) return std::nullopt;
    // 53 random bits → [0, 1): the same draw on every platform (std distributions are not).
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;
    std::size_t pick = 0;
    double acc = 0;
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      if (exhausted_[i]) continue;
      pick = i;
      acc += weights_[i];
      if (u < acc) break;
    }
    if (auto rows = sources_[pick]->next_chunk(ghost)) return rows;
    exhausted_[pick] = true;
  }
}

}  // namespace saes::data

// SourceMixer: the weighted aggregator of spec §6.1 — each chunk comes from a source drawn with
// probability ∝ sample_weights (seeded, with replacement); exhausted sources drop out.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "saes/data/activation_rows.h"

namespace saes::data {

class SourceMixer {
 public:
  /// Source i's chunks carry source index i. Weights must be > 0 (ConfigError).
  SourceMixer(std::vector<std::unique_ptr<ChunkSource>> sources, std::vector<double> weights,
              std::uint64_t seed);

  /// The next chunk of a drawn source. The draw is renormalized over the sources not yet
  /// exhausted — the distribution the original's redraw-until-not-exhausted loop produces.
  /// nullopt once every source is exhausted.
  std::optional<Rows> next(bool ghost);

  std::size_t size() const { return sources_.size(); }
  ChunkSource& source(std::size_t i) { return *sources_.at(i); }
  const ChunkSource& source(std::size_t i) const { return *sources_.at(i); }

 private:
  std::vector<std::unique_ptr<ChunkSource>> sources_;
  std::vector<double> weights_;
  std::vector<bool> exhausted_;
  std::mt19937_64 rng_;
};

}  // namespace saes::data

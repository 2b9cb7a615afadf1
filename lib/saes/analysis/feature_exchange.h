// Moving FeatureAnalyzer results between ranks: a compact binary encoding of FeatureStats and the
// gather of feature-split results (model-parallel analysis: each rank analyzed its own features).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "saes/analysis/feature_analyzer.h"

namespace saes::distributed {
class Communicator;
}  // namespace saes::distributed

namespace saes::analysis {

/// Little-endian binary encoding of `features` (counts, then each feature's statistics,
/// histogram and sampled contexts); decode_feature_stats inverts it exactly.
std::string encode_feature_stats(const std::vector<FeatureStats>& features);
/// Throws DataError for a truncated or malformed encoding.
std::vector<FeatureStats> decode_feature_stats(std::string_view bytes);

/// Collective over `group`: every rank's `local` features concatenated in rank order (the
/// features of the whole dictionary when rank r analyzed the r-th block of features).
std::vector<FeatureStats> gather_feature_stats(const std::vector<FeatureStats>& local,
                                               distributed::Communicator& group);

}  // namespace saes::analysis

// Lorsa z-patterns (spec §7.2): which earlier tokens each sampled activation of an attention-like
// feature reads from. A second pass over the analysed contexts recomputes, for every sampled
// (context, feature), the contributions c[q, k] = A_g[q, k]·v_i[k] (SparseDictionary::
// source_contributions) at the queries where the feature fires, and keeps |c| >= 0.01·f[q].
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "saes/analysis/feature_analyzer.h"
#include "saes/dictionaries/sparse_dictionary.h"

namespace saes::analysis {

/// Contributions smaller than this fraction of the activation at their query are dropped (as
/// the original).
inline constexpr double kSourcePatternThreshold = 0.01;

/// The analysed contexts again, in the stream order the analyzer numbered them: each call
/// returns the next batch's RAW input-hook activations ([B, T, d_model] per input hook), or
/// nullopt at the end.
using ContextBatches = std::function<std::optional<dictionaries::HookActs>()>;

/// Fills source_q / source_k / source_values of every sampled context in `features` (the whole
/// dictionary's, feature i = dict's feature i) from `batches`; reads batches only up to the last
/// sampled context. `dict` must be whole (unsharded) and implement source_contributions.
/// Returns the number of (context, feature) patterns computed.
std::int64_t add_source_patterns(const dictionaries::SparseDictionary& dict,
                                 std::vector<FeatureStats>& features,
                                 const ContextBatches& batches);

}  // namespace saes::analysis

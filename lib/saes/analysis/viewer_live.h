// Live inference in the viewer (issue #21, docs/viewer.md "Your own text"): the pages and JSON
// of a text the user types, run through the model and the dictionary by a LiveInference the
// server provides (runners/live_inference.h; torch stays out of the analysis pages). Routes:
// `/infer?text=…` (the top features of every token, tokens shaded by their strongest feature),
// `/api/infer?text=…`, and `/features/<id>?text=…` (the feature page with that text shaded for
// the feature). The dictionary page and every feature page get the text box.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "saes/analysis/annotations.h"
#include "saes/analysis/viewer_pages.h"

namespace saes::analysis {

class AnalysisStore;

/// What one text gave.
struct LiveTokens {
  std::vector<std::string> tokens;  ///< each token's text (BOS included when the model adds it)
  /// Per token, its strongest features (viewer id, activation), largest first, at most kLiveTopK.
  std::vector<std::vector<std::pair<std::int64_t, float>>> top;
  std::vector<float> feature;  ///< when a feature was asked: its activation at each token
};

/// Runs the model and the dictionary on `text`. Throws saes::Error with a one-line message:
/// DataError for a text it refuses (too many tokens), anything else when it cannot run.
using LiveInference =
    std::function<LiveTokens(std::string_view text, std::optional<std::int64_t> feature)>;

inline constexpr std::size_t kMaxLiveTextBytes = 2000;
inline constexpr std::size_t kLiveTopK = 8;

/// The live routes above, with `live` (null: the server has none — the pages say so); nullopt for
/// any other route. A text over kMaxLiveTextBytes, an empty one, or one the inference refuses is a
/// 400 naming the reason; an inference that cannot run (the model is missing) a 503.
std::optional<PageResponse> handle_live_request(
    const AnalysisStore& store, const LiveInference* live, std::string_view path,
    const QueryParams& params, const std::map<std::int64_t, Annotation>* annotations = nullptr);

}  // namespace saes::analysis

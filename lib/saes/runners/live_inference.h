// The viewer's live inference (issue #21; analysis/viewer_live.h has the pages): the model and the
// dictionary an analysis database records (its meta config_yaml: model, sae path), loaded once on
// the first request, run on a user's text one request at a time.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "saes/analysis/viewer_live.h"

namespace saes::analysis {
class AnalysisStore;
}  // namespace saes::analysis

namespace saes::runners {

/// Limits of one live request.
inline constexpr std::int64_t kMaxLiveTokens = 256;

class LiveModel {
 public:
  /// Reads what `store` records (nothing is loaded yet). The store must outlive this object.
  explicit LiveModel(const analysis::AnalysisStore& store);
  ~LiveModel();
  LiveModel(const LiveModel&) = delete;
  LiveModel& operator=(const LiveModel&) = delete;

  /// Tokenizes `text` (BOS as the recorded model config says), runs the model to the
  /// dictionary's input hooks and encodes: every token's kLiveTopK strongest features (the
  /// viewer's ids: layer-major for a CLT) and, when asked, one feature's activation per token.
  /// Loads the model and the dictionary on the first call; when that fails, every call throws the
  /// same IoError / ConfigError / UnsupportedError (one line naming the recorded path or key).
  /// DataError for a text of more than kMaxLiveTokens tokens (or the model's context). Calls are
  /// serialized.
  analysis::LiveTokens run(std::string_view text, std::optional<std::int64_t> feature);

  /// run as an analysis::LiveInference.
  analysis::LiveInference inference();

 private:
  struct Loaded;
  void load();
  const analysis::AnalysisStore& store_;
  std::mutex mutex_;
  bool tried_ = false;
  std::exception_ptr failure_;  ///< why loading failed (rethrown by every later call)
  std::unique_ptr<Loaded> loaded_;
};

}  // namespace saes::runners

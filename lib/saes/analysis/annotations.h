// Interpretations and bookmarks (issue #21, docs/viewer.md "Annotations"): a short label, notes
// and a bookmark per feature of each served dictionary, kept in their own SQLite file (the
// analysis databases stay read-only), written only when the viewer is started with
// `--annotations FILE`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace saes::io {
class SqliteDatabase;
}  // namespace saes::io

namespace saes::analysis {

struct Annotation {
  std::string label;  ///< ≤ kMaxLabelBytes
  std::string notes;  ///< ≤ kMaxNotesBytes
  bool bookmarked = false;
  std::string updated;  ///< UTC time of the last change (ISO 8601)
};

inline constexpr std::size_t kMaxLabelBytes = 200;
inline constexpr std::size_t kMaxNotesBytes = 4000;

/// The annotations file. Creates it (schema `annotations (dictionary TEXT, feature INTEGER,
/// label TEXT, notes TEXT, bookmarked INTEGER, updated TEXT, PRIMARY KEY (dictionary, feature))`
/// and a meta table naming its kind) when missing; DataError for a file that is not one.
/// `dictionary` is the served dictionary's name (viewer_site.h). Not thread-safe: the viewer
/// serializes its requests.
class AnnotationStore {
 public:
  explicit AnnotationStore(const std::filesystem::path& path);
  ~AnnotationStore();
  AnnotationStore(const AnnotationStore&) = delete;
  AnnotationStore& operator=(const AnnotationStore&) = delete;

  std::optional<Annotation> get(const std::string& dictionary, std::int64_t feature) const;
  /// Every annotated feature of a dictionary.
  std::map<std::int64_t, Annotation> all(const std::string& dictionary) const;
  /// Stores (replaces) a feature's annotation; an empty label and notes without a bookmark
  /// removes it. ConfigError for a label or notes over their limits.
  void put(const std::string& dictionary, std::int64_t feature, const Annotation& annotation);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::unique_ptr<io::SqliteDatabase> db_;
};

}  // namespace saes::analysis

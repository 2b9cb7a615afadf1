// AnnotationStore (annotations.h): one SQLite file of labels, notes and bookmarks.
#include "saes/analysis/annotations.h"

#include <system_error>

#include "saes/core/error.h"
#include "saes/io/sqlite.h"

namespace saes::analysis {
namespace fs = std::filesystem;
namespace {

constexpr const char* kKind = "saes annotations";

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS annotations (dictionary TEXT NOT NULL, feature INTEGER NOT NULL,
                          label TEXT NOT NULL, notes TEXT NOT NULL, bookmarked INTEGER NOT NULL,
                          updated TEXT NOT NULL, PRIMARY KEY (dictionary, feature));
INSERT OR IGNORE INTO meta VALUES ('kind', 'saes annotations');
INSERT OR IGNORE INTO meta VALUES ('schema_version', '1');
)sql";

Annotation read(const io::SqliteStatement& st, int first) {
  return {st.column_text(first), st.column_text(first + 1), st.column_int(first + 2) != 0,
          st.column_text(first + 3)};
}

}  // namespace

AnnotationStore::AnnotationStore(const fs::path& path) : path_(path) {
  std::error_code ec;
  const bool existed = fs::exists(path, ec);
  SAES_CHECK(!existed || fs::is_regular_file(path, ec), IoError,
             "--annotations {}: not a file", path.string());
  db_ = std::make_unique<io::SqliteDatabase>(
      path, existed ? io::SqliteMode::kReadWrite : io::SqliteMode::kCreate);
  db_->exec("PRAGMA busy_timeout = 5000;");
  if (existed) {
    std::string kind;
    try {
      auto st = db_->prepare("SELECT value FROM meta WHERE key = 'kind'");
      if (st.step()) kind = st.column_text(0);
    } catch (const IoError&) {
    }
    SAES_CHECK(kind == kKind, DataError,
               "--annotations {}: not an saes annotations file (another SQLite database?)",
               path.string());
  }
  db_->exec(kSchema);
}

AnnotationStore::~AnnotationStore() = default;

std::optional<Annotation> AnnotationStore::get(const std::string& dictionary,
                                               std::int64_t feature) const {
  auto st = db_->prepare(
      "SELECT label, notes, bookmarked, updated FROM annotations WHERE dictionary = ? AND "
      "feature = ?");
  st.bind(1, dictionary).bind(2, feature);
  if (!st.step()) return std::nullopt;
  return read(st, 0);
}

std::map<std::int64_t, Annotation> AnnotationStore::all(const std::string& dictionary) const {
  auto st = db_->prepare(
      "SELECT feature, label, notes, bookmarked, updated FROM annotations WHERE dictionary = ?");
  st.bind(1, dictionary);
  std::map<std::int64_t, Annotation> out;
  while (st.step()) out[st.column_int(0)] = read(st, 1);
  return out;
}

void AnnotationStore::put(const std::string& dictionary, std::int64_t feature,
                          const Annotation& a) {
  SAES_CHECK(a.label.size() <= kMaxLabelBytes, ConfigError, "label: {} bytes, the limit is {}",
             a.label.size(), kMaxLabelBytes);
  SAES_CHECK(a.notes.size() <= kMaxNotesBytes, ConfigError, "notes: {} bytes, the limit is {}",
             a.notes.size(), kMaxNotesBytes);
  if (a.label.empty() && a.notes.empty() && !a.bookmarked) {
    db_->prepare("DELETE FROM annotations WHERE dictionary = ? AND feature = ?")
        .bind(1, dictionary)
        .bind(2, feature)
        .run();
    return;
  }
  db_->prepare(
         "INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, "
         "strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))")
      .bind(1, dictionary)
      .bind(2, feature)
      .bind(3, a.label)
      .bind(4, a.notes)
      .bind(5, std::int64_t{a.bookmarked ? 1 : 0})
      .run();
}

}  // namespace saes::analysis

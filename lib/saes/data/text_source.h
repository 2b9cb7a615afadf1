// TextSource: streams text documents from plain-text files or JSONL files (paths or globs), in a
// deterministic global order, each rank taking a disjoint round-robin slice. Tokenization is left
// to token_batcher.h; this file knows nothing about tokens or tensors.
#pragma once

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace saes::data {

enum class TextFormat {
  kText,   ///< plain text; documents separated by `separator` lines
  kJsonl,  ///< one JSON object per non-blank line; the document is its `text_field` string
};

/// "text" | "jsonl" → format; nullopt for anything else.
std::optional<TextFormat> try_parse_text_format(std::string_view name);
std::string_view text_format_name(TextFormat format);

/// Knobs of a text source; field names are the config keys.
struct TextSourceOptions {
  /// Files or glob(3) patterns. Each pattern's matches are sorted bytewise; patterns keep their
  /// listed order. No match, a directory or a file listed twice is a DataError.
  std::vector<std::string> paths;
  TextFormat format = TextFormat::kText;
  /// JSONL: the string field that holds the document text.
  std::string text_field = "text";
  /// Text: a line equal to this (after dropping a trailing '\r') ends a document. Empty: each file
  /// is one document. Documents never span files. Default fits TinyStories dumps.
  std::string separator = "<|endoftext|>";
  /// Stop after this many documents in the global order (all ranks together); nullopt: no limit.
  std::optional<int64_t> max_documents;
};

/// One document. Text files: lines joined with '\n' ('\r\n' normalized), leading and trailing blank
/// lines removed; documents with no non-blank line are skipped and get no index. JSONL: the field's
/// string exactly; every non-blank line is a document (even with empty text).
struct TextDocument {
  int64_t index = 0;  ///< global document index (0, 1, 2, … over all files, before rank slicing)
  std::string text;
  std::string source;  ///< the file the document came from
  int64_t line = 0;    ///< 1-based line of `source` where the document starts
};

/// Reads documents lazily, line by line (files of any size; one document is held at a time).
/// Rank slicing is round-robin: document i belongs to rank i % world_size, which keeps ranks
/// balanced while streaming. Every rank scans all files; only its own documents are assembled
/// (JSONL: parsed), so a malformed line is reported by the rank that owns it.
class TextSource {
 public:
  /// Resolves the paths now (throws DataError for missing files); opens files lazily.
  explicit TextSource(TextSourceOptions options, int64_t rank = 0, int64_t world_size = 1);

  /// Next document of this rank in global order; nullopt when all files (or max_documents) are
  /// done. Throws DataError for unreadable files and bad JSONL lines ("f.jsonl:17: invalid JSON").
  std::optional<TextDocument> next();

  /// The resolved files, in reading order.
  const std::vector<std::string>& files() const { return files_; }

 private:
  bool open_next_file();
  bool read_line(std::string& line);
  bool owns(int64_t index) const { return index % world_size_ == rank_; }
  bool limit_reached() const;
  std::optional<TextDocument> next_text_document();
  std::optional<TextDocument> next_jsonl_document();

  TextSourceOptions options_;
  int64_t rank_;
  int64_t world_size_;
  std::vector<std::string> files_;
  size_t next_file_ = 0;
  std::ifstream stream_;
  std::string current_file_;
  int64_t line_number_ = 0;
  int64_t next_index_ = 0;
};

/// Expands files/glob patterns as TextSourceOptions::paths describes.
std::vector<std::string> resolve_text_paths(const std::vector<std::string>& patterns);

}  // namespace saes::data

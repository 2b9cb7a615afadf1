// StagedOutput: an output folder written atomically — files go into OUT.tmp, commit() renames it
// to OUT; destruction without commit removes the staging folder, so no partial output remains.
#pragma once

#include <filesystem>

namespace saes::convert {

class StagedOutput {
 public:
  /// Refuses (ConfigError, exit 2) an existing non-empty `output` unless `overwrite`, and an
  /// `output` that is a file (IoError). Creates a fresh, empty staging folder beside it.
  StagedOutput(std::filesystem::path output, bool overwrite);
  ~StagedOutput();
  StagedOutput(const StagedOutput&) = delete;
  StagedOutput& operator=(const StagedOutput&) = delete;

  /// The folder to write into.
  const std::filesystem::path& staging() const { return staging_; }
  /// Replaces `output` by the staging folder (the old output, if any, is removed afterwards).
  void commit();

 private:
  std::filesystem::path output_;
  std::filesystem::path staging_;
  bool committed_ = false;
};

}  // namespace saes::convert

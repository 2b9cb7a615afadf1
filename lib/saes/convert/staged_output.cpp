// StagedOutput: stage into OUT.tmp, rename into place on commit, clean up otherwise.
#include "saes/convert/staged_output.h"

#include <system_error>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

namespace saes::convert {

namespace fs = std::filesystem;

StagedOutput::StagedOutput(fs::path output, bool overwrite) : output_(std::move(output)) {
  SAES_CHECK(!output_.empty(), ConfigError, "output: no output folder given");
  if (output_.filename().empty()) output_ = output_.parent_path();
  std::error_code ec;
  if (fs::exists(output_, ec)) {
    SAES_CHECK(fs::is_directory(output_), IoError, "output {} exists and is not a folder",
               output_.string());
    SAES_CHECK(overwrite || fs::is_empty(output_), ConfigError,
               "output folder {} exists and is not empty; pass --overwrite (overwrite: true) to "
               "replace it",
               output_.string());
  }
  staging_ = output_;
  staging_ += ".tmp";
  io::remove_tree(staging_, ec);
  SAES_CHECK(!ec, IoError, "cannot remove stale staging folder {}: {}", staging_.string(),
             ec.message());
  fs::create_directories(staging_, ec);
  SAES_CHECK(!ec, IoError, "cannot create {}: {}", staging_.string(), ec.message());
}

StagedOutput::~StagedOutput() {
  if (committed_) return;
  std::error_code ec;
  io::remove_tree(staging_, ec);
}

void StagedOutput::commit() {
  std::error_code ec;
  fs::path old = output_;
  old += ".old";
  const bool replace = fs::exists(output_, ec);
  if (replace) {
    io::remove_tree(old, ec);
    fs::rename(output_, old, ec);
    SAES_CHECK(!ec, IoError, "cannot move {} aside: {}", output_.string(), ec.message());
  }
  fs::rename(staging_, output_, ec);
  SAES_CHECK(!ec, IoError, "cannot rename {} to {}: {}", staging_.string(), output_.string(),
             ec.message());
  committed_ = true;
  if (replace) io::remove_tree(old, ec);
}

}  // namespace saes::convert

// safetensors files: SafetensorsFile reads (mmap, validated header, zero-copy tensors) and
// save_safetensors writes (atomic, byte layout of the Python `safetensors` writer).
// docs/formats.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "saes/core/dtype.h"

namespace at {
class Tensor;
}  // namespace at

namespace saes::io {

class MmapFile;

/// What the header says about one tensor. Offsets are bytes relative to the start of the data
/// region (the first byte after the header), as in the file's `data_offsets`.
struct SafetensorsTensorInfo {
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> shape;
  std::uint64_t data_begin = 0;
  std::uint64_t data_end = 0;

  std::int64_t numel() const;
};

/// How tensor()/slice() hand out data.
enum class TensorLoad {
  /// A CPU tensor that views the mapping when the data is aligned for its dtype (always the case
  /// for files from save_safetensors or current Python), else a copy. The view keeps the mapping
  /// alive. Writes into a view never reach the file (private mapping), but they are visible to
  /// every other view of the same bytes from this SafetensorsFile: clone() before writing in place.
  kView,
  /// Always a fresh, owning CPU tensor.
  kCopy,
};

/// A safetensors file opened read-only. The whole header is validated on open(); afterwards
/// tensor() and slice() cannot hit corrupt offsets. Cheap to copy (copies share the mapping).
class SafetensorsFile {
 public:
  /// Maps and validates `path`. Throws IoError if it cannot be read, DataError (one line, naming
  /// the file and the tensor) if the header is malformed: see docs/formats.md "safetensors".
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const;
  /// Tensor names in file order (ascending data offset).
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return infos_.count(name) != 0; }
  /// Throws DataError naming the file if there is no such tensor.
  const SafetensorsTensorInfo& info(const std::string& name) const;
  /// The `__metadata__` map (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// File offset of the data region: 8 + header length.
  std::uint64_t data_offset() const { return data_offset_; }

  /// The whole tensor: CPU, dtype and shape from the header. See TensorLoad for ownership.
  at::Tensor tensor(const std::string& name, TensorLoad load = TensorLoad::kView) const;
  /// Rows [begin, end) along `dim`: tensor(name).narrow(dim, begin, end - begin), contiguous.
  /// For dim 0 only those rows are touched (a view under kView when aligned); other dims read the
  /// whole tensor and copy the strided slice. Throws DataError for a bad dim or range.
  at::Tensor slice(const std::string& name, std::int64_t dim, std::int64_t begin, std::int64_t end,
                   TensorLoad load = TensorLoad::kView) const;

 private:
  SafetensorsFile() = default;
  at::Tensor load_bytes(std::uint64_t file_offset, const std::vector<std::int64_t>& shape,
                        DType dtype, TensorLoad load) const;

  std::shared_ptr<const MmapFile> file_;
  std::uint64_t data_offset_ = 0;
  std::vector<std::string> names_;
  std::map<std::string, SafetensorsTensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
};

/// Writes `tensors` (any device, any strides; copied to contiguous CPU one at a time while
/// streaming) and `metadata` to `path` atomically (temp file + rename). Byte layout equals Python
/// `safetensors.torch.save_file`: tensors ordered by dtype alignment descending, then name; compact
/// JSON header (`__metadata__` first, its keys sorted), padded with spaces to a multiple of 8.
/// Throws DataError for duplicate names, the reserved name `__metadata__`, names that are not
/// UTF-8, and undefined tensors; UnsupportedError for
/// dtypes outside saes::DType, IoError if writing fails (the previous file, if any, is kept).
void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
void save_safetensors(const std::filesystem::path& path,
                      const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Position of `dtype` in the Python library's dtype order (increasing alignment; its writer sorts
/// tensors by it, descending, then by name).
std::size_t safetensors_dtype_rank(DType dtype);
/// `text` with control characters as spaces (error messages are one line).
std::string safetensors_one_line(std::string text);

/// The file's dtype code ("F32", "BF16", "BOOL", ...) for `dtype`.
std::string_view safetensors_dtype_code(DType dtype);

}  // namespace saes::io

// safetensors tensors (zero-copy views of the mapping) and the streaming writer; the header's
// validation is in safetensors_header.cpp. Layout follows the Python `safetensors` library; see
// docs/formats.md "safetensors".
#include "saes/io/safetensors.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/mmap_file.h"

namespace saes::io {
namespace {

constexpr std::string_view kMetadataKey = "__metadata__";

std::string shape_text(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// ---- writing -----------------------------------------------------------------------------------

struct WriteEntry {
  std::string name;
  const at::Tensor* tensor;
  DType dtype;
  std::uint64_t n_bytes;
};

std::vector<WriteEntry> plan_entries(
    const std::filesystem::path& path,
    const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::vector<WriteEntry> entries;
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    SAES_CHECK(name != kMetadataKey, DataError, "{}: \"{}\" is reserved and cannot name a tensor",
               path.string(), name);
    SAES_CHECK(seen.insert(name).second, DataError, "{}: tensor name \"{}\" given twice",
               path.string(), name);
    SAES_CHECK(tensor.defined(), DataError, "{}: tensor \"{}\" is undefined", path.string(), name);
    DType dtype = DType::kFloat32;
    try {
      dtype = from_torch(tensor.scalar_type());
    } catch (Error& e) {
      e.add_context(fmt::format("{}: tensor \"{}\"", path.string(), name));
      throw;
    }
    auto n_bytes = static_cast<std::uint64_t>(tensor.numel()) * dtype_size(dtype);
    entries.push_back({name, &tensor, dtype, n_bytes});
  }
  std::sort(entries.begin(), entries.end(), [](const WriteEntry& a, const WriteEntry& b) {
    auto rank_a = safetensors_dtype_rank(a.dtype);
    auto rank_b = safetensors_dtype_rank(b.dtype);
    return rank_a != rank_b ? rank_a > rank_b : a.name < b.name;
  });
  return entries;
}

// Compact JSON in the Python writer's key order, padded with spaces to a multiple of 8 bytes.
std::string make_header(const std::filesystem::path& path, const std::vector<WriteEntry>& entries,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;
  std::uint64_t offset = 0;
  for (const auto& entry : entries) {
    nlohmann::ordered_json info = nlohmann::ordered_json::object();
    info["dtype"] = safetensors_dtype_code(entry.dtype);
    info["shape"] = entry.tensor->sizes().vec();
    info["data_offsets"] = {offset, offset + entry.n_bytes};
    header[entry.name] = std::move(info);
    offset += entry.n_bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    SAES_THROW(DataError, "{}: tensor names and metadata must be UTF-8: {}", path.string(),
               safetensors_one_line(e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}
}  // namespace

at::Tensor SafetensorsFile::tensor(const std::string& name, TensorLoad load) const {
  const auto& entry = info(name);
  return load_bytes(data_offset_ + entry.data_begin, entry.shape, entry.dtype, load);
}

at::Tensor SafetensorsFile::slice(const std::string& name, std::int64_t dim, std::int64_t begin,
                                  std::int64_t end, TensorLoad load) const {
  const auto& entry = info(name);
  const auto n_dims = static_cast<std::int64_t>(entry.shape.size());
  SAES_CHECK(dim >= 0 && dim < n_dims, DataError,
             "{}: tensor \"{}\" has shape {}: cannot slice dim {}", path().string(), name,
             shape_text(entry.shape), dim);
  SAES_CHECK(0 <= begin && begin <= end && end <= entry.shape[dim], DataError,
             "{}: tensor \"{}\" has shape {}: slice [{}, {}) of dim {} is out of range",
             path().string(), name, shape_text(entry.shape), begin, end, dim);
  if (dim == 0) {
    std::vector<std::int64_t> shape = entry.shape;
    shape[0] = end - begin;
    const std::int64_t row_elems = entry.shape[0] == 0 ? 0 : entry.numel() / entry.shape[0];
    const auto row_bytes = static_cast<std::uint64_t>(row_elems) * dtype_size(entry.dtype);
    return load_bytes(
        data_offset_ + entry.data_begin + static_cast<std::uint64_t>(begin) * row_bytes, shape,
        entry.dtype, load);
  }
  at::Tensor part = tensor(name, TensorLoad::kView).narrow(dim, begin, end - begin);
  return load == TensorLoad::kCopy ? part.clone(at::MemoryFormat::Contiguous) : part.contiguous();
}

at::Tensor SafetensorsFile::load_bytes(std::uint64_t file_offset,
                                       const std::vector<std::int64_t>& shape, DType dtype,
                                       TensorLoad load) const {
  const auto options = at::TensorOptions().dtype(to_torch(dtype));
  std::int64_t numel = 1;
  for (auto dim : shape) numel *= dim;
  if (numel == 0) return at::empty(shape, options);
  std::byte* data = file_->data() + file_offset;
  const std::size_t element_bytes = dtype_size(dtype);
  const bool aligned = reinterpret_cast<std::uintptr_t>(data) % element_bytes == 0;
  if (load == TensorLoad::kView && aligned) {
    return at::from_blob(
        data, shape, [keep_alive = file_](void*) {}, options);
  }
  at::Tensor out = at::empty(shape, options);
  if (numel > 0) std::memcpy(out.data_ptr(), data, static_cast<std::size_t>(numel) * element_bytes);
  return out;
}

void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::vector<WriteEntry> entries = plan_entries(path, tensors);
  const std::string header = make_header(path, entries, metadata);
  AtomicFile file(path);
  const std::uint64_t header_bytes = header.size();
  file.write(&header_bytes, sizeof(header_bytes));
  file.write(header);
  for (const auto& entry : entries) {
    if (entry.n_bytes == 0) continue;
    // One tensor at a time on the host: a no-op for contiguous CPU tensors.
    at::Tensor host = entry.tensor->cpu().contiguous();
    file.write(host.data_ptr(), entry.n_bytes);
  }
  file.commit();
}

void save_safetensors(const std::filesystem::path& path,
                      const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  save_safetensors(path,
                   std::vector<std::pair<std::string, at::Tensor>>(tensors.begin(), tensors.end()),
                   metadata);
}

}  // namespace saes::io

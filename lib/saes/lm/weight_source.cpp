// In-memory WeightSource and the shape-checked getter used by every loader.
#include "saes/lm/weight_source.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <utility>

#include "saes/core/error.h"

namespace saes::lm {

MapWeightSource::MapWeightSource(std::map<std::string, at::Tensor> tensors, std::string label)
    : tensors_(std::move(tensors)), label_(std::move(label)) {}

at::Tensor MapWeightSource::get(const std::string& name) {
  auto it = tensors_.find(name);
  SAES_CHECK(it != tensors_.end(), DataError, "{}: missing tensor '{}'", label_, name);
  return it->second;
}

bool MapWeightSource::contains(const std::string& name) const { return tensors_.count(name) > 0; }

std::vector<std::string> MapWeightSource::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, tensor] : tensors_) out.push_back(name);
  return out;
}

void MapWeightSource::set(const std::string& name, at::Tensor tensor) {
  tensors_[name] = std::move(tensor);
}

at::Tensor get_checked(WeightSource& source, const std::string& name,
                       const std::vector<int64_t>& shape) {
  at::Tensor tensor = source.get(name);
  const std::vector<int64_t> got(tensor.sizes().begin(), tensor.sizes().end());
  SAES_CHECK(got == shape, DataError, "{}: tensor '{}' has shape [{}], expected [{}]",
             source.describe(), name, fmt::join(got, ", "), fmt::join(shape, ", "));
  return tensor;
}

}  // namespace saes::lm

// WeightSource: where a loader reads named tensors from (a safetensors file, an in-memory map).
// The per-architecture loaders (llama2c_loader, hf_*) read through it; tests build in-memory ones.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

namespace saes::lm {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  /// The tensor `name`, any dtype/device (the engine converts). Throws DataError naming the tensor
  /// and the source when missing.
  virtual at::Tensor get(const std::string& name) = 0;
  virtual bool contains(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;
  /// Says where the tensors come from ("model.safetensors", "memory"), for error messages.
  virtual std::string describe() const = 0;
};

/// A WeightSource over tensors held in memory (tests, converted checkpoints).
class MapWeightSource : public WeightSource {
 public:
  explicit MapWeightSource(std::map<std::string, at::Tensor> tensors, std::string label = "memory");
  at::Tensor get(const std::string& name) override;
  bool contains(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string describe() const override { return label_; }
  void set(const std::string& name, at::Tensor tensor);

 private:
  std::map<std::string, at::Tensor> tensors_;
  std::string label_;
};

/// source.get(name) after checking its shape; throws DataError "<source>: tensor '<name>' has shape
/// [..], expected [..]".
at::Tensor get_checked(WeightSource& source, const std::string& name,
                       const std::vector<int64_t>& shape);

}  // namespace saes::lm

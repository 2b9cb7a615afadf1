// sparsity.safetensors: built from an analysis database's feature frequencies, written and
// validated on import.
#include "saes/convert/sparsity.h"

#include <cmath>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <ATen/ops/empty.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/analysis/store.h"
#include "saes/convert/formats.h"
#include "saes/core/dtype.h"
#include "saes/core/error.h"
#include "saes/io/safetensors.h"

namespace saes::convert {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSparsityTensor = "sparsity";

}  // namespace

at::Tensor sparsity_from_analysis(const fs::path& db, std::int64_t d_sae) {
  std::error_code ec;
  SAES_CHECK(fs::is_regular_file(db, ec), IoError,
             "sparsity_from: analysis database {} does not exist (run saes-analyze first)",
             db.string());
  const analysis::AnalysisStore store(db);
  SAES_CHECK(store.d_sae() == d_sae, DataError,
             "sparsity_from: analysis database {} has d_sae {}, the dictionary has d_sae {}",
             db.string(), store.d_sae(), d_sae);
  const std::vector<double> freq = store.frequencies();
  at::Tensor out = at::empty({d_sae}, at::TensorOptions().dtype(at::kFloat));
  float* data = out.data_ptr<float>();
  for (std::size_t i = 0; i < freq.size(); ++i) {
    data[i] = static_cast<float>(std::log10(freq[i] + kSparsityEpsilon));
  }
  return out;
}

void write_saelens_sparsity(const at::Tensor& sparsity, const fs::path& dir) {
  const std::vector<std::pair<std::string, at::Tensor>> tensors = {{kSparsityTensor, sparsity}};
  io::save_safetensors(dir / kSaeLensSparsityFile, tensors);
}

at::Tensor read_saelens_sparsity(const fs::path& dir, std::int64_t d_sae) {
  const fs::path path = dir / kSaeLensSparsityFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) return {};
  const auto file = io::SafetensorsFile::open(path);
  SAES_CHECK(file.names().size() == 1 && file.contains(kSparsityTensor), DataError,
             "{}: expected one tensor named 'sparsity', got [{}]", path.string(),
             fmt::join(file.names(), ", "));
  const auto& info = file.info(kSparsityTensor);
  SAES_CHECK(info.shape == std::vector<std::int64_t>{d_sae}, DataError,
             "{}: tensor 'sparsity' has shape [{}], expected [{}] (d_sae)", path.string(),
             fmt::join(info.shape, ", "), d_sae);
  SAES_CHECK(dtype_is_floating(info.dtype), DataError,
             "{}: tensor 'sparsity' has dtype {}, expected a float dtype", path.string(),
             dtype_name(info.dtype));
  return file.tensor(kSparsityTensor, io::TensorLoad::kCopy).to(at::kFloat);
}

}  // namespace saes::convert

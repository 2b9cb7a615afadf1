// The SAE / transcoder's model-informed initialization (spec §4 steps 7 and 8): decoder rows from
// the model's MLP at probe inputs (initialize_tc_with_mlp) and decoder rows confined to the
// label's principal subspace (initialize_W_D_with_active_subspace).
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/linalg_svd.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/sum.h>

#include <tuple>

#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/dictionaries/sae.h"

namespace saes::dictionaries {

void SparseAutoEncoder::init_with_mlp(const MlpFunction& mlp, const at::Tensor& x_raw) {
  static constexpr const char* kKey = "initializer.initialize_tc_with_mlp";
  SAES_CHECK(is_transcoder(), ConfigError,
             "{}: needs a transcoder (sae.hook_point_in != sae.hook_point_out), got \"{}\" twice",
             kKey, cfg_.hook_point_in);
  const at::NoGradGuard no_grad;
  const at::Tensor x = x_raw.reshape({-1, cfg_.d_model}).to(at::kCPU).to(at::kDouble);
  SAES_CHECK(x.size(0) >= 1, DataError, "{}: the first batch has no token", kKey);
  const at::Tensor mu = x.mean({0}, true);
  const double sigma = at::linalg_vector_norm(x - mu, 2, {1}, false).mean().item<double>();
  const at::Tensor W_E = W_E_.to(at::kCPU).to(at::kDouble);  // [d_model, local features]
  const at::Tensor directions = (W_E / at::linalg_vector_norm(W_E, 2, {0}, true).clamp_min(1e-12));
  const at::Tensor probes = mu + sigma * directions.t();  // [local, d_model], raw input space
  const at::Tensor o = mlp(probes.to(at::kFloat)).to(at::kCPU).to(at::kDouble);
  SAES_CHECK(o.dim() == 2 && o.size(0) == probes.size(0) && o.size(1) == cfg_.d_model, DataError,
             "{}: the MLP returned shape [{}] for {} probes", kKey, fmt::join(o.sizes(), ", "),
             probes.size(0));
  // the mean over every feature of the dictionary (all ranks of the model group)
  at::Tensor total = o.sum({0}).to(W_D_.options());
  sum_over_features(total);
  const at::Tensor centred = o - (total.to(at::kCPU).to(at::kDouble) / static_cast<double>(d_sae()));
  W_D_.copy_(centred / at::linalg_vector_norm(centred, 2, {1}, true).clamp_min(1e-12));
  W_E_.copy_(directions);
}

void SparseAutoEncoder::init_decoder_in_active_subspace(const at::Tensor& /*x*/,
                                                        const at::Tensor& label_normalized,
                                                        std::int64_t d_active,
                                                        const AttentionLayer* /*attention*/) {
  static constexpr const char* kKey = "initializer.initialize_W_D_with_active_subspace";
  SAES_CHECK(d_active >= 1 && d_active <= cfg_.d_model, ConfigError,
             "initializer.d_active_subspace: expected 1 <= d_active_subspace <= d_model ({}), got "
             "{}",
             cfg_.d_model, d_active);
  const at::NoGradGuard no_grad;
  at::Tensor y = label_normalized.reshape({-1, cfg_.d_model}).to(at::kCPU).to(at::kDouble);
  SAES_CHECK(y.size(0) >= d_active, DataError,
             "{}: the first batch has {} tokens, fewer than d_active_subspace {}", kKey, y.size(0),
             d_active);
  y = y - y.mean({0}, true);
  const at::Tensor basis = std::get<2>(at::linalg_svd(y, false)).narrow(0, 0, d_active);
  const at::Tensor W_D = W_D_.to(at::kCPU).to(at::kDouble);
  W_D_.copy_(at::matmul(W_D.narrow(1, 0, d_active), basis));
}

}  // namespace saes::dictionaries

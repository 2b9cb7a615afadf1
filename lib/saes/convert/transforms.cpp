// copy_with_config, cast_dtype and TopK → JumpReLU (spec §3.3) for SparseAutoEncoder.
#include "saes/convert/transforms.h"

#include <cmath>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/clamp_min.h>
#include <ATen/ops/count_nonzero.h>
#include <ATen/ops/full.h>
#include <ATen/ops/log.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/topk.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"

namespace saes::convert {

using dictionaries::ActFn;
using dictionaries::SparseAutoEncoder;
using dictionaries::SparseDictionaryConfig;

std::map<std::string, at::Tensor> named_parameters(const SparseAutoEncoder& dict) {
  std::map<std::string, at::Tensor> out = {
      {"W_E", dict.W_E()}, {"b_E", dict.b_E()}, {"W_D", dict.W_D()}};
  if (dict.b_D().defined()) out["b_D"] = dict.b_D();
  if (dict.W_E_glu().defined()) {
    out["W_E_glu"] = dict.W_E_glu();
    out["b_E_glu"] = dict.b_E_glu();
  }
  if (dict.log_jumprelu_threshold().defined()) {
    out["activation_function.log_jumprelu_threshold"] = dict.log_jumprelu_threshold();
  }
  return out;
}

std::unique_ptr<SparseAutoEncoder> copy_with_config(const SparseAutoEncoder& src,
                                                    SparseDictionaryConfig cfg) {
  auto out = std::make_unique<SparseAutoEncoder>(std::move(cfg));
  const auto tensors = named_parameters(src);
  for (auto& p : out->parameters()) {
    const auto it = tensors.find(p.name);
    if (it == tensors.end()) continue;
    SAES_CHECK(it->second.sizes() == p.value.sizes(), DataError,
               "copying parameter '{}': shape [{}] does not fit [{}]", p.name,
               fmt::join(it->second.sizes(), ", "), fmt::join(p.value.sizes(), ", "));
    p.value.copy_(it->second);
  }
  for (const auto& [hook, norm] : src.dataset_norms()) {
    const auto hooks = out->hook_points();
    if (std::find(hooks.begin(), hooks.end(), hook) != hooks.end())
      out->set_dataset_norm(hook, norm);
  }
  return out;
}

std::unique_ptr<SparseAutoEncoder> cast_dtype(const SparseAutoEncoder& src, DType dtype) {
  SAES_CHECK(dtype_is_floating(dtype), ConfigError, "dtype: expected a floating dtype, got {}",
             dtype_name(dtype));
  SparseDictionaryConfig cfg = src.config();
  cfg.dtype = dtype;
  return copy_with_config(src, std::move(cfg));
}

namespace {

/// Gated, normalized pre-activations of raw `x`, clamped ≥ 0.
at::Tensor gated_pre(const SparseAutoEncoder& dict, const at::Tensor& x) {
  SAES_CHECK(x.defined() && x.dim() == 2 && x.size(0) > 0, DataError,
             "topk_to_jumprelu: expected a non-empty [rows, d_model] batch, got [{}]",
             x.defined() ? fmt::format("{}", fmt::join(x.sizes(), ", ")) : "undefined");
  const at::Tensor h = dict.hidden_pre(dict.normalize(x, dict.input_hook_point()));
  const at::Tensor s = dict.config().sparsity_include_decoder_norm ? h * dict.decoder_norm() : h;
  return at::clamp_min(s, 0);
}

double mean_l0(const at::Tensor& f) {
  return static_cast<double>(at::count_nonzero(f).item<std::int64_t>()) /
         static_cast<double>(f.size(0));
}

}  // namespace

std::unique_ptr<SparseAutoEncoder> topk_to_jumprelu(const SparseAutoEncoder& src,
                                                    const at::Tensor& fit, const at::Tensor& check,
                                                    JumpReluReport* report) {
  const SparseDictionaryConfig& scfg = src.config();
  SAES_CHECK(scfg.act_fn == ActFn::kTopK || scfg.act_fn == ActFn::kBatchTopK, ConfigError,
             "topk_to_jumprelu: the dictionary's act_fn is {}, expected topk or batchtopk",
             dictionaries::kActFnNames[static_cast<std::size_t>(scfg.act_fn)]);
  const at::Tensor s = gated_pre(src, fit).flatten();
  const std::int64_t kb = scfg.top_k * fit.size(0);
  SAES_CHECK(kb <= s.numel(), DataError, "topk_to_jumprelu: k*rows = {} exceeds {} entries", kb,
             s.numel());
  const double theta = std::get<0>(at::topk(s, kb)).min().item<double>();
  SAES_CHECK(theta > 0, DataError,
             "topk_to_jumprelu: the {}-th largest pre-activation is {} (<= 0); use a larger batch "
             "of real activations",
             kb, theta);

  SparseDictionaryConfig cfg = scfg;
  cfg.act_fn = ActFn::kJumpRelu;
  cfg.sparsity_include_decoder_norm = false;
  auto out = copy_with_config(src, cfg);
  const auto opts = at::TensorOptions().dtype(at::kDouble).device(src.device());
  at::Tensor log_theta = at::log(at::full({src.d_sae()}, theta, opts));
  if (scfg.sparsity_include_decoder_norm) {
    // θ/n_i, rescaled into normalized units of the (possibly folded) weights.
    log_theta = log_theta - at::log(src.decoder_norm().to(at::kDouble));
  }
  for (auto& p : out->parameters()) {
    if (p.name == "activation_function.log_jumprelu_threshold") p.value.copy_(log_theta);
  }
  if (report != nullptr) {
    const at::Tensor xc = src.normalize(check, src.input_hook_point());
    const at::Tensor f_topk = src.encode(xc);
    const at::Tensor f_jump = out->encode(xc);
    const at::Tensor diff = out->decode(f_jump) - src.decode(f_topk);
    report->threshold = theta;
    report->l0 = mean_l0(f_jump);
    report->topk_l0 = mean_l0(f_topk);
    report->reconstruction_diff =
        at::sum(diff.to(at::kDouble) * diff.to(at::kDouble)).item<double>() /
        static_cast<double>(xc.size(0));
  }
  return out;
}

}  // namespace saes::convert

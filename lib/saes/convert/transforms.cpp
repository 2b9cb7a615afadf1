// copy_with_config, cast_dtype and TopK → JumpReLU (spec §3.3) for every dictionary variant.
#include "saes/convert/transforms.h"

#include <algorithm>
#include <cmath>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/clamp_min.h>
#include <ATen/ops/count_nonzero.h>
#include <ATen/ops/full.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/log.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/dictionaries/clt.h"
#include "saes/dictionaries/registry.h"

namespace saes::convert {

using dictionaries::ActFn;
using dictionaries::HookActs;
using dictionaries::SparseAutoEncoder;
using dictionaries::SparseDictionary;
using dictionaries::SparseDictionaryConfig;

std::map<std::string, at::Tensor> named_parameters(const SparseDictionary& dict) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : const_cast<SparseDictionary&>(dict).parameters()) out[p.name] = p.value;
  return out;
}

std::unique_ptr<SparseDictionary> copy_with_config(const SparseDictionary& src,
                                                   SparseDictionaryConfig cfg) {
  auto out = dictionaries::make_dictionary(cfg);
  const auto tensors = named_parameters(src);
  for (auto& p : out->parameters()) {
    const auto it = tensors.find(p.name);
    if (it == tensors.end()) continue;
    SAES_CHECK(it->second.sizes() == p.value.sizes(), DataError,
               "copying parameter '{}': shape [{}] does not fit [{}]", p.name,
               fmt::join(it->second.sizes(), ", "), fmt::join(p.value.sizes(), ", "));
    p.value.copy_(it->second);
  }
  const auto hooks = out->hook_points();
  for (const auto& [hook, norm] : src.dataset_norms()) {
    if (std::find(hooks.begin(), hooks.end(), hook) != hooks.end()) {
      out->set_dataset_norm(hook, norm);
    }
  }
  return out;
}

std::unique_ptr<SparseAutoEncoder> copy_with_config(const SparseAutoEncoder& src,
                                                    SparseDictionaryConfig cfg) {
  SAES_ASSERT(cfg.sae_type == dictionaries::SaeType::kSae, "copy_with_config: not an sae config");
  std::unique_ptr<SparseDictionary> out =
      copy_with_config(static_cast<const SparseDictionary&>(src), std::move(cfg));
  return std::unique_ptr<SparseAutoEncoder>(dynamic_cast<SparseAutoEncoder*>(out.release()));
}

std::unique_ptr<SparseDictionary> cast_dtype(const SparseDictionary& src, DType dtype) {
  SAES_CHECK(dtype_is_floating(dtype), ConfigError, "dtype: expected a floating dtype, got {}",
             dtype_name(dtype));
  SparseDictionaryConfig cfg = src.config();
  cfg.dtype = dtype;
  return copy_with_config(src, std::move(cfg));
}

namespace {

/// Gated, normalized pre-activations of the raw input hooks, clamped ≥ 0 (an SAE [rows, S], a
/// CLT [rows, L, S]).
at::Tensor gated_pre(const SparseDictionary& dict, const HookActs& raw) {
  const at::Tensor x = dict.prepare_input(raw);
  SAES_CHECK(x.defined() && x.numel() > 0, DataError,
             "topk_to_jumprelu: expected a non-empty batch of the input hooks, got [{}]",
             x.defined() ? fmt::format("{}", fmt::join(x.sizes(), ", ")) : "undefined");
  const at::Tensor h = dict.hidden_pre(x);
  const at::Tensor s = dict.config().sparsity_include_decoder_norm ? h * dict.decoder_norm() : h;
  return at::clamp_min(s, 0);
}

double mean_l0(const at::Tensor& f) {
  return static_cast<double>(at::count_nonzero(f).item<std::int64_t>()) /
         static_cast<double>(f.size(0));
}

}  // namespace

std::unique_ptr<SparseDictionary> topk_to_jumprelu(const SparseDictionary& src,
                                                   const HookActs& fit, const HookActs& check,
                                                   JumpReluReport* report) {
  const SparseDictionaryConfig& scfg = src.config();
  const ActFn act = scfg.act_fn;
  SAES_CHECK(dictionaries::is_topk_family(act), ConfigError,
             "topk_to_jumprelu: the dictionary's act_fn is {}, expected topk, batchtopk, "
             "layertopk or batchlayertopk",
             dictionaries::kActFnNames[static_cast<std::size_t>(act)]);
  const at::Tensor pre = gated_pre(src, fit);
  const at::Tensor s = pre.flatten();
  const std::int64_t per_row =
      scfg.top_k * (act == ActFn::kTopK || act == ActFn::kBatchTopK ? src.feature_layers() : 1);
  const std::int64_t kb = per_row * pre.size(0);
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
  const at::Tensor n = src.decoder_norm().to(at::kDouble);
  at::Tensor log_theta = at::log(at::full(n.sizes(), theta, n.options()));
  // θ/N per feature, in normalized units of the (possibly folded) weights.
  if (scfg.sparsity_include_decoder_norm) log_theta = log_theta - at::log(n);
  for (auto& p : out->parameters()) {
    if (p.name == "activation_function.log_jumprelu_threshold") p.value.copy_(log_theta);
  }
  if (report != nullptr) {
    const at::Tensor xc = src.prepare_input(check);
    const at::Tensor f_topk = src.encode(xc);
    const at::Tensor f_jump = out->encode(xc);
    const at::Tensor diff = (out->decode(f_jump) - src.decode(f_topk)).to(at::kDouble);
    report->threshold = theta;
    report->kept = kb;
    report->l0 = mean_l0(f_jump);
    report->topk_l0 = mean_l0(f_topk);
    report->reconstruction_diff =
        at::sum(diff * diff).item<double>() / static_cast<double>(xc.size(0));
  }
  return out;
}

std::unique_ptr<SparseDictionary> topk_to_jumprelu(const SparseAutoEncoder& src,
                                                   const at::Tensor& fit, const at::Tensor& check,
                                                   JumpReluReport* report) {
  return topk_to_jumprelu(src, HookActs{{src.config().hook_point_in, fit}},
                          HookActs{{src.config().hook_point_in, check}}, report);
}

std::unique_ptr<SparseAutoEncoder> clt_layer_transcoder(const SparseDictionary& src,
                                                        std::int64_t layer, double* dropped) {
  const auto* clt = dynamic_cast<const dictionaries::CrossLayerTranscoder*>(&src);
  SAES_CHECK(clt != nullptr, ConfigError, "clt_layer: the dictionary is sae_type {}, not clt",
             dictionaries::kSaeTypeNames[static_cast<std::size_t>(src.config().sae_type)]);
  const std::int64_t L = clt->n_layers();
  SAES_CHECK(layer >= 0 && layer < L, ConfigError,
             "clt_layer: expected 0..{} (the dictionary's layers), got {}", L - 1, layer);
  const SparseDictionaryConfig& c = clt->config();
  SAES_CHECK(c.act_fn != ActFn::kLayerTopK && c.act_fn != ActFn::kBatchLayerTopK,
             UnsupportedError,
             "clt_layer: a {} CLT selects across layers, which one layer cannot reproduce; convert "
             "with topk_to_jumprelu first",
             dictionaries::kActFnNames[static_cast<std::size_t>(c.act_fn)]);
  const auto l = static_cast<std::size_t>(layer);
  SparseDictionaryConfig cfg = c;
  cfg.sae_type = dictionaries::SaeType::kSae;
  cfg.hook_point_in = c.hook_points_in[l];
  cfg.hook_point_out = c.hook_points_out[l];
  cfg.hook_points_in.clear();
  cfg.hook_points_out.clear();
  cfg.init_cross_layer_decoder_all_zero = false;
  cfg.decode_with_csr = false;
  cfg.sparsity_include_decoder_norm = false;
  auto out = std::make_unique<SparseAutoEncoder>(cfg);

  at::Tensor W_E = clt->W_E()[layer].clone(), b_E = clt->b_E()[layer].clone();
  at::Tensor W_D = clt->W_D(layer)[layer].clone();
  if (c.sparsity_include_decoder_norm) {  // f' = f·N: ungated selection on h·N, same entries
    const at::Tensor n = clt->decoder_norm()[layer];
    W_E.mul_(n.unsqueeze(0));
    b_E.mul_(n);
    W_D.mul_(at::where(at::gt(n, 0), 1.0 / n, at::zeros_like(n)).unsqueeze(1));
  }
  for (auto& p : out->parameters()) {
    if (p.name == "W_E") p.value.copy_(W_E);
    if (p.name == "b_E") p.value.copy_(b_E);
    if (p.name == "W_D") p.value.copy_(W_D);
    if (p.name == "b_D") p.value.copy_(clt->b_D(layer));
    if (p.name == "activation_function.log_jumprelu_threshold") {
      p.value.copy_(clt->log_jumprelu_threshold()[layer]);
    }
  }
  for (const auto& hook : {cfg.hook_point_in, cfg.hook_point_out}) {
    if (const auto norm = src.dataset_norm(hook)) out->set_dataset_norm(hook, *norm);
  }
  if (dropped != nullptr) {
    double same = 0, later = 0;
    for (std::int64_t t = layer; t < L; ++t) {
      const at::Tensor block = clt->W_D(t)[layer].to(at::kDouble);
      (t == layer ? same : later) += at::sum(block * block).item<double>();
    }
    *dropped = same + later > 0 ? later / (same + later) : 0.0;
  }
  return out;
}

}  // namespace saes::convert

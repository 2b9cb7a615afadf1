// CrossLayerTranscoder: parameters, layouts, encode/decode, the activation selections of the
// layer variants, init and the exact fold (spec §2.4, §3.3, §4). The training step: clt_step.cpp.
#include "saes/dictionaries/clt.h"

#include <cmath>
#include <set>

#include <ATen/TensorOperators.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/baddbmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/feature_parallel.h"

namespace saes::dictionaries {
namespace {

std::string layer_name(const char* base, std::int64_t t) { return fmt::format("{}.{}", base, t); }

void validate(const SparseDictionaryConfig& cfg) {
  SAES_CHECK(cfg.sae_type == SaeType::kClt, ConfigError,
             "sae.sae_type: CrossLayerTranscoder needs clt, got {}",
             kSaeTypeNames[static_cast<std::size_t>(cfg.sae_type)]);
  const std::size_t L = cfg.hook_points_in.size();
  SAES_CHECK(L >= 1, ConfigError, "sae.hook_points_in: a clt needs at least one layer");
  SAES_CHECK(cfg.hook_points_out.size() == L, ConfigError,
             "sae.hook_points_out: expected {} hooks (one per hook_points_in entry), got {}", L,
             cfg.hook_points_out.size());
  SAES_CHECK(cfg.hook_point_in.empty() && cfg.hook_point_out.empty(), ConfigError,
             "sae.hook_point_in/hook_point_out: a clt reads hook_points_in and hook_points_out; "
             "remove the single-hook keys");
  for (const auto* list : {&cfg.hook_points_in, &cfg.hook_points_out}) {
    const std::set<std::string> unique(list->begin(), list->end());
    SAES_CHECK(unique.size() == list->size() && !unique.count(""), ConfigError,
               "sae.{}: hooks must be set and distinct, got [{}]",
               list == &cfg.hook_points_in ? "hook_points_in" : "hook_points_out",
               fmt::join(*list, ", "));
  }
  const std::int64_t max_k = cfg.act_fn == ActFn::kLayerTopK || cfg.act_fn == ActFn::kBatchLayerTopK
                                 ? cfg.d_sae() * static_cast<std::int64_t>(L)
                                 : cfg.d_sae();
  SAES_CHECK(!is_topk_family(cfg.act_fn) || (cfg.top_k >= 1 && cfg.top_k <= max_k), ConfigError,
             "sae.top_k: expected 1..{} for {}, got {}", max_k,
             kActFnNames[static_cast<std::size_t>(cfg.act_fn)], cfg.top_k);
  SAES_CHECK(cfg.jumprelu_threshold_window > 0, ConfigError,
             "sae.jumprelu_threshold_window: expected > 0, got {}", cfg.jumprelu_threshold_window);
  SAES_CHECK(!cfg.use_glu_encoder, ConfigError, "sae.use_glu_encoder: not defined for a clt");
  SAES_CHECK(!cfg.decode_with_csr || cfg.sparse_kernels != SparseKernels::kOff, ConfigError,
             "sae.decode_with_csr: true contradicts sae.sparse_kernels: off (set one of them)");
  SAES_CHECK(cfg.sparsity_threshold_for_csr > 0 && cfg.sparsity_threshold_for_csr <= 1, ConfigError,
             "sae.sparsity_threshold_for_csr: expected in (0, 1], got {}",
             cfg.sparsity_threshold_for_csr);
}

}  // namespace

CrossLayerTranscoder::CrossLayerTranscoder(SparseDictionaryConfig cfg, FeatureShard shard)
    : SparseDictionary(std::move(cfg), shard) {
  validate(cfg_);
  const auto opts = at::TensorOptions().dtype(dtype()).device(device());
  const std::int64_t L = n_layers(), d = cfg_.d_model, S = local_d_sae();
  auto pair = [&](at::Tensor& p, at::Tensor& g, at::IntArrayRef shape) {
    p = at::zeros(shape, opts);
    g = at::zeros(shape, opts);
  };
  pair(W_E_, gW_E_, {L, d, S});
  pair(b_E_, gb_E_, {L, S});
  W_D_.resize(L);
  gW_D_.resize(L);
  b_D_.resize(L);
  gb_D_.resize(L);
  for (std::int64_t t = 0; t < L; ++t) {
    pair(W_D_[t], gW_D_[t], {t + 1, S, d});
    if (cfg_.use_decoder_bias) pair(b_D_[t], gb_D_[t], {d});
  }
  if (cfg_.act_fn == ActFn::kJumpRelu) pair(log_threshold_, glog_threshold_, {L, S});
}

std::vector<ParameterRef> CrossLayerTranscoder::parameters() {
  const auto others = ParamGroup::kOthers;
  std::vector<ParameterRef> out = {{"W_E", W_E_, gW_E_, others, true, 2},
                                   {"b_E", b_E_, gb_E_, others, true, 1}};
  for (std::int64_t t = 0; t < n_layers(); ++t) {
    out.push_back({layer_name("W_D", t), W_D_[t], gW_D_[t], others, true, 1});
  }
  for (std::int64_t t = 0; t < n_layers() && cfg_.use_decoder_bias; ++t) {
    out.push_back({layer_name("b_D", t), b_D_[t], gb_D_[t], others, true, -1});
  }
  if (log_threshold_.defined()) {
    out.push_back({"activation_function.log_jumprelu_threshold", log_threshold_, glog_threshold_,
                   ParamGroup::kJumpRelu, false, 1});
  }
  return out;
}

at::Tensor CrossLayerTranscoder::prepare_input(const HookActs& raw) const {
  std::vector<at::Tensor> layers;
  for (const auto& hook : cfg_.hook_points_in)
    layers.push_back(normalize(hook_rows(raw, hook), hook));
  return at::stack(layers, 1);
}

at::Tensor CrossLayerTranscoder::prepare_label(const HookActs& raw) const {
  std::vector<at::Tensor> layers;
  for (const auto& hook : cfg_.hook_points_out) {
    layers.push_back(normalize(hook_rows(raw, hook), hook));
  }
  return at::stack(layers, 0);
}

void CrossLayerTranscoder::check_input(const at::Tensor& x, const char* what) const {
  SAES_CHECK(x.defined() && x.dim() == 3 && x.size(1) == n_layers() && x.size(2) == cfg_.d_model,
             DataError, "{} has shape [{}], expected [n_tokens, L={}, d_model={}]", what,
             x.defined() ? fmt::format("{}", fmt::join(x.sizes(), ", ")) : "undefined", n_layers(),
             cfg_.d_model);
}

std::int64_t CrossLayerTranscoder::resolve_k(std::int64_t k) const {
  return k > 0 ? k : cfg_.top_k;
}

at::Tensor CrossLayerTranscoder::hidden_pre_layers(const at::Tensor& x) const {
  check_input(x, "x");
  // [L, N, d] × [L, d, S] + b_E[l] → [L, N, S]
  return at::baddbmm(b_E_.unsqueeze(1), x.to(W_E_.options()).transpose(0, 1), W_E_);
}

at::Tensor CrossLayerTranscoder::hidden_pre(const at::Tensor& x) const {
  return hidden_pre_layers(x).permute({1, 0, 2}).contiguous();
}

at::Tensor CrossLayerTranscoder::decoder_norm() const {
  at::Tensor sq = at::zeros({n_layers(), local_d_sae()}, W_E_.options());
  for (std::int64_t t = 0; t < n_layers(); ++t) {
    sq.narrow(0, 0, t + 1).add_(at::sum(W_D_[t] * W_D_[t], {2}));
  }
  return at::sqrt(sq);
}

at::Tensor CrossLayerTranscoder::feature_directions() const {
  at::Tensor sum = at::zeros({n_layers(), local_d_sae(), cfg_.d_model}, W_E_.options());
  for (std::int64_t t = 0; t < n_layers(); ++t) sum.narrow(0, 0, t + 1).add_(W_D_[t]);
  return sum.view({n_layers() * local_d_sae(), cfg_.d_model});
}

std::vector<at::Tensor> CrossLayerTranscoder::dla_terms(std::int64_t layer) const {
  SAES_CHECK(layer >= 0 && layer < n_layers(), ConfigError, "dla_terms: layer {} of {}", layer,
             n_layers());
  std::vector<at::Tensor> out;
  for (std::int64_t t = layer; t < n_layers(); ++t) out.push_back(W_D_[t][layer]);
  return out;
}

at::Tensor CrossLayerTranscoder::encoder_vectors(std::int64_t layer,
                                                 const at::Tensor& indices) const {
  SAES_CHECK(layer >= 0 && layer < n_layers(), ConfigError, "encoder_vectors: layer {} of {}",
             layer, n_layers());
  return W_E_[layer].index_select(1, indices.to(W_E_.device())).t();
}

at::Tensor CrossLayerTranscoder::decoder_vectors(std::int64_t layer, std::int64_t target,
                                                 const at::Tensor& indices) const {
  SAES_CHECK(layer >= 0 && layer < n_layers() && target >= 0 && target < n_layers(), ConfigError,
             "decoder_vectors: layers {} → {} of {}", layer, target, n_layers());
  if (target < layer) return at::zeros({indices.numel(), cfg_.d_model}, W_E_.options());
  return W_D_[static_cast<std::size_t>(target)][layer].index_select(0, indices.to(W_E_.device()));
}

at::Tensor CrossLayerTranscoder::target_decoder_norms() const {
  const std::int64_t L = n_layers(), S = local_d_sae();
  at::Tensor out = at::zeros({L, S, L}, W_E_.options());
  for (std::int64_t t = 0; t < L; ++t) {
    out.narrow(0, 0, t + 1).select(2, t).copy_(at::linalg_vector_norm(W_D_[t], 2, {2}));
  }
  return out.view({L * S, L});
}

at::Tensor CrossLayerTranscoder::activation_mask(const at::Tensor& s, std::int64_t k) const {
  const std::int64_t N = s.size(0), L = s.size(1), S = s.size(2);
  if (shard_.sharded() && is_topk_family(cfg_.act_fn)) return sharded_mask(s, k);
  switch (cfg_.act_fn) {
    case ActFn::kRelu:
      return at::gt(s, 0);
    case ActFn::kJumpRelu:
      return at::gt(s, at::exp(log_threshold_).to(s.scalar_type()));
    case ActFn::kTopK:  // k per token per layer
      return dictionaries::activation_mask(ActFn::kTopK, s.reshape({N * L, S}), {}, k)
          .view({N, L, S});
    case ActFn::kLayerTopK:  // k per token over all layers jointly
      return dictionaries::activation_mask(ActFn::kTopK, s.reshape({N, L * S}), {}, k)
          .view({N, L, S});
    case ActFn::kBatchTopK: {  // per layer, k·N over (tokens, features)
      std::vector<at::Tensor> masks;
      for (std::int64_t l = 0; l < L; ++l) masks.push_back(batch_top_k_mask(s.select(1, l), k * N));
      return at::stack(masks, 1);
    }
    case ActFn::kBatchLayerTopK:  // k·N over (tokens, layers, features)
      return batch_top_k_mask(s, k * N);
  }
  SAES_ASSERT(false, "unknown act_fn");
  return {};
}

void CrossLayerTranscoder::add_decoder_biases(at::Tensor& out) const {
  sum_over_features(out);
  for (std::int64_t t = 0; t < n_layers(); ++t) {
    if (b_D_[t].defined()) out[t].add_(b_D_[t]);
  }
}

at::Tensor CrossLayerTranscoder::sharded_mask(const at::Tensor& s, std::int64_t k) const {
  // The selections over this rank's columns of the whole dictionary's rows (feature_parallel.h):
  // rows (token, layer) for topk, tokens over all layers' features for the layer variants.
  const std::int64_t N = s.size(0), L = s.size(1), S = s.size(2);
  distributed::Communicator& group = *shard_.group;
  const at::Tensor sc = s.contiguous();
  switch (cfg_.act_fn) {
    case ActFn::kTopK:
      return sharded_activation_mask(ActFn::kTopK, sc.view({N * L, S}), k, group).view({N, L, S});
    case ActFn::kLayerTopK:
      return sharded_activation_mask(ActFn::kTopK, sc.view({N, L * S}), k, group).view({N, L, S});
    case ActFn::kBatchLayerTopK:
      return sharded_activation_mask(ActFn::kBatchTopK, sc.view({N, L * S}), k, group)
          .view({N, L, S});
    case ActFn::kBatchTopK: {
      std::vector<at::Tensor> masks;
      for (std::int64_t l = 0; l < L; ++l) {
        masks.push_back(sharded_activation_mask(ActFn::kBatchTopK, sc.select(1, l), k, group));
      }
      return at::stack(masks, 1);
    }
    default:
      break;
  }
  SAES_ASSERT(false, "not a TopK-family act_fn");
  return {};
}

at::Tensor CrossLayerTranscoder::encode(const at::Tensor& x, std::int64_t k) const {
  const at::Tensor h = hidden_pre(x);
  const at::Tensor s = cfg_.sparsity_include_decoder_norm ? h * decoder_norm() : h;
  return h * activation_mask(s, resolve_k(k));
}

at::Tensor CrossLayerTranscoder::decode(const at::Tensor& f) const {
  SAES_CHECK(f.dim() == 3 && f.size(1) == n_layers() && f.size(2) == local_d_sae(), DataError,
             "feature acts have shape [{}], expected [n_tokens, L={}, d_sae={}]",
             fmt::join(f.sizes(), ", "), n_layers(), local_d_sae());
  const std::int64_t N = f.size(0), S = local_d_sae(), d = cfg_.d_model;
  const at::Tensor fc = f.to(W_E_.options()).contiguous();
  if (decodes_sparsely(fc)) return decode_sparse(sparse_from_dense(fc.view({N, n_layers() * S})));
  at::Tensor out = at::empty({n_layers(), N, d}, W_E_.options());
  const bool sharded = shard_.sharded();  // partial sums over this rank's features, then reduced
  for (std::int64_t t = 0; t < n_layers(); ++t) {
    // [N, (t+1)·S] (a view with row stride L·S) × [(t+1)·S, d]
    const at::Tensor a = fc.narrow(1, 0, t + 1).reshape({N, (t + 1) * S});
    const at::Tensor w = W_D_[t].view({(t + 1) * S, d});
    at::Tensor target = out[t];
    if (b_D_[t].defined() && !sharded) {
      at::addmm_out(target, b_D_[t], a, w);
    } else {
      at::mm_out(target, a, w);
    }
  }
  if (sharded) add_decoder_biases(out);
  return out;
}

void CrossLayerTranscoder::init_parameters(const RandomInit& init, at::Generator& gen) {
  const double enc = 1.0 / std::sqrt(static_cast<double>(d_sae()));
  const double dec = 1.0 / std::sqrt(static_cast<double>(n_layers() * cfg_.d_model));
  fill_uniform(W_E_, 2, enc, gen);
  for (std::int64_t t = 0; t < n_layers(); ++t) {
    fill_uniform(W_D_[t], 1, dec, gen);
    if (cfg_.init_cross_layer_decoder_all_zero && t > 0) W_D_[t].narrow(0, 0, t).zero_();
    if (b_D_[t].defined()) b_D_[t].zero_();
  }
  b_E_.zero_();
  fill_log_threshold(log_threshold_, init);
}

void CrossLayerTranscoder::init_decoder_bias_with_mean(const at::Tensor& label) {
  SAES_CHECK(cfg_.use_decoder_bias, ConfigError,
             "initializer.bias_init_method geometric_median needs sae.use_decoder_bias true");
  SAES_CHECK(label.dim() == 3 && label.size(0) == n_layers() && label.size(2) == cfg_.d_model,
             DataError, "label has shape [{}], expected [L={}, n_tokens, d_model={}]",
             fmt::join(label.sizes(), ", "), n_layers(), cfg_.d_model);
  const at::Tensor mean = at::mean(label.to(W_E_.options()), {1});
  for (std::int64_t t = 0; t < n_layers(); ++t) b_D_[t].copy_(mean[t]);
}

void CrossLayerTranscoder::init_encoder_bias_with_mean_hidden_pre(const at::Tensor& x) {
  b_E_.sub_(at::mean(hidden_pre_layers(x), {1}));
}

void CrossLayerTranscoder::rescale_for_fold(bool fold) {
  const std::int64_t L = n_layers();
  std::vector<double> f_in(L), f_out(L);
  for (std::int64_t l = 0; l < L; ++l) {
    f_in[l] = dataset_scale(cfg_.hook_points_in[l]);
    f_out[l] = dataset_scale(cfg_.hook_points_out[l]);
  }
  if (fold && cfg_.sparsity_include_decoder_norm) {
    // f' = f·N: the gated selection on h·N becomes the plain selection on h' = h·N, with the
    // same entries for every act_fn (θ compares with h·N already). Features with N = 0 decode
    // nothing; their encoder columns are zeroed so that they never fire.
    const at::Tensor n = decoder_norm();
    const at::Tensor inv = at::where(at::gt(n, 0), 1.0 / n, at::zeros_like(n));
    W_E_.mul_(n.unsqueeze(1));
    b_E_.mul_(n);
    for (std::int64_t t = 0; t < L; ++t) W_D_[t].mul_(inv.narrow(0, 0, t + 1).unsqueeze(2));
    cfg_.sparsity_include_decoder_norm = false;
  }
  const double a = fold ? 1.0 : -1.0;
  for (std::int64_t l = 0; l < L; ++l) W_E_[l].mul_(std::pow(f_in[l], a));
  for (std::int64_t t = 0; t < L; ++t) {
    W_D_[t].mul_(std::pow(f_out[t], -a));
    if (b_D_[t].defined()) b_D_[t].mul_(std::pow(f_out[t], -a));
  }
}

}  // namespace saes::dictionaries

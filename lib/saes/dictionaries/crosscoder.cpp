// CrossCoder: parameters, layouts, encode/decode, decoder geometry, init and the exact fold
// (spec §2.3, §2.1). The training step is in crosscoder_step.cpp.
#include "saes/dictionaries/crosscoder.h"

#include <cmath>
#include <set>

#include <ATen/TensorOperators.h>
#include <ATen/core/Generator.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/clamp_min.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/feature_parallel.h"
#include "saes/distributed/communicator.h"

namespace saes::dictionaries {

CrossCoder::CrossCoder(SparseDictionaryConfig cfg, FeatureShard shard)
    : SparseDictionary(std::move(cfg), shard) {
  SAES_CHECK(cfg_.sae_type == SaeType::kCrosscoder, ConfigError,
             "sae.sae_type: CrossCoder needs crosscoder, got {}",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
  SAES_CHECK(!cfg_.hook_points.empty(), ConfigError,
             "sae.hook_points: a crosscoder needs its hook points (one per head)");
  SAES_CHECK(std::set<std::string>(cfg_.hook_points.begin(), cfg_.hook_points.end()).size() ==
                 cfg_.hook_points.size(),
             ConfigError, "sae.hook_points: lists a hook point twice");
  SAES_CHECK(cfg_.sparsity_include_decoder_norm, ConfigError,
             "sae.sparsity_include_decoder_norm: a crosscoder gates each head by its decoder "
             "norms (mandatory, spec §2.3): set it to true");
  SAES_CHECK(cfg_.use_decoder_bias, ConfigError,
             "sae.use_decoder_bias: a crosscoder needs its per-head decoder bias: set it to true");
  SAES_CHECK(cfg_.act_fn != ActFn::kLayerTopK && cfg_.act_fn != ActFn::kBatchLayerTopK, ConfigError,
             "sae.act_fn: {} is only valid for sae_type clt",
             kActFnNames[static_cast<std::size_t>(cfg_.act_fn)]);
  SAES_CHECK(!is_topk_family(cfg_.act_fn) || (cfg_.top_k >= 1 && cfg_.top_k <= d_sae()),
             ConfigError, "sae.top_k: expected 1..d_sae={}, got {}", d_sae(), cfg_.top_k);
  SAES_CHECK(cfg_.jumprelu_threshold_window > 0, ConfigError,
             "sae.jumprelu_threshold_window: expected > 0, got {}", cfg_.jumprelu_threshold_window);
  SAES_CHECK(!cfg_.use_glu_encoder, ConfigError,
             "sae.use_glu_encoder: not supported for sae_type crosscoder");
  SAES_CHECK(n_heads() % shard_.head_size() == 0, ConfigError,
             "head_parallel_size {} must divide the {} sae.hook_points (each head rank holds "
             "H / head_parallel_size heads)",
             shard_.head_size(), n_heads());
  const auto opts = at::TensorOptions().dtype(dtype()).device(device());
  const std::int64_t H = n_local_heads(), d = cfg_.d_model, s = local_d_sae();
  auto pair = [&](at::Tensor& p, at::Tensor& g, at::IntArrayRef shape) {
    p = at::zeros(shape, opts);
    g = at::zeros(shape, opts);
  };
  pair(W_E_, gW_E_, {H, d, s});
  pair(b_E_, gb_E_, {H, s});
  pair(W_D_, gW_D_, {H, s, d});
  pair(b_D_, gb_D_, {H, d});
  if (cfg_.act_fn == ActFn::kJumpRelu) pair(log_threshold_, glog_threshold_, {s});
}

std::vector<ParameterRef> CrossCoder::parameters() {
  const auto others = ParamGroup::kOthers;
  std::vector<ParameterRef> out = {{"W_E", W_E_, gW_E_, others, true, 2, 0},
                                   {"b_E", b_E_, gb_E_, others, true, 1, 0},
                                   {"W_D", W_D_, gW_D_, others, true, 1, 0},
                                   {"b_D", b_D_, gb_D_, others, true, -1, 0}};
  if (log_threshold_.defined()) {
    out.push_back({"activation_function.log_jumprelu_threshold", log_threshold_, glog_threshold_,
                   ParamGroup::kJumpRelu, false, 0});
  }
  return out;
}

std::int64_t CrossCoder::resolve_k(std::int64_t k) const {
  const std::int64_t out = k > 0 ? k : cfg_.top_k;
  SAES_CHECK(out <= d_sae(), ConfigError, "current k {} exceeds d_sae {}", out, d_sae());
  return out;
}

std::vector<std::string> CrossCoder::local_hook_points() const {
  const auto first = cfg_.hook_points.begin() + head_offset();
  return {first, first + n_local_heads()};
}

void CrossCoder::check_input(const at::Tensor& x) const {
  SAES_CHECK(
      x.defined() && x.dim() == 3 && x.size(1) == n_local_heads() && x.size(2) == cfg_.d_model,
      DataError, "crosscoder input has shape [{}], expected [n_tokens, H={}, d_model={}]",
      x.defined() ? fmt::format("{}", fmt::join(x.sizes(), ", ")) : "undefined", n_local_heads(),
      cfg_.d_model);
}

void CrossCoder::check_whole_heads(const char* what) const {
  SAES_CHECK(!shard_.heads_sharded(), UnsupportedError,
             "crosscoder {}: needs every head on this rank (analysis runs with "
             "head_parallel_size 1; checkpoints hold all heads)",
             what);
}

void CrossCoder::sum_over_heads(at::Tensor& t) const {
  if (shard_.heads_sharded()) shard_.head_group->all_reduce(t, distributed::ReduceOp::kSum);
}

std::vector<double> CrossCoder::reduce_step_terms(double l_rec, const std::vector<double>& terms,
                                                  double fired) const {
  std::vector<double> v = {l_rec};
  v.insert(v.end(), terms.begin(), terms.end());
  v.push_back(fired);
  if (!shard_.sharded() && !shard_.heads_sharded()) return v;
  at::Tensor t = at::tensor(v, at::kDouble);
  const std::int64_t n = t.numel();
  if (shard_.sharded()) {
    at::Tensor features = t.narrow(0, 1, n - 1);
    shard_.group->all_reduce(features, distributed::ReduceOp::kSum);
  }
  if (shard_.heads_sharded()) {
    at::Tensor heads = t.narrow(0, 0, n - 1);
    shard_.head_group->all_reduce(heads, distributed::ReduceOp::kSum);
  }
  return {t.data_ptr<double>(), t.data_ptr<double>() + n};
}

std::map<std::string, double> CrossCoder::head_metrics(const at::Tensor& l_rec,
                                                       const at::Tensor& l0) const {
  at::Tensor local = at::stack({l_rec.to(at::kDouble), l0.to(at::kDouble)}, 1).cpu();  // [Hl, 2]
  at::Tensor l0_col = local.select(1, 1).contiguous();
  sum_over_features(l0_col);
  local.select(1, 1).copy_(l0_col);
  const at::Tensor all = gather_heads(local.contiguous(), 0);  // [H, 2]
  std::map<std::string, double> out;
  for (std::int64_t h = 0; h < n_heads(); ++h) {
    const std::string prefix =
        "crosscoder_metrics/" + cfg_.hook_points[static_cast<std::size_t>(h)];
    out[prefix + "/l_rec"] = all[h][0].item<double>();
    out[prefix + "/l0"] = all[h][1].item<double>();
  }
  return out;
}

at::Tensor CrossCoder::prepare_input(const HookActs& raw) const {
  std::vector<at::Tensor> heads;
  for (const auto& hook : local_hook_points()) {
    const at::Tensor rows = hook_rows(raw, hook);
    SAES_CHECK(rows.size(-1) == cfg_.d_model, DataError,
               "hook {} has width {}, the crosscoder's d_model is {}", hook, rows.size(-1),
               cfg_.d_model);
    heads.push_back(normalize(rows, hook));
  }
  return at::stack(heads, 1);
}

at::Tensor CrossCoder::prepare_label(const HookActs& raw) const {
  return prepare_input(raw).transpose(0, 1).contiguous();
}

at::Tensor CrossCoder::hidden_pre(const at::Tensor& x) const {
  check_input(x);
  // Σ_h x_h W_E[h] as one batched product over the heads, then the biases
  const at::Tensor xh = x.to(W_E_.options()).transpose(0, 1);  // [H, N, d]
  at::Tensor a = at::sum(at::bmm(xh, W_E_), {0}).add_(at::sum(b_E_, {0}));
  sum_over_heads(a);  // head parallelism: the other ranks' heads' partial sums
  return a;
}

at::Tensor CrossCoder::select(const at::Tensor& s, std::int64_t k) const {
  if (shard_.sharded() && is_topk_family(cfg_.act_fn)) {
    return sharded_activation_mask(cfg_.act_fn, s, k, *shard_.group);
  }
  return activation_mask(cfg_.act_fn, s, log_threshold_, k);
}

at::Tensor CrossCoder::encode(const at::Tensor& x, std::int64_t k) const {
  const at::NoGradGuard no_grad;
  const at::Tensor a = hidden_pre(x);
  const at::Tensor n = decoder_norm();
  const std::int64_t kk = is_topk_family(cfg_.act_fn) ? resolve_k(k) : 0;
  std::vector<at::Tensor> heads;
  for (std::int64_t h = 0; h < n_local_heads(); ++h) {
    heads.push_back(cfg_.act_fn == ActFn::kRelu ? at::relu(a) : a * select(a * n[h], kk));
  }
  return at::stack(heads, 1);
}

at::Tensor CrossCoder::decode(const at::Tensor& f) const {
  const at::NoGradGuard no_grad;
  SAES_CHECK(f.dim() == 3 && f.size(1) == n_local_heads() && f.size(2) == local_d_sae(), DataError,
             "crosscoder features have shape [{}], expected [n_tokens, H={}, {}]",
             fmt::join(f.sizes(), ", "), n_local_heads(), local_d_sae());
  at::Tensor out = at::bmm(f.to(W_D_.options()).transpose(0, 1), W_D_);  // [H, N, d]
  sum_over_features(out);
  return out.add_(b_D_.unsqueeze(1));
}

at::Tensor CrossCoder::analysis_features(const at::Tensor& f) const {
  at::Tensor out = at::amax(f, {1});
  if (shard_.heads_sharded()) shard_.head_group->all_reduce(out, distributed::ReduceOp::kMax);
  return out;
}

at::Tensor CrossCoder::decoder_norm() const { return at::linalg_vector_norm(W_D_, 2, {2}, false); }

at::Tensor CrossCoder::feature_directions() const {
  check_whole_heads("feature directions");
  return W_D_[n_heads() - 1];
}

at::Tensor CrossCoder::target_decoder_norms() const {
  return gather_heads(decoder_norm().t().contiguous(), 1);
}

at::Tensor CrossCoder::decoder_inner_products() const {
  check_whole_heads("decoder inner products");
  const at::Tensor per_feature = W_D_.transpose(0, 1);  // [S, H, d]
  // a GEMM kernel need not give G[a][b] and G[b][a] the same rounding; the mean of the two is
  // exactly symmetric (IEEE addition commutes), so the stored matrices are too
  const at::Tensor g = at::bmm(per_feature, per_feature.transpose(1, 2));
  return (g + g.transpose(1, 2)) * 0.5;
}

at::Tensor CrossCoder::decoder_similarities() const {
  const at::Tensor n = at::clamp_min(decoder_norm().t(), 1e-12);  // [S, H]
  return decoder_inner_products() / (n.unsqueeze(2) * n.unsqueeze(1));
}

DecoderHeadSimilarities CrossCoder::decoder_head_similarities() const {
  return {decoder_inner_products(), decoder_similarities()};
}

void CrossCoder::init_parameters(const RandomInit& init, at::Generator& gen) {
  // one draw per tensor, repeated on every head (spec §2.3: all heads start identical)
  const at::Tensor we = at::empty({cfg_.d_model, local_d_sae()}, W_E_.options());
  const at::Tensor wd = at::empty({local_d_sae(), cfg_.d_model}, W_D_.options());
  fill_uniform(we, 1, init.encoder_uniform_bound, gen);
  fill_uniform(wd, 0, init.decoder_uniform_bound, gen);
  W_E_.copy_(we.unsqueeze(0).expand_as(W_E_));
  W_D_.copy_(wd.unsqueeze(0).expand_as(W_D_));
  b_E_.zero_();
  b_D_.zero_();
  fill_log_threshold(log_threshold_, init);
}

void CrossCoder::init_encoder_with_decoder_transpose(double factor) {
  W_E_.copy_(W_D_.transpose(1, 2) * factor);
}

void CrossCoder::set_decoder_to_fixed_norm(double value, bool exact) {
  const at::Tensor n = decoder_norm();
  const at::Tensor scale =
      exact ? value / n : at::where(at::gt(n, value), value / n, at::ones_like(n));
  W_D_.mul_(scale.unsqueeze(2));
}

void CrossCoder::init_decoder_bias_with_mean(const at::Tensor& label_normalized) {
  SAES_CHECK(label_normalized.dim() == 3 && label_normalized.size(0) == n_local_heads(), DataError,
             "crosscoder label must be [H={}, n_tokens, d_model]", n_local_heads());
  b_D_.copy_(at::mean(label_normalized.to(b_D_.options()), {1}));
}

void CrossCoder::init_encoder_bias_with_mean_hidden_pre(const at::Tensor& x_normalized) {
  const at::Tensor mean_a = at::mean(hidden_pre(x_normalized), {0});
  b_E_.sub_(mean_a.unsqueeze(0) / static_cast<double>(n_heads()));
}

double CrossCoder::reconstruction_loss(const at::Tensor& x, const at::Tensor& label,
                                       std::int64_t k) const {
  const at::Tensor r = decode(encode(x, k)) - label;  // [H_local, N, d]
  at::Tensor sum = at::sum(r * r).to(at::kDouble);
  sum_over_heads(sum);
  return sum.item<double>() / static_cast<double>(n_heads() * r.size(1));
}

void CrossCoder::rescale_for_fold(bool fold) {
  std::vector<double> f;  // this rank's heads (every head's for the JumpReLU check)
  for (const auto& hook : cfg_.hook_points) f.push_back(dataset_scale(hook));
  if (log_threshold_.defined()) {
    for (double v : f) {
      SAES_CHECK(std::abs(v - f.front()) <= 1e-12 * std::abs(f.front()), UnsupportedError,
                 "fold: a JumpReLU crosscoder shares its thresholds over the heads, so its fold "
                 "needs one dataset norm for every hook point (they differ: {})",
                 fmt::join(f, ", "));
    }
    log_threshold_.sub_((fold ? 1.0 : -1.0) * std::log(f.front()));
  }
  for (std::int64_t h = 0; h < n_local_heads(); ++h) {
    const double fh = f[static_cast<std::size_t>(head_offset() + h)];
    const double s = fold ? fh : 1.0 / fh;
    W_E_[h].mul_(s);
    W_D_[h].div_(s);
    b_D_[h].div_(s);
  }
}

}  // namespace saes::dictionaries

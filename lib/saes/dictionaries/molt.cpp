// MixtureOfLinearTransforms: parameters, encode/reconstruct, norms, init and the exact fold
// (spec §2.5, §2.1). The training step is in molt_step.cpp.
#include "saes/dictionaries/molt.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <ATen/TensorOperators.h>
#include <ATen/core/Generator.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/clamp_min.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/feature_parallel.h"

namespace saes::dictionaries {
namespace {

std::int64_t parse_rank(const std::string& key) {
  std::int64_t r = 0;
  const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), r);
  SAES_CHECK(ec == std::errc() && end == key.data() + key.size() && r >= 1, ConfigError,
             "sae.rank_counts: key \"{}\" is not a positive integer rank", key);
  return r;
}

}  // namespace

MixtureOfLinearTransforms::MixtureOfLinearTransforms(SparseDictionaryConfig cfg, FeatureShard shard)
    : SparseDictionary(std::move(cfg), shard) {
  SAES_CHECK(cfg_.sae_type == SaeType::kMolt, ConfigError,
             "sae.sae_type: MixtureOfLinearTransforms needs molt, got {}",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
  SAES_CHECK(!cfg_.rank_counts.empty(), ConfigError,
             "sae.rank_counts: required for sae_type molt, e.g. {{1: 512, 4: 128}}");
  const std::int64_t M = shard_.sharded() ? shard_.size() : 1;
  for (const auto& [key, count] : cfg_.rank_counts) {
    const std::int64_t r = parse_rank(key);
    SAES_CHECK(count >= 1, ConfigError, "sae.rank_counts.{}: expected a positive count, got {}",
               key, count);
    SAES_CHECK(count % M == 0, ConfigError,
               "sae.rank_counts.{}: {} transforms do not split over model_parallel_size {}", key,
               count, M);
    SAES_CHECK(r <= cfg_.d_model, ConfigError, "sae.rank_counts: rank {} exceeds d_model {}", r,
               cfg_.d_model);
    groups_.push_back({r, count, count / M, 0});
  }
  std::sort(groups_.begin(), groups_.end(),
            [](const Group& a, const Group& b) { return a.rank < b.rank; });
  for (std::size_t g = 1; g < groups_.size(); ++g) {
    SAES_CHECK(groups_[g].rank != groups_[g - 1].rank, ConfigError,
               "sae.rank_counts: rank {} is listed twice", groups_[g].rank);
    groups_[g].local_offset = groups_[g - 1].local_offset + groups_[g - 1].local_count;
  }
  const double ratio = static_cast<double>(d_sae()) / static_cast<double>(cfg_.d_model);
  SAES_CHECK(std::abs(cfg_.expansion_factor - ratio) <= 0.1, ConfigError,
             "sae.expansion_factor: {} is not within 0.1 of d_sae / d_model = {} / {} = {:.4g} "
             "(Σ rank_counts)",
             cfg_.expansion_factor, d_sae(), cfg_.d_model, ratio);
  SAES_CHECK(cfg_.act_fn != ActFn::kLayerTopK && cfg_.act_fn != ActFn::kBatchLayerTopK,
             ConfigError, "sae.act_fn: {} is only valid for sae_type clt",
             kActFnNames[static_cast<std::size_t>(cfg_.act_fn)]);
  SAES_CHECK(!is_topk_family(cfg_.act_fn) || (cfg_.top_k >= 1 && cfg_.top_k <= d_sae()),
             ConfigError, "sae.top_k: expected 1..d_sae={}, got {}", d_sae(), cfg_.top_k);
  SAES_CHECK(cfg_.jumprelu_threshold_window > 0, ConfigError,
             "sae.jumprelu_threshold_window: expected > 0, got {}", cfg_.jumprelu_threshold_window);
  SAES_CHECK(!cfg_.use_glu_encoder, ConfigError,
             "sae.use_glu_encoder: not supported for sae_type molt");
  SAES_CHECK(!cfg_.hook_point_in.empty() && !cfg_.hook_point_out.empty(), ConfigError,
             "sae.hook_point_in/hook_point_out: both must be set");

  const auto opts = at::TensorOptions().dtype(dtype()).device(device());
  const std::int64_t d = cfg_.d_model, s = local_d_sae();
  auto pair = [&](at::Tensor& p, at::Tensor& g, at::IntArrayRef shape) {
    p = at::zeros(shape, opts);
    g = at::zeros(shape, opts);
  };
  pair(W_E_, gW_E_, {d, s});
  pair(b_E_, gb_E_, {s});
  U_.resize(groups_.size());
  V_.resize(groups_.size());
  gU_.resize(groups_.size());
  gV_.resize(groups_.size());
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const Group& G = groups_[g];
    pair(U_[g], gU_[g], {G.local_count, d, G.rank});
    pair(V_[g], gV_[g], {G.local_count, G.rank, d});
    u_names_.push_back(fmt::format("U_matrices.{}", G.rank));
    v_names_.push_back(fmt::format("V_matrices.{}", G.rank));
  }
  if (cfg_.use_decoder_bias) pair(b_D_, gb_D_, {d});
  if (cfg_.act_fn == ActFn::kJumpRelu) pair(log_threshold_, glog_threshold_, {s});
}

std::vector<ParameterRef> MixtureOfLinearTransforms::parameters() {
  const auto others = ParamGroup::kOthers;
  std::vector<ParameterRef> out = {{"W_E", W_E_, gW_E_, others, true, 1},
                                   {"b_E", b_E_, gb_E_, others, true, 0}};
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    out.push_back({u_names_[g], U_[g], gU_[g], others, true, 0});
    out.push_back({v_names_[g], V_[g], gV_[g], others, true, 0});
  }
  if (b_D_.defined()) out.push_back({"b_D", b_D_, gb_D_, others, true, -1});
  if (log_threshold_.defined()) {
    out.push_back({"activation_function.log_jumprelu_threshold", log_threshold_, glog_threshold_,
                   ParamGroup::kJumpRelu, false, 0});
  }
  return out;
}

std::vector<std::int64_t> MixtureOfLinearTransforms::feature_blocks() const {
  std::vector<std::int64_t> out;
  for (const Group& g : groups_) out.push_back(g.count);
  return out;
}

std::map<std::string, double> MixtureOfLinearTransforms::frequency_metrics(
    const at::Tensor& freq) const {
  std::map<std::string, double> out;
  const double l0 = freq.sum().item<double>();
  double rank_sum = 0.0;
  std::int64_t offset = 0;
  for (const Group& g : groups_) {
    const double l0_r = freq.narrow(0, offset, g.count).sum().item<double>();
    offset += g.count;
    out[fmt::format("molt_metrics/l0_rank{}", g.rank)] = l0_r;
    out[fmt::format("molt_metrics/l0_rank{}_ratio", g.rank)] = l0 > 0 ? l0_r / l0 : 0.0;
    rank_sum += static_cast<double>(g.rank) * l0_r;
  }
  out["molt_metrics/total_rank_sum"] = rank_sum;
  return out;
}

std::int64_t MixtureOfLinearTransforms::resolve_k(std::int64_t k) const {
  const std::int64_t out = k > 0 ? k : cfg_.top_k;
  SAES_CHECK(out <= d_sae(), ConfigError, "current k {} exceeds d_sae {}", out, d_sae());
  return out;
}

void MixtureOfLinearTransforms::check_activations(const at::Tensor& t, const char* what) const {
  SAES_CHECK(t.defined() && t.dim() == 2 && t.size(1) == cfg_.d_model, DataError,
             "{} has shape [{}], expected [n_tokens, d_model={}]", what,
             t.defined() ? fmt::format("{}", fmt::join(t.sizes(), ", ")) : "undefined",
             cfg_.d_model);
}

MixtureOfLinearTransforms::Grams MixtureOfLinearTransforms::grams() const {
  Grams out;
  std::vector<at::Tensor> norms;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    out.gu.push_back(at::bmm(U_[g].transpose(1, 2), U_[g]));  // [c, r, r]
    out.gv.push_back(at::bmm(V_[g], V_[g].transpose(1, 2)));
    // ‖U V‖_F² = tr(Uᵀ U V Vᵀ) = Σ (UᵀU) ⊙ (V Vᵀ) (both symmetric)
    norms.push_back(at::sqrt(at::clamp_min(at::sum(out.gu.back() * out.gv.back(), {1, 2}), 0)));
  }
  out.n = at::cat(norms);
  return out;
}

at::Tensor MixtureOfLinearTransforms::decoder_norm() const { return grams().n; }

at::Tensor MixtureOfLinearTransforms::u_rows(std::size_t g) const {
  return U_[g].transpose(1, 2).reshape({-1, cfg_.d_model});
}

at::Tensor MixtureOfLinearTransforms::hidden_pre(const at::Tensor& x) const {
  check_activations(x, "x");
  return at::addmm(b_E_, x, W_E_);
}

at::Tensor MixtureOfLinearTransforms::select_mask(const at::Tensor& s, std::int64_t k) const {
  if (shard_.sharded() && is_topk_family(cfg_.act_fn)) {
    return sharded_activation_mask(cfg_.act_fn, s, k, *shard_.group);
  }
  return activation_mask(cfg_.act_fn, s, log_threshold_, k);
}

at::Tensor MixtureOfLinearTransforms::encode(const at::Tensor& x, std::int64_t k) const {
  const at::NoGradGuard no_grad;
  const at::Tensor h = hidden_pre(x);
  if (cfg_.act_fn == ActFn::kRelu) return at::relu(h);
  const at::Tensor s = cfg_.sparsity_include_decoder_norm ? h * decoder_norm() : h;
  return h * select_mask(s, resolve_k(k));
}

at::Tensor MixtureOfLinearTransforms::decode(const at::Tensor& /*f*/) const {
  SAES_THROW(UnsupportedError,
             "sae_type molt decodes from its input as well as its features (reconstruct(x, f))");
}

at::Tensor MixtureOfLinearTransforms::reconstruct(const at::Tensor& x_in,
                                                  const at::Tensor& f_in) const {
  const at::NoGradGuard no_grad;
  const at::Tensor x = x_in.to(device(), dtype());
  const at::Tensor f = f_in.to(device(), dtype());
  check_activations(x, "x");
  SAES_CHECK(f.dim() == 2 && f.size(0) == x.size(0) && f.size(1) == local_d_sae(), DataError,
             "feature acts have shape [{}], expected [{}, {}]", fmt::join(f.sizes(), ", "),
             x.size(0), local_d_sae());
  const std::int64_t N = x.size(0);
  at::Tensor out = at::zeros({N, cfg_.d_model}, x.options());
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const Group& G = groups_[g];
    // (f_i · V_i x) per transform, then Σ_i U_i (·): two GEMMs over the group's c·r rows
    const at::Tensor p = at::mm(x, v_rows(g).t()).view({N, G.local_count, G.rank});
    const at::Tensor a = p * f.narrow(1, G.local_offset, G.local_count).unsqueeze(2);
    out.addmm_(a.view({N, -1}), u_rows(g));
  }
  sum_over_features(out);
  return b_D_.defined() ? out.add_(b_D_) : out;
}

void MixtureOfLinearTransforms::init_parameters(const RandomInit& init, at::Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(d_sae()));
  fill_uniform(W_E_, 1, bound, gen);
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    fill_uniform(U_[g], 0, bound, gen);
    fill_uniform(V_[g], 0, bound, gen);
  }
  b_E_.zero_();
  if (b_D_.defined()) b_D_.zero_();
  fill_log_threshold(log_threshold_, init);
}

void MixtureOfLinearTransforms::set_decoder_to_fixed_norm(double value, bool exact) {
  const at::Tensor n = decoder_norm();
  const at::Tensor scale =
      exact ? value / n : at::where(at::gt(n, value), value / n, at::ones_like(n));
  const at::Tensor root = at::sqrt(scale);
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const at::Tensor r = root.narrow(0, groups_[g].local_offset, groups_[g].local_count);
    U_[g].mul_(r.view({-1, 1, 1}));
    V_[g].mul_(r.view({-1, 1, 1}));
  }
}

void MixtureOfLinearTransforms::init_decoder_bias_with_mean(const at::Tensor& label_normalized) {
  check_activations(label_normalized, "label");
  SAES_CHECK(b_D_.defined(), ConfigError,
             "initializer.bias_init_method geometric_median needs sae.use_decoder_bias true");
  b_D_.copy_(at::mean(label_normalized.to(b_D_.options()), {0}));
}

void MixtureOfLinearTransforms::init_encoder_bias_with_mean_hidden_pre(
    const at::Tensor& x_normalized) {
  b_E_.sub_(at::mean(hidden_pre(x_normalized.to(W_E_.options())), {0}));
}

void MixtureOfLinearTransforms::rescale_for_fold(bool fold) {
  const double f_in = dataset_scale(cfg_.hook_point_in);
  const double f_out = dataset_scale(cfg_.hook_point_out);
  const double a = fold ? 1.0 : -1.0;
  b_E_.mul_(std::pow(f_in, -a));
  const double uv = std::pow(f_in / std::sqrt(f_out), a);
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    U_[g].mul_(uv);
    V_[g].mul_(uv);
  }
  if (b_D_.defined()) b_D_.mul_(std::pow(f_out, -a));
  if (log_threshold_.defined()) {
    log_threshold_.add_(a * (cfg_.sparsity_include_decoder_norm ? std::log(f_in / f_out)
                                                                : -std::log(f_in)));
  }
}

}  // namespace saes::dictionaries

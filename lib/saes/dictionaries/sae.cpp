// SparseAutoEncoder: parameters, encode/decode, the fused training step with a manual backward
// (spec §2.1, §2.2, §3) and the SAE's init and fold rules (spec §2.1, §4).
#include "saes/dictionaries/sae.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include <ATen/TensorOperators.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/count_nonzero.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/full.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/threshold_backward.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/ranges.h>  // fmt::join (moved out of fmt/format.h in fmt 11)

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/dense_step_parts.h"
#include "saes/dictionaries/sparse_kernels.h"

namespace saes::dictionaries {
namespace {

void validate(const SparseDictionaryConfig& cfg) {
  SAES_CHECK(cfg.sae_type == SaeType::kSae, ConfigError,
             "sae.sae_type: SparseAutoEncoder needs sae, got {}",
             kSaeTypeNames[static_cast<std::size_t>(cfg.sae_type)]);
  SAES_CHECK(cfg.act_fn != ActFn::kLayerTopK && cfg.act_fn != ActFn::kBatchLayerTopK, ConfigError,
             "sae.act_fn: {} is only valid for sae_type clt",
             kActFnNames[static_cast<std::size_t>(cfg.act_fn)]);
  SAES_CHECK(!is_topk_family(cfg.act_fn) || (cfg.top_k >= 1 && cfg.top_k <= cfg.d_sae()),
             ConfigError, "sae.top_k: expected 1..d_sae={}, got {}", cfg.d_sae(), cfg.top_k);
  SAES_CHECK(cfg.jumprelu_threshold_window > 0, ConfigError,
             "sae.jumprelu_threshold_window: expected > 0, got {}", cfg.jumprelu_threshold_window);
  SAES_CHECK(!cfg.hook_point_in.empty() && !cfg.hook_point_out.empty(), ConfigError,
             "sae.hook_point_in/hook_point_out: both must be set");
}

}  // namespace

SparseAutoEncoder::SparseAutoEncoder(SparseDictionaryConfig cfg, FeatureShard shard)
    : SparseDictionary(std::move(cfg), shard) {
  validate(cfg_);
  const auto opts = at::TensorOptions().dtype(dtype()).device(device());
  const std::int64_t d = cfg_.d_model, s = local_d_sae();
  auto pair = [&](at::Tensor& p, at::Tensor& g, at::IntArrayRef shape) {
    p = at::zeros(shape, opts);
    g = at::zeros(shape, opts);
  };
  pair(W_E_, gW_E_, {d, s});
  pair(b_E_, gb_E_, {s});
  pair(W_D_, gW_D_, {s, d});
  if (cfg_.use_decoder_bias) pair(b_D_, gb_D_, {d});
  if (cfg_.use_glu_encoder) {
    pair(W_E_glu_, gW_E_glu_, {d, s});
    pair(b_E_glu_, gb_E_glu_, {s});
  }
  if (cfg_.act_fn == ActFn::kJumpRelu) pair(log_threshold_, glog_threshold_, {s});
}

std::vector<ParameterRef> SparseAutoEncoder::parameters() {
  const auto others = ParamGroup::kOthers;
  std::vector<ParameterRef> out = {{"W_E", W_E_, gW_E_, others, true, 1},
                                   {"b_E", b_E_, gb_E_, others, true, 0},
                                   {"W_D", W_D_, gW_D_, others, true, 0}};
  if (b_D_.defined()) out.push_back({"b_D", b_D_, gb_D_, others, true, -1});
  if (W_E_glu_.defined()) {
    out.push_back({"W_E_glu", W_E_glu_, gW_E_glu_, others, true, 1});
    out.push_back({"b_E_glu", b_E_glu_, gb_E_glu_, others, true, 0});
  }
  if (log_threshold_.defined()) {
    out.push_back({"activation_function.log_jumprelu_threshold", log_threshold_, glog_threshold_,
                   ParamGroup::kJumpRelu, false, 0});
  }
  return out;
}

std::int64_t SparseAutoEncoder::resolve_k(std::int64_t k) const {
  const std::int64_t out = k > 0 ? k : cfg_.top_k;
  SAES_CHECK(out <= d_sae(), ConfigError, "current k {} exceeds d_sae {}", out, d_sae());
  return out;
}

void SparseAutoEncoder::check_activations(const at::Tensor& t, const char* what) const {
  SAES_CHECK(t.defined() && t.dim() == 2 && t.size(1) == cfg_.d_model, DataError,
             "{} has shape [{}], expected [n_tokens, d_model={}]", what,
             t.defined() ? fmt::format("{}", fmt::join(t.sizes(), ", ")) : "undefined",
             cfg_.d_model);
}

at::Tensor SparseAutoEncoder::hidden_pre(const at::Tensor& x) const {
  check_activations(x, "x");
  at::Tensor h = at::addmm(b_E_, x, W_E_);
  if (W_E_glu_.defined()) h.mul_(at::sigmoid(at::addmm(b_E_glu_, x, W_E_glu_)));
  return h;
}

at::Tensor SparseAutoEncoder::encoder_vectors(std::int64_t /*layer*/,
                                              const at::Tensor& indices) const {
  SAES_CHECK(!W_E_glu_.defined(), UnsupportedError,
             "circuit tracing: a GLU encoder's pre-activation is not linear in its input "
             "(sae.use_glu_encoder)");
  return W_E_.index_select(1, indices.to(W_E_.device())).t();
}

at::Tensor SparseAutoEncoder::decoder_vectors(std::int64_t /*layer*/, std::int64_t /*target*/,
                                              const at::Tensor& indices) const {
  return W_D_.index_select(0, indices.to(W_D_.device()));
}

at::Tensor SparseAutoEncoder::decoder_norm() const {
  return at::linalg_vector_norm(W_D_, 2, {1}, false);
}

at::Tensor SparseAutoEncoder::encode(const at::Tensor& x, std::int64_t k) const {
  const at::Tensor h = hidden_pre(x);
  if (cfg_.act_fn == ActFn::kRelu) return at::relu(h);
  const at::Tensor s = cfg_.sparsity_include_decoder_norm ? h * decoder_norm() : h;
  return h * select_mask(cfg_.act_fn, s, resolve_k(k));
}

at::Tensor SparseAutoEncoder::select_mask(ActFn act_fn, const at::Tensor& s, std::int64_t k) const {
  if (shard_.sharded() && is_topk_family(act_fn)) {
    return sharded_activation_mask(act_fn, s, k, *shard_.group);
  }
  return activation_mask(act_fn, s, log_threshold_, k, dense_backend_);
}

at::Tensor SparseAutoEncoder::decode(const at::Tensor& f) const {
  SAES_CHECK(f.dim() == 2 && f.size(1) == local_d_sae(), DataError,
             "feature acts have shape [{}], expected [n_tokens, {}={}]", fmt::join(f.sizes(), ", "),
             shard_.sharded() ? "local features" : "d_sae", local_d_sae());
  const SparseKernels mode = cfg_.sparse_kernels;
  std::vector<double> counts = {static_cast<double>(f.numel())};
  if (mode == SparseKernels::kAuto && !auto_prefers_dense()) {
    counts.push_back(static_cast<double>(at::count_nonzero(f).item<std::int64_t>()));
  }
  counts = sum_over_features(counts);  // every rank of a model group takes the same path
  const bool sparse = mode == SparseKernels::kOn || (counts.size() == 2 && counts[0] > 0 &&
                                                     counts[1] <= kSparseMaxDensity * counts[0]);
  return sparse ? sparse_decode_sum(sparse_from_dense(f), b_D_) : dense_decode(f);
}

at::Tensor SparseAutoEncoder::dense_decode(const at::Tensor& f) const {
  if (!shard_.sharded()) return b_D_.defined() ? at::addmm(b_D_, f, W_D_) : at::mm(f, W_D_);
  at::Tensor xhat = at::mm(f, W_D_);
  sum_over_features(xhat);
  return b_D_.defined() ? xhat.add_(b_D_) : xhat;
}

at::Tensor SparseAutoEncoder::sparse_decode_sum(const SparseActs& a, const at::Tensor& bias) const {
  if (!shard_.sharded()) return sparse_decode(a, W_D_, bias);
  at::Tensor xhat = sparse_decode(a, W_D_, {});
  sum_over_features(xhat);
  return bias.defined() ? xhat.add_(bias) : xhat;
}

bool SparseAutoEncoder::uses_sparse_step(const at::Tensor& pre, std::int64_t k) const {
  const SparseKernels mode = cfg_.sparse_kernels;
  if (mode == SparseKernels::kOff || W_E_glu_.defined() || cfg_.act_fn == ActFn::kJumpRelu) {
    return false;
  }
  if (mode == SparseKernels::kOn) return true;
  if (auto_prefers_dense()) return false;
  if (is_topk_family(cfg_.act_fn)) {
    return static_cast<double>(k) / static_cast<double>(d_sae()) <= kSparseMaxDensity;
  }
  // ReLU: the density over the whole dictionary, so every rank of a model group agrees
  const std::vector<double> counts = sum_over_features(
      {static_cast<double>(at::count_nonzero(at::gt(pre, 0)).item<std::int64_t>()),
       static_cast<double>(pre.numel())});
  return counts[0] <= kSparseMaxDensity * std::max(counts[1], 1.0);
}

StepResult SparseAutoEncoder::forward_backward(const TrainBatch& batch, const LossSettings& ls) {
  const at::Tensor x = hook_rows(batch.acts, cfg_.hook_point_in);
  const at::Tensor label = hook_rows(batch.acts, cfg_.hook_point_out);
  check_activations(x, "x");
  check_activations(label, "label");
  SAES_CHECK(x.size(0) == label.size(0), DataError, "x has {} tokens but label has {}", x.size(0),
             label.size(0));
  StepState st;
  st.x = normalize(x, cfg_.hook_point_in);
  st.y = normalize(label, cfg_.hook_point_out);
  const at::Tensor mask = batch.mask.defined() ? batch.mask.flatten() : batch.mask;
  std::tie(st.w, st.n_valid) = detail::token_weights(mask, st.x.size(0), st.x.options());
  st.mask = mask;
  st.dead = batch.dead;
  st.n = decoder_norm();
  st.k = is_topk_family(cfg_.act_fn) ? resolve_k(ls.current_k) : 0;
  st.pre = at::addmm(b_E_, st.x, W_E_);
  return uses_sparse_step(st.pre, st.k) ? sparse_step(st, ls) : dense_step(st, ls);
}

SparseAutoEncoder::AuxK SparseAutoEncoder::dense_aux_k(const StepState& st, const at::Tensor& h,
                                                       const at::Tensor& r,
                                                       const LossSettings& ls) const {
  AuxK aux;
  if (ls.auxk_coefficient <= 0 || !is_topk_family(cfg_.act_fn) || !st.dead.defined()) return aux;
  const at::Tensor dead = st.dead.to(h.device()).to(at::kBool).reshape({local_d_sae()});
  const auto n_dead = static_cast<std::int64_t>(  // over the whole dictionary
      sum_over_features({static_cast<double>(at::sum(dead).item<std::int64_t>())})[0]);
  if (n_dead == 0) return aux;
  const at::Tensor deadf = dead.to(h.scalar_type());
  const at::Tensor s_aux = cfg_.sparsity_include_decoder_norm ? h * (deadf * st.n) : h * deadf;
  aux.active = select_mask(cfg_.act_fn, s_aux, std::min(ls.k_aux, n_dead));
  aux.f = h * aux.active;
  at::Tensor q = at::mm(aux.f, W_D_);
  sum_over_features(q);
  q.add_(r);  // ê − e, e = label − x̂
  aux.loss = ls.auxk_coefficient * at::sum(at::sum(q * q, {1}, true) * st.w).item<double>();
  aux.Gq = q * (2.0 * ls.auxk_coefficient * st.w);  // ∂L_aux/∂ê
  return aux;
}

StepResult SparseAutoEncoder::dense_step(const StepState& st, const LossSettings& ls) {
  // The fused sweep sums u^p per token inside: a sharded power-p > 1 penalty takes the op path,
  // which sums those over the model group.
  const bool row_norm =
      ls.sparsity == SparsityPenalty::kPower && ls.p != 1 && ls.l1_coefficient != 0;
  if (fused_dense_applies() && !(shard_.sharded() && row_norm)) return fused_dense_step(st, ls);
  const at::Tensor &x = st.x, &y = st.y, &w = st.w, &n = st.n;
  at::Tensor pre = st.pre;
  const std::int64_t N = x.size(0);
  const double n_valid = st.n_valid;
  const bool gating = cfg_.sparsity_include_decoder_norm;
  const bool jump = cfg_.act_fn == ActFn::kJumpRelu;
  const at::Tensor ng = gating ? n : at::Tensor();
  const std::int64_t k = st.k;
  StepResult out;
  out.n_tokens = n_valid;

  // ---- forward ----
  at::Tensor gate, h = pre;
  if (W_E_glu_.defined()) {
    gate = at::sigmoid(at::addmm(b_E_glu_, x, W_E_glu_));
    h = pre * gate;
  }
  at::Tensor s, active, f;
  if (cfg_.act_fn == ActFn::kRelu) {
    f = W_E_glu_.defined() ? at::relu(h) : h.relu_();  // gating is a no-op for ReLU (§2.1)
  } else {
    s = gating ? h * ng : h;
    active = select_mask(cfg_.act_fn, s, k);
    f = h * active;
  }
  const at::Tensor xhat = dense_decode(f);
  const at::Tensor r = xhat - y;
  // l_rec = Σ_t w_t Σ_d r², ∂/∂x̂ = 2 w_t r_t (spec §2.1)
  out.l_rec = at::sum(at::sum(r * r, {1}, true) * w).item<double>();
  at::Tensor G = r * (2.0 * w);

  // ---- Aux-K (spec §3.5) ----
  const AuxK aux = dense_aux_k(st, h, r, ls);
  const at::Tensor &f_aux = aux.f, &active_aux = aux.active, &Gq = aux.Gq;
  out.l_aux = aux.loss;
  if (Gq.defined() && !ls.auxk_detach_residual) G = G + Gq;  // ∂/∂x̂ = ∂/∂ê (ê − e = ê + x̂ − y)

  // ---- backward into f ----
  at::Tensor df = at::mm(G, W_D_.t());
  at::Tensor gn = at::zeros_like(n);  // ∂L/∂n (decoder norms)
  out.l_sparsity = detail::dense_penalty(
      ls, f, w, ng, jump, df, gn, [this](at::Tensor& t) { sum_over_features(t); },
      shard_.rank() == 0);

  // ---- through the activation into h ----
  if (jump) {
    glog_threshold_.copy_(jumprelu_log_threshold_grad(gating ? df / ng : df, s, log_threshold_,
                                                      cfg_.jumprelu_threshold_window));
  }
  at::Tensor dh = cfg_.act_fn == ActFn::kRelu ? at::threshold_backward(df, f, 0) : df * active;
  if (Gq.defined()) dh.add_(at::mm(Gq, W_D_.t()).mul_(active_aux));
  if (jump && ls.lp_coefficient > 0) {
    out.l_p = detail::dense_lp(ls.lp_coefficient, h, w, n, log_threshold_, glog_threshold_, gn, dh);
  }

  // ---- into the parameters ----
  at::Tensor dpre = dh;
  if (gate.defined()) {
    dpre = dh * gate;
    const at::Tensor dgate = dh * pre * gate * (1 - gate);
    at::mm_out(gW_E_glu_, x.t(), dgate);
    at::sum_out(gb_E_glu_, dgate, {0});
  }
  at::mm_out(gW_E_, x.t(), dpre);
  at::sum_out(gb_E_, dpre, {0});
  at::mm_out(gW_D_, f.t(), G);
  if (f_aux.defined()) gW_D_.addmm_(f_aux.t(), Gq);
  // n_i = ‖W_D,i‖ ⇒ ∂n_i/∂W_D,i = W_D,i / n_i (0 for a zero row, as torch)
  gW_D_.add_(W_D_ * at::where(at::gt(n, 0), gn / n, at::zeros_like(n)).unsqueeze(1));
  if (b_D_.defined()) at::sum_out(gb_D_, G, {0});

  // ---- metrics ----
  out.fired = st.mask.defined()
                  ? at::mv(at::gt(f, 0).to(w.scalar_type()).t(), (w * n_valid).view({N}))
                        .round()
                        .to(at::kLong)
                  : at::count_nonzero(f, at::IntArrayRef{0});
  finish_sums(out, n_valid);
  out.feature_acts = f;
  out.reconstructed = xhat;
  out.label = y;
  return out;
}

void SparseAutoEncoder::finish_sums(StepResult& out, double n_valid) const {
  const std::vector<double> sums = sum_over_features(
      {out.l_sparsity, out.l_p, static_cast<double>(at::sum(out.fired).item<std::int64_t>())});
  out.l_sparsity = sums[0];
  out.l_p = sums[1];
  out.l0 = sums[2] / n_valid;
  out.loss = out.l_rec + out.l_sparsity + out.l_p + out.l_aux;
}

void SparseAutoEncoder::init_parameters(const RandomInit& init, at::Generator& gen) {
  fill_uniform(W_E_, 1, init.encoder_uniform_bound, gen);
  fill_uniform(W_D_, 0, init.decoder_uniform_bound, gen);
  b_E_.zero_();
  if (b_D_.defined()) b_D_.zero_();
  if (W_E_glu_.defined()) {
    fill_uniform(W_E_glu_, 1, init.encoder_uniform_bound, gen);
    b_E_glu_.zero_();
  }
  fill_log_threshold(log_threshold_, init);
}

void SparseAutoEncoder::init_encoder_with_decoder_transpose(double factor) {
  W_E_.copy_(W_D_.t() * factor);
}

void SparseAutoEncoder::set_decoder_to_fixed_norm(double value, bool exact) {
  const at::Tensor n = decoder_norm();
  const at::Tensor scale =
      exact ? value / n : at::where(at::gt(n, value), value / n, at::ones_like(n));
  W_D_.mul_(scale.unsqueeze(1));
}

void SparseAutoEncoder::init_decoder_bias_with_mean(const at::Tensor& label_normalized) {
  check_activations(label_normalized, "label");
  SAES_CHECK(b_D_.defined(), ConfigError,
             "initializer.bias_init_method geometric_median needs sae.use_decoder_bias true");
  b_D_.copy_(at::mean(label_normalized.to(b_D_.options()), {0}));
}

void SparseAutoEncoder::init_encoder_bias_with_mean_hidden_pre(const at::Tensor& x_normalized) {
  b_E_.sub_(at::mean(hidden_pre(x_normalized.to(W_E_.options())), {0}));
}

void SparseAutoEncoder::rescale_for_fold(bool fold) {
  const double f_in = dataset_scale(cfg_.hook_point_in);
  const double f_out = dataset_scale(cfg_.hook_point_out);
  // spec §2.1: b_E ← b_E/f_in, W_D ← W_D·f_in/f_out, b_D ← b_D/f_out; GLU gate input W_E_glu·f_in
  // keeps the gate exact; JumpReLU θ/f_out with gating, θ/f_in without (the upstream fix).
  const double a = fold ? 1.0 : -1.0;
  b_E_.mul_(std::pow(f_in, -a));
  W_D_.mul_(std::pow(f_in / f_out, a));
  if (b_D_.defined()) b_D_.mul_(std::pow(f_out, -a));
  if (W_E_glu_.defined()) W_E_glu_.mul_(std::pow(f_in, a));
  if (log_threshold_.defined()) {
    log_threshold_.sub_(a * std::log(cfg_.sparsity_include_decoder_norm ? f_out : f_in));
  }
}

}  // namespace saes::dictionaries

// The fused manual backward of SparseAutoEncoder equals autograd (float64) for every activation
// function × sparsity penalty × decoder-norm gating × SAE/transcoder, with Lp and Aux-K terms,
// on the dense step and on the sparse step (sparse_kernels on; float64 runs its op-based path).
#include <map>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/sae.h"
#include "support/reference_losses.h"

namespace sd = saes::dictionaries;

namespace {

struct Case {
  sd::ActFn act;
  sd::SparsityPenalty penalty;
  std::int64_t p;
  bool gating;
  bool transcoder;
  bool glu;
  bool masked;
  sd::SparseKernels kernels = sd::SparseKernels::kOff;
};

sd::SparseDictionaryConfig make_cfg(const Case& c) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 4;
  cfg.expansion_factor = 3.0;
  cfg.act_fn = c.act;
  cfg.top_k = 3;
  cfg.sparsity_include_decoder_norm = c.gating;
  cfg.use_glu_encoder = c.glu;
  cfg.jumprelu_threshold_window = 0.6;
  cfg.hook_point_in = "blocks.0.hook_resid_pre";
  cfg.hook_point_out = c.transcoder ? "blocks.0.hook_mlp_out" : cfg.hook_point_in;
  cfg.dtype = saes::DType::kFloat64;
  cfg.sparse_kernels = c.kernels;
  return cfg;
}

using Params = std::map<std::string, at::Tensor>;

/// Autograd reference of the loss (spec §2.1, §3): selection masks come from activation_mask
/// (non-differentiable anyway); the JumpReLU STE is written as c·(θ − θ.detach()).
at::Tensor reference_loss(const Params& P, const sd::SparseDictionaryConfig& cfg,
                          const at::Tensor& x, const at::Tensor& y, const at::Tensor& mask,
                          const at::Tensor& dead, const sd::LossSettings& ls) {
  const bool jump = cfg.act_fn == sd::ActFn::kJumpRelu;
  const bool g = cfg.sparsity_include_decoder_norm;
  const at::Tensor n = at::linalg_vector_norm(P.at("W_D"), 2, {1});
  at::Tensor h = at::addmm(P.at("b_E"), x, P.at("W_E"));
  if (cfg.use_glu_encoder) h = h * at::sigmoid(at::addmm(P.at("b_E_glu"), x, P.at("W_E_glu")));
  const at::Tensor logt = jump ? P.at("activation_function.log_jumprelu_threshold") : at::Tensor();
  auto act = [&](const at::Tensor& s, std::int64_t k) {
    const at::Tensor A =
        sd::activation_mask(cfg.act_fn, s.detach(), jump ? logt.detach() : logt, k).to(at::kDouble);
    const at::Tensor sig =
        jump ? saes::testing::reference_jumprelu_ste(s, A, logt, cfg.jumprelu_threshold_window)
             : s * A;
    return g ? sig / n : sig;
  };
  const std::int64_t N = x.size(0);
  const at::Tensor w = mask.defined()
                           ? (mask.to(at::kDouble) / mask.to(at::kDouble).sum()).unsqueeze(1)
                           : at::full({N, 1}, 1.0 / N, x.options());
  const std::int64_t k = ls.current_k;
  const at::Tensor f = act(g ? h * n : h, k);
  at::Tensor xhat = at::mm(f, P.at("W_D"));
  if (cfg.use_decoder_bias) xhat = xhat + P.at("b_D");
  at::Tensor loss = ((xhat - y).pow(2).sum(1, true) * w).sum();
  loss = loss + saes::testing::reference_penalty(ls, g ? f * n : f, w, ls.l1_coefficient);
  if (jump && ls.lp_coefficient > 0) {
    loss = loss + ls.lp_coefficient * ((at::relu(at::exp(logt) - h) * n).sum(1, true) * w).sum();
  }
  if (ls.auxk_coefficient > 0 && dead.defined()) {
    const at::Tensor deadf = dead.to(at::kDouble);
    const std::int64_t kp = std::min(ls.k_aux, dead.sum().item<std::int64_t>());
    const at::Tensor f_aux = act(g ? h * deadf * n : h * deadf, kp);
    const at::Tensor ehat = at::mm(f_aux, P.at("W_D"));
    const at::Tensor e = ls.auxk_detach_residual ? (y - xhat).detach() : y - xhat;
    loss = loss + ls.auxk_coefficient * ((e - ehat).pow(2).sum(1, true) * w).sum();
  }
  return loss;
}

void check_case(const Case& c, const sd::LossSettings& ls_in, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  sd::SparseAutoEncoder sae(make_cfg(c));
  sae.init_parameters({0.8, 0.8, std::log(0.3)}, gen);
  sae.set_dataset_norm(sae.config().hook_point_in, 1.7);
  if (c.transcoder) sae.set_dataset_norm(sae.config().hook_point_out, 0.9);
  for (auto& p : sae.parameters()) {
    if (p.name == "b_E" || p.name == "b_D" || p.name == "b_E_glu") p.value.normal_(0, 0.2, gen);
    if (p.name == "activation_function.log_jumprelu_threshold")
      p.value.normal_(std::log(0.3), 0.3, gen);
  }
  const std::int64_t N = 7;
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor x = at::randn({N, 4}, gen, opts);
  const at::Tensor label = c.transcoder ? at::randn({N, 4}, gen, opts) : x;
  sd::TrainBatch batch = sd::single_hook_batch(sae.config(), x, label);
  if (c.masked) batch.mask = at::tensor({1, 1, 0, 1, 1, 1, 0}).to(at::kBool);
  sd::LossSettings ls = ls_in;
  ls.sparsity = c.penalty;
  ls.p = c.p;
  if (sd::is_topk_family(c.act)) {
    batch.dead = at::tensor({1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1}).to(at::kBool);
  }
  const sd::StepResult res = sae.forward_backward(batch, ls);

  Params P;
  for (auto& p : sae.parameters()) P[p.name] = p.value.detach().clone().requires_grad_(true);
  const at::Tensor xn = sae.normalize(x, sae.config().hook_point_in);
  const at::Tensor yn = sae.normalize(label, sae.config().hook_point_out);
  sd::LossSettings ref_ls = ls;
  ref_ls.current_k = ls.current_k > 0 ? ls.current_k : sae.config().top_k;
  const at::Tensor loss = reference_loss(P, sae.config(), xn, yn, batch.mask, batch.dead, ref_ls);
  loss.backward();
  CHECK(res.loss == Approx(loss.item<double>()).epsilon(1e-10));
  for (auto& p : sae.parameters()) {
    INFO("parameter " << p.name);
    const at::Tensor ref = P.at(p.name).grad();
    const double err = (p.grad - ref).abs().max().item<double>();
    const double scale = ref.abs().max().item<double>() + 1e-12;
    CHECK(err / scale < 1e-9);
  }
}

}  // namespace

TEST_CASE("manual backward equals autograd for every activation x penalty x gating x transcoder",
          "[dictionaries]") {
  const auto act =
      GENERATE(sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK, sd::ActFn::kBatchTopK);
  const auto penalty = GENERATE(sd::SparsityPenalty::kNone, sd::SparsityPenalty::kPower,
                                sd::SparsityPenalty::kTanh, sd::SparsityPenalty::kTanhQuad);
  const bool gating = GENERATE(true, false);
  const bool transcoder = GENERATE(false, true);
  const bool masked = GENERATE(false, true);
  const auto kernels = GENERATE(sd::SparseKernels::kOff, sd::SparseKernels::kOn);
  const Case c{act, penalty, 1, gating, transcoder, false, masked, kernels};
  INFO("act " << static_cast<int>(act) << " penalty " << static_cast<int>(penalty) << " gating "
              << gating << " transcoder " << transcoder << " masked " << masked << " kernels "
              << static_cast<int>(kernels));
  sd::LossSettings ls;
  ls.l1_coefficient = 0.7;
  ls.tanh_stretch_coefficient = 1.5;
  ls.frequency_scale = 0.3;
  ls.lp_coefficient = act == sd::ActFn::kJumpRelu ? 0.2 : 0.0;
  ls.auxk_coefficient = sd::is_topk_family(act) ? 0.5 : 0.0;
  ls.k_aux = 2;
  check_case(c, ls, 11);
}

TEST_CASE("manual backward equals autograd for GLU, p = 2, detached Aux-K and annealed k",
          "[dictionaries]") {
  sd::LossSettings ls;
  ls.l1_coefficient = 0.4;
  SECTION("GLU encoder") {
    for (auto act : {sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK}) {
      check_case({act, sd::SparsityPenalty::kPower, 1, true, false, true, false}, ls, 3);
    }
  }
  SECTION("power p = 2") {
    for (auto act : {sd::ActFn::kRelu, sd::ActFn::kTopK}) {
      for (auto kernels : {sd::SparseKernels::kOff, sd::SparseKernels::kOn}) {
        check_case({act, sd::SparsityPenalty::kPower, 2, true, true, false, true, kernels}, ls, 5);
      }
    }
  }
  SECTION("detached Aux-K residual and current_k above top_k") {
    ls.auxk_coefficient = 0.3;
    ls.auxk_detach_residual = true;
    ls.k_aux = 4;
    ls.current_k = 5;
    for (auto act : {sd::ActFn::kTopK, sd::ActFn::kBatchTopK}) {
      for (auto kernels : {sd::SparseKernels::kOff, sd::SparseKernels::kOn}) {
        check_case({act, sd::SparsityPenalty::kTanh, 1, true, false, false, true, kernels}, ls, 7);
      }
    }
  }
}

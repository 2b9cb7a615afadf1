// The fused CPU dense step (dense_kernels.h) equals the LibTorch op path of the same step for
// every activation function × penalty × gating × mask, with L_p and Aux-K, in fp32 and fp64; the
// TopK mask (per-row radix select) and the CPU BatchTopK selection equal the op path on distinct
// scores, including rows wide enough for every refinement level, rows with few positive entries and
// scores spread over many octaves; TopK and BatchTopK ties follow the documented rule; row_top_k's
// picks and padding.
#include "saes/dictionaries/dense_kernels.h"

#include <map>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/sae.h"

namespace sd = saes::dictionaries;

namespace {

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  const double scale = b.to(at::kDouble).norm().item<double>();
  return (a.to(at::kDouble) - b.to(at::kDouble)).norm().item<double>() / (scale + 1e-30);
}

struct FusedCase {
  sd::ActFn act;
  sd::SparsityPenalty penalty;
  std::int64_t p;
  bool gating;
  bool masked;
  bool extra;  ///< L_p (JumpReLU) or Aux-K (TopK family)
  saes::DType dtype;
};

struct Outcome {
  sd::StepResult result;
  std::map<std::string, at::Tensor> grads;
};

Outcome run(const FusedCase& c, sd::SparseBackend backend) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 12;
  cfg.expansion_factor = 30.0;  // d_sae 360: two column tiles, the second partial
  cfg.act_fn = c.act;
  cfg.top_k = 7;
  cfg.sparsity_include_decoder_norm = c.gating;
  cfg.norm_activation = sd::NormActivation::kBatchWise;
  cfg.jumprelu_threshold_window = 0.5;
  cfg.hook_point_in = "in";
  cfg.hook_point_out = "out";
  cfg.dtype = c.dtype;
  cfg.sparse_kernels = sd::SparseKernels::kOff;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  sd::SparseAutoEncoder sae(cfg);
  sae.set_dense_backend(backend);
  sae.init_parameters({0.4, 0.4, -1.0}, gen);
  for (auto& p : sae.parameters()) {
    if (p.name == "b_E") p.value.normal_(0.0, 0.3, gen);
    if (p.name == "b_D") p.value.normal_(0, 0.1, gen);
  }
  const std::int64_t N = 37;
  const at::Tensor x = at::randn({N, 12}, gen), label = at::randn({N, 12}, gen);
  sd::TrainBatch batch = sd::single_hook_batch(cfg, x, label);
  if (c.masked) batch.mask = at::rand({N}, gen) > 0.3;
  sd::LossSettings ls;
  ls.sparsity = c.penalty;
  ls.p = c.p;
  ls.l1_coefficient = 0.05;
  ls.tanh_stretch_coefficient = 2.0;
  ls.frequency_scale = 0.3;
  if (c.extra && c.act == sd::ActFn::kJumpRelu) ls.lp_coefficient = 0.2;
  if (c.extra && sd::is_topk_family(c.act)) {
    ls.auxk_coefficient = 0.4;
    ls.k_aux = 9;
    batch.dead = at::rand({cfg.d_sae()}, gen) < 0.3;
  }
  Outcome out{sae.forward_backward(batch, ls), {}};
  for (auto& p : sae.parameters()) out.grads[p.name] = p.grad.clone();
  return out;
}

}  // namespace

TEST_CASE("the fused CPU dense step equals the op path for every activation and loss",
          "[dictionaries][dense]") {
  using A = sd::ActFn;
  using P = sd::SparsityPenalty;
  const auto f32 = saes::DType::kFloat32, f64 = saes::DType::kFloat64;
  const FusedCase c = GENERATE_COPY(FusedCase{A::kRelu, P::kPower, 1, true, false, false, f32},
                                    FusedCase{A::kRelu, P::kPower, 2, false, true, false, f64},
                                    FusedCase{A::kRelu, P::kTanh, 1, true, true, false, f32},
                                    FusedCase{A::kJumpRelu, P::kPower, 1, true, false, false, f32},
                                    FusedCase{A::kJumpRelu, P::kPower, 1, true, true, true, f64},
                                    FusedCase{A::kJumpRelu, P::kPower, 2, true, false, true, f32},
                                    FusedCase{A::kJumpRelu, P::kTanh, 1, false, true, true, f64},
                                    FusedCase{A::kJumpRelu, P::kTanhQuad, 1, true, true, true, f32},
                                    FusedCase{A::kJumpRelu, P::kNone, 1, false, false, true, f32},
                                    FusedCase{A::kTopK, P::kNone, 1, true, false, false, f32},
                                    FusedCase{A::kTopK, P::kPower, 1, true, true, true, f64},
                                    FusedCase{A::kTopK, P::kTanhQuad, 1, false, false, true, f32},
                                    FusedCase{A::kBatchTopK, P::kPower, 2, true, true, true, f32},
                                    FusedCase{A::kBatchTopK, P::kTanh, 1, true, false, false, f64});
  INFO("act " << static_cast<int>(c.act) << " penalty " << static_cast<int>(c.penalty) << " p "
              << c.p << " gating " << c.gating << " masked " << c.masked << " extra " << c.extra
              << " fp64 " << (c.dtype == f64));
  const Outcome ops = run(c, sd::SparseBackend::kOps);
  const Outcome fused = run(c, sd::SparseBackend::kAuto);
  const double tol = c.dtype == f64 ? 1e-10 : 2e-5;
  const sd::StepResult &a = fused.result, &b = ops.result;
  CHECK(a.loss == Approx(b.loss).epsilon(tol));
  CHECK(a.l_rec == Approx(b.l_rec).epsilon(tol));
  CHECK(a.l_sparsity == Approx(b.l_sparsity).epsilon(tol).margin(1e-12));
  CHECK(a.l_p == Approx(b.l_p).epsilon(tol).margin(1e-12));
  CHECK(a.l_aux == Approx(b.l_aux).epsilon(tol).margin(1e-12));
  CHECK(a.l0 == Approx(b.l0));
  CHECK(at::equal(a.fired, b.fired));
  CHECK(at::equal(a.feature_acts, b.feature_acts));
  CHECK(rel_err(a.reconstructed, b.reconstructed) < tol);
  for (const auto& [name, g] : ops.grads) {
    INFO("gradient " << name);
    CHECK(rel_err(fused.grads.at(name), g) < tol);
  }
  if (c.extra && c.act == A::kJumpRelu) CHECK(b.l_p > 0);
  if (c.extra && sd::is_topk_family(c.act)) CHECK(b.l_aux > 0);
}

TEST_CASE("TopK and CPU BatchTopK masks equal the op path on distinct scores",
          "[dictionaries][dense]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  for (const auto type : {at::kFloat, at::kDouble}) {
    const at::Tensor s = at::randn({57, 300}, gen).to(type);
    for (const std::int64_t k : {1, 5, 150, 300}) {
      INFO("k " << k);
      const auto kernel = sd::activation_mask(sd::ActFn::kTopK, s, {}, k);
      const auto ops = sd::activation_mask(sd::ActFn::kTopK, s, {}, k, sd::SparseBackend::kOps);
      CHECK(at::equal(kernel, ops));
      const auto bk = sd::activation_mask(sd::ActFn::kBatchTopK, s, {}, k);
      const auto bops =
          sd::activation_mask(sd::ActFn::kBatchTopK, s, {}, k, sd::SparseBackend::kOps);
      CHECK(at::equal(bk, bops));
    }
  }
}

TEST_CASE("TopK radix select equals the op path on wide, sparse and spread rows",
          "[dictionaries][dense]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  for (const auto type : {at::kFloat, at::kDouble}) {
    INFO("dtype " << type);
    // wide rows (the threshold bin holds > 64 candidates: refinement levels), rows of which only a
    // few entries are positive, scores spread over ±40 octaves (level 1's far bin), tiny values
    const at::Tensor wide = at::randn({6, 20000}, gen).to(type) * 1e-3;
    const at::Tensor few = at::randn({40, 300}, gen).to(type) - 2.5;
    const at::Tensor spread = at::randn({40, 300}, gen).to(type) *
                              at::exp2(at::randint(-40, 40, {40, 300}, gen)).to(type);
    const at::Tensor tiny = at::randn({8, 300}, gen).to(type) * 1e-30;
    for (const auto& [name, s] : std::map<std::string, at::Tensor>{
             {"wide", wide}, {"few", few}, {"spread", spread}, {"tiny", tiny}}) {
      for (const std::int64_t k : {1, 7, 64, 150, 300}) {
        if (k > s.size(1)) continue;
        INFO(name << " k " << k);
        const auto kernel = sd::activation_mask(sd::ActFn::kTopK, s, {}, k);
        CHECK(at::equal(kernel,
                        sd::activation_mask(sd::ActFn::kTopK, s, {}, k, sd::SparseBackend::kOps)));
        // row_top_k: the same picks, k distinct columns per row, values = the scores there
        const auto [vals, idx] = sd::row_top_k(s, k);
        CHECK(at::equal(at::gather(s, 1, idx), vals));
        CHECK(std::get<0>(at::sort(idx, 1)).diff(1, 1).gt(0).all().item<bool>());
        at::Tensor picked = at::zeros_like(kernel);
        picked.scatter_(1, idx, vals.gt(0));
        CHECK(at::equal(picked, kernel));
        // the gated selection without forming h·scale
        const at::Tensor scale = at::rand({s.size(1)}, gen).to(type) * 3;
        CHECK(at::equal(
            sd::scaled_top_k_mask(s, scale, k),
            sd::activation_mask(sd::ActFn::kTopK, s * scale, {}, k, sd::SparseBackend::kOps)));
      }
    }
  }
  // no positive entry at all, and negative zero
  const at::Tensor neg = -at::rand({3, 50}).abs_();
  CHECK_FALSE(sd::activation_mask(sd::ActFn::kTopK, neg, {}, 5).any().item<bool>());
  CHECK_FALSE(
      sd::activation_mask(sd::ActFn::kTopK, at::full({2, 9}, -0.0f), {}, 3).any().item<bool>());
}

TEST_CASE("CPU TopK gives ties at the threshold to the lower column", "[dictionaries][dense]") {
  const at::Tensor s = at::tensor({1.0f, 2.0f, 2.0f, 0.5f, 2.0f, 2.0f, -1.0f, 3.0f}).view({1, 8});
  // k 3: the 3, then the first two 2s (columns 1, 2)
  CHECK(at::equal(sd::activation_mask(sd::ActFn::kTopK, s, {}, 3),
                  at::tensor({0, 1, 1, 0, 0, 0, 0, 1}).view({1, 8}).to(at::kBool)));
  const auto [vals, idx] = sd::row_top_k(s, 3);
  CHECK(at::equal(idx, at::tensor({1, 2, 7}, at::kLong).view({1, 3})));
  CHECK(at::equal(vals, at::tensor({2.0f, 2.0f, 3.0f}).view({1, 3})));
  // k 7 > the 6 positive entries: all of them, padded with the first unselected column (6)
  const auto [v7, i7] = sd::row_top_k(s, 7);
  CHECK(
      at::equal(i7, at::tensor({0, 1, 2, 3, 4, 5, 7, 6}, at::kLong).narrow(0, 0, 7).view({1, 7})));
  CHECK(at::equal(sd::activation_mask(sd::ActFn::kTopK, s, {}, 7), s > 0));
}

TEST_CASE("CPU BatchTopK gives ties at the threshold to the lower flat index",
          "[dictionaries][dense]") {
  const at::Tensor s =
      at::tensor({3.0f, 2.0f, 2.0f, 2.0f, -1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f}).view({2, 5});
  // BatchTopK over both rows with k·rows = 4: 3, then the 2s at flat 1, 2, 3
  const at::Tensor b4 = sd::batch_top_k_mask(s, 4);
  CHECK(at::equal(b4, at::tensor({1, 1, 1, 1, 0, 0, 0, 0, 0, 0}).view({2, 5}).to(at::kBool)));
  // k·rows = 6: everything above 1 and the first two 1s in flat order
  const at::Tensor b6 = sd::batch_top_k_mask(s, 6);
  CHECK(at::equal(b6, at::tensor({1, 1, 1, 1, 0, 1, 1, 0, 0, 0}).view({2, 5}).to(at::kBool)));
  // more than the positive entries: all positive ones
  CHECK(at::equal(sd::batch_top_k_mask(s, 20), s > 0));
}

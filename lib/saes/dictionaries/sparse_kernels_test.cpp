// The sparse kernels equal their dense matrix products (hand-written CPU kernels and the op-based
// path), and the SAE's sparse step equals its dense step in fp32 (values and every gradient to
// 1e-5 relative) for TopK, BatchTopK and ReLU with masks, Aux-K and decoder-norm gating.
#include "saes/dictionaries/sparse_kernels.h"

#include <map>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/dictionaries/sae.h"

namespace sd = saes::dictionaries;

namespace {

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  const double scale = b.to(at::kDouble).norm().item<double>();
  return (a.to(at::kDouble) - b.to(at::kDouble)).norm().item<double>() / (scale + 1e-30);
}

/// A random [n, m] matrix with about `density` of its entries non-zero (some rows empty).
at::Tensor random_sparse(std::int64_t n, std::int64_t m, double density, at::Generator& gen) {
  at::Tensor keep = at::rand({n, m}, gen) < density;
  keep.select(0, 1).zero_();
  return at::randn({n, m}, gen) * keep;
}

}  // namespace

TEST_CASE("sparse kernels equal the dense products on CPU kernels and on LibTorch ops",
          "[dictionaries][sparse]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const std::int64_t N = 37, S = 211, d = 45;  // odd sizes: vector tails, partial blocks
  const at::Tensor f = random_sparse(N, S, 0.05, gen);
  const at::Tensor W = at::randn({S, d}, gen), b = at::randn({d}, gen), G = at::randn({N, d}, gen);
  const sd::SparseActs a = sd::sparse_from_dense(f);
  REQUIRE(a.nnz() == at::count_nonzero(f).item<std::int64_t>());
  CHECK(at::equal(a.to_dense(), f));
  const auto backend = GENERATE(sd::SparseBackend::kAuto, sd::SparseBackend::kOps);
  INFO("backend " << static_cast<int>(backend));

  CHECK(rel_err(sd::sparse_decode(a, W, b, backend), at::addmm(b, f, W)) < 1e-6);
  CHECK(rel_err(sd::sparse_decode(a, W, {}, backend), at::mm(f, W)) < 1e-6);
  const at::Tensor dots = sd::sparse_row_dot(a, G, W, backend);
  const at::Tensor dense_dots =
      at::mm(G, W.t()).reshape({-1}).index_select(0, a.rows * S + a.indices);
  CHECK(rel_err(dots, dense_dots) < 1e-6);

  at::Tensor out = at::full({S, d}, 7.0);  // stale values must be overwritten
  sd::sparse_weight_grad(out, a.rows, a.indices, a.values, G, backend);
  CHECK(rel_err(out, at::mm(f.t(), G)) < 1e-6);
  at::Tensor out_t = at::full({d, S}, 7.0);  // the transposed layout of W_E's gradient
  sd::sparse_weight_grad(out_t.t(), a.rows, a.indices, a.values, G, backend);
  CHECK(rel_err(out_t, at::mm(G.t(), f)) < 1e-6);

  const sd::SparseActs t = sd::sparse_from_topk(at::tensor({2, 0, 1, 1}).view({2, 2}),
                                                at::tensor({1.f, 2.f, 3.f, 4.f}).view({2, 2}), 3);
  CHECK(at::equal(t.to_dense(), at::tensor({2.f, 0.f, 1.f, 0.f, 7.f, 0.f}).view({2, 3})));
}

namespace {

struct StepCase {
  sd::ActFn act;
  bool gating;
  bool masked;
  bool auxk;
  sd::SparsityPenalty penalty;
  bool dominant_token = false;  ///< one token's scores dwarf the others (BatchTopK fallback)
};

std::pair<sd::StepResult, std::map<std::string, at::Tensor>> run_step(const StepCase& c,
                                                                      sd::SparseKernels kernels) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 24;
  cfg.expansion_factor = 20.0;  // d_sae 480
  cfg.act_fn = c.act;
  cfg.top_k = 6;
  cfg.sparsity_include_decoder_norm = c.gating;
  cfg.norm_activation = sd::NormActivation::kBatchWise;
  cfg.hook_point_in = cfg.hook_point_out = "h";
  cfg.sparse_kernels = kernels;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  sd::SparseAutoEncoder sae(cfg);
  sae.init_parameters({0.3, 0.3, {}}, gen);
  for (auto& p : sae.parameters()) {
    if (p.name == "b_E") p.value.normal_(c.act == sd::ActFn::kRelu ? -1.2 : 0.0, 0.3, gen);
    if (p.name == "b_D") p.value.normal_(0, 0.1, gen);
  }
  const std::int64_t N = 50;
  const at::Tensor x = at::randn({N, 24}, gen);
  if (c.dominant_token) x[0].mul_(100.0);
  sd::TrainBatch batch = sd::single_hook_batch(cfg, x, x);
  if (c.masked) batch.mask = at::rand({N}, gen) > 0.3;
  sd::LossSettings ls;
  ls.sparsity = c.penalty;
  ls.l1_coefficient = 0.05;
  if (c.auxk) {
    ls.auxk_coefficient = 0.4;
    ls.k_aux = 16;
    batch.dead = at::rand({cfg.d_sae()}, gen) < 0.3;
  }
  sd::StepResult r = sae.forward_backward(batch, ls);
  std::map<std::string, at::Tensor> grads;
  for (auto& p : sae.parameters()) grads[p.name] = p.grad.clone();
  return {r, grads};
}

}  // namespace

TEST_CASE("the sparse training step equals the dense step in fp32", "[dictionaries][sparse]") {
  const StepCase c = GENERATE(
      StepCase{sd::ActFn::kTopK, true, false, false, sd::SparsityPenalty::kNone},
      StepCase{sd::ActFn::kTopK, true, true, true, sd::SparsityPenalty::kNone},
      StepCase{sd::ActFn::kTopK, false, true, true, sd::SparsityPenalty::kPower},
      StepCase{sd::ActFn::kBatchTopK, true, true, true, sd::SparsityPenalty::kTanh},
      StepCase{sd::ActFn::kBatchTopK, false, false, false, sd::SparsityPenalty::kTanhQuad},
      StepCase{sd::ActFn::kBatchTopK, true, false, false, sd::SparsityPenalty::kNone, true},
      StepCase{sd::ActFn::kRelu, true, true, false, sd::SparsityPenalty::kPower},
      StepCase{sd::ActFn::kRelu, false, false, false, sd::SparsityPenalty::kTanh});
  INFO("act " << static_cast<int>(c.act) << " gating " << c.gating << " masked " << c.masked
              << " auxk " << c.auxk << " penalty " << static_cast<int>(c.penalty));
  const auto [dense, dense_grads] = run_step(c, sd::SparseKernels::kOff);
  const auto [sparse, sparse_grads] = run_step(c, sd::SparseKernels::kOn);
  REQUIRE(sparse.sparse_feature_acts.defined());
  REQUIRE_FALSE(sparse.feature_acts.defined());
  REQUIRE(dense.feature_acts.defined());
  CHECK(sparse.loss == Approx(dense.loss).epsilon(1e-5));
  CHECK(sparse.l_rec == Approx(dense.l_rec).epsilon(1e-5));
  CHECK(sparse.l_sparsity == Approx(dense.l_sparsity).epsilon(1e-5).margin(1e-12));
  CHECK(sparse.l_aux == Approx(dense.l_aux).epsilon(1e-5).margin(1e-12));
  CHECK(sparse.l0 == Approx(dense.l0));
  CHECK(at::equal(sparse.fired, dense.fired));
  CHECK(rel_err(sparse.sparse_feature_acts.to_dense(), dense.feature_acts) < 1e-5);
  CHECK(rel_err(sparse.reconstructed, dense.reconstructed) < 1e-5);
  for (const auto& [name, g] : dense_grads) {
    INFO("gradient " << name);
    CHECK(rel_err(sparse_grads.at(name), g) < 1e-5);
  }
  if (c.auxk) CHECK(dense.l_aux > 0);
}

TEST_CASE("sparse_kernels auto picks the sparse step by measured density",
          "[dictionaries][sparse]") {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 8;
  cfg.expansion_factor = 8.0;  // d_sae 64
  cfg.act_fn = sd::ActFn::kTopK;
  cfg.top_k = 3;  // density 3/64 <= 0.05
  cfg.hook_point_in = cfg.hook_point_out = "h";
  const at::Tensor pre = at::ones({4, 64});
  CHECK(sd::SparseAutoEncoder(cfg).uses_sparse_step(pre, 3));
  CHECK_FALSE(sd::SparseAutoEncoder(cfg).uses_sparse_step(pre, 4));
  cfg.sparse_kernels = sd::SparseKernels::kOff;
  CHECK_FALSE(sd::SparseAutoEncoder(cfg).uses_sparse_step(pre, 3));
  cfg.act_fn = sd::ActFn::kRelu;
  cfg.sparse_kernels = sd::SparseKernels::kAuto;
  at::Tensor sparse_pre = -at::ones({4, 64});
  sparse_pre.index_put_({0, 0}, 1.0);
  CHECK(sd::SparseAutoEncoder(cfg).uses_sparse_step(sparse_pre, 0));
  CHECK_FALSE(sd::SparseAutoEncoder(cfg).uses_sparse_step(pre, 0));
  cfg.act_fn = sd::ActFn::kJumpRelu;
  cfg.sparse_kernels = sd::SparseKernels::kOn;
  CHECK_FALSE(sd::SparseAutoEncoder(cfg).uses_sparse_step(sparse_pre, 0));
}

TEST_CASE("decode gathers rows for sparse inputs and equals the dense product",
          "[dictionaries][sparse]") {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 16;
  cfg.expansion_factor = 16.0;
  cfg.hook_point_in = cfg.hook_point_out = "h";
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  sd::SparseAutoEncoder sae(cfg);
  sae.init_parameters({0.5, 0.5, {}}, gen);
  sae.parameters()[3].value.normal_(0, 1, gen);  // b_D
  const at::Tensor sparse_f = random_sparse(9, 256, 0.02, gen);
  const at::Tensor dense_f = at::randn({9, 256}, gen);
  CHECK(rel_err(sae.decode(sparse_f), at::addmm(sae.b_D(), sparse_f, sae.W_D())) < 1e-6);
  CHECK(rel_err(sae.decode(dense_f), at::addmm(sae.b_D(), dense_f, sae.W_D())) < 1e-6);
}

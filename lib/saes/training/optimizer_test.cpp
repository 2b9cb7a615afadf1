// Tests of Adam / SparseAdam against hand computations and torch.optim.Adam, and of clipping.
#include "saes/training/optimizer.h"

#include <chrono>
#include <cmath>
#include <map>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"

using saes::training::OptimizerClass;
using saes::training::Parameter;

namespace {

const std::vector<std::vector<double>> kGrads = {
    {0.5, -1.0, 0.0}, {0.1, 0.3, -2.0}, {-0.2, 0.0, 1.0}};

// torch.optim.Adam(lr=0.1, betas=(0.9, 0.999)) in float64 from p = [1, -2, 0.5] with kGrads
// (python3-torch 1.13).
const std::vector<std::vector<double>> kTorchAdam = {
    {0.900000002, -1.900000001, 0.5},
    {0.8196959063846518, -1.8572151424292265, 0.5744136818306456},
    {0.785260531835489, -1.8241423228510014, 0.597277719229747}};

std::vector<double> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

// Hand Adam (torch docs' algorithm) per element; `sparse` applies upstream's SparseAdam rules.
std::vector<double> hand_adam(bool sparse, double lr) {
  std::vector<double> p = {1.0, -2.0, 0.5}, m(3, 0.0), v(3, 0.0);
  int shared_step = 0;
  for (const auto& g : kGrads) {
    bool any = false;
    for (double x : g) any = any || x != 0.0;
    if (sparse && !any) continue;
    ++shared_step;
    for (int i = 0; i < 3; ++i) {
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      const int t = shared_step;
      const double bc1 = 1 - std::pow(0.9, t), bc2 = 1 - std::pow(0.999, t);
      if (sparse) {
        if (g[i] != 0.0) p[i] -= lr * std::sqrt(bc2) / bc1 * m[i] / (std::sqrt(v[i]) + 1e-8);
      } else {
        p[i] -= lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + 1e-8);
      }
    }
  }
  return p;
}

Parameter make_param(at::ScalarType dtype) {
  return {"W", at::tensor(std::vector<double>{1.0, -2.0, 0.5}).to(dtype), at::zeros({3}, dtype),
          1.0, true};
}

}  // namespace

TEST_CASE("Adam matches torch.optim.Adam step by step", "[training]") {
  for (auto dtype : {at::kDouble, at::kFloat}) {
    Parameter p = make_param(dtype);
    saes::training::Optimizer opt(OptimizerClass::kAdam, 0.1, {0.9, 0.999});
    for (std::size_t s = 0; s < kGrads.size(); ++s) {
      p.grad.copy_(at::tensor(kGrads[s]));
      opt.step({&p, 1});
      const auto got = to_vector(p.value);
      for (int i = 0; i < 3; ++i) CHECK(got[i] == Approx(kTorchAdam[s][i]).margin(1e-6));
    }
    const auto hand = hand_adam(false, 0.1);
    const auto got = to_vector(p.value);
    for (int i = 0; i < 3; ++i)
      CHECK(got[i] == Approx(hand[i]).margin(dtype == at::kDouble ? 1e-12 : 1e-6));
  }
}

TEST_CASE("lr_factor scales a parameter's step and set_lr changes the base lr", "[training]") {
  Parameter a = make_param(at::kDouble);
  Parameter b = make_param(at::kDouble);
  b.name = "theta";
  b.lr_factor = 0.5;
  saes::training::Optimizer opt(OptimizerClass::kAdam, 0.2, {0.9, 0.999});
  a.grad.fill_(1.0);
  b.grad.fill_(1.0);
  std::vector<Parameter> params = {a, b};
  opt.step(params);
  // The first Adam step moves each entry by lr·factor (m̂/√v̂ = 1).
  CHECK(to_vector(a.value)[0] == Approx(1.0 - 0.2).margin(1e-6));
  CHECK(to_vector(b.value)[0] == Approx(1.0 - 0.1).margin(1e-6));
}

TEST_CASE("SparseAdam skips zero gradients and counts steps per parameter", "[training]") {
  Parameter p = make_param(at::kDouble);
  saes::training::Optimizer opt(OptimizerClass::kSparseAdam, 0.1, {0.9, 0.999});
  for (const auto& g : kGrads) {
    p.grad.copy_(at::tensor(g));
    opt.step({&p, 1});
  }
  const auto hand = hand_adam(true, 0.1);
  const auto got = to_vector(p.value);
  for (int i = 0; i < 3; ++i) CHECK(got[i] == Approx(hand[i]).margin(1e-12));
  p.grad.zero_();
  opt.step({&p, 1});
  CHECK(to_vector(p.value) == got);
  const auto state = opt.state_tensors();
  REQUIRE(state.size() == 3);
  CHECK(state[2].first == "W.step");
  CHECK(state[2].second.item<std::int64_t>() == 3);
}

TEST_CASE("clip_grad_norm scales clip-flagged grads to the global L2 norm", "[training]") {
  // a: feature-sharded (the other ranks hold the rest of it), b: held whole by every rank
  Parameter a{"a", at::zeros({2}), at::tensor(std::vector<float>{3.0f, 0.0f}), 1.0, true, true};
  Parameter b{"b", at::zeros({1}), at::tensor(std::vector<float>{4.0f}), 1.0, true};
  Parameter theta{"theta", at::zeros({1}), at::tensor(std::vector<float>{100.0f}), 1.0, false};
  std::vector<Parameter> params = {a, b, theta};
  CHECK(saes::training::grad_norm(params) == Approx(5.0));
  double reduced_input = 0.0;
  const double norm = saes::training::clip_grad_norm(params, 1.0, [&](double s) {
    reduced_input = s;
    return 4.0 * s;  // as if four ranks held equal shards of a
  });
  CHECK(reduced_input == Approx(9.0));  // only the sharded part goes through the reduction
  const double expected = std::sqrt(4.0 * 9.0 + 16.0);  // b counted once
  CHECK(norm == Approx(expected));
  CHECK(a.grad[0].item<float>() == Approx(3.0 / expected).margin(1e-6));
  CHECK(b.grad[0].item<float>() == Approx(4.0 / expected).margin(1e-6));
  CHECK(theta.grad[0].item<float>() == 100.0f);
  const double local = std::sqrt(25.0) / expected;
  CHECK(saes::training::clip_grad_norm(params, 0.0) == Approx(local).margin(1e-6));
  CHECK(a.grad[0].item<float>() == Approx(3.0 / expected).margin(1e-6));
}

TEST_CASE("grad_norm sums each sharding class over the groups that hold its other shards",
          "[training]") {
  // f: split by feature, h: by head, fh: both, w: whole (crosscoder head × model parallelism)
  Parameter f{"f", at::zeros({1}), at::full({1}, 1.0f), 1.0, true, true, false};
  Parameter h{"h", at::zeros({1}), at::full({1}, 2.0f), 1.0, true, false, true};
  Parameter fh{"fh", at::zeros({1}), at::full({1}, 3.0f), 1.0, true, true, true};
  Parameter w{"w", at::zeros({1}), at::full({1}, 4.0f), 1.0, true, false, false};
  std::vector<double> model_inputs, head_inputs;
  const auto model = [&](double s) {
    model_inputs.push_back(s);
    return 2.0 * s;  // two model ranks with equal shards
  };
  const auto head = [&](double s) {
    head_inputs.push_back(s);
    return 3.0 * s;  // three head ranks
  };
  std::vector<Parameter> params = {f, h, fh, w};
  const double norm = saes::training::grad_norm(params, model, head);
  CHECK(norm == Approx(std::sqrt(2.0 * 1 + 3.0 * 4 + 6.0 * 9 + 16)));
  CHECK(model_inputs == std::vector<double>{1.0, 9.0});
  CHECK(head_inputs == std::vector<double>{4.0, 18.0});
  std::vector<Parameter> whole_only = {w};
  model_inputs.clear();
  head_inputs.clear();
  CHECK(saes::training::grad_norm(whole_only, model, head) == Approx(4.0));
  CHECK(model_inputs.empty());  // no class without parameters is reduced
  CHECK(head_inputs.empty());
}

TEST_CASE("optimizer state round-trips through tensors", "[training]") {
  Parameter p1 = make_param(at::kFloat);
  Parameter p2 = make_param(at::kFloat);
  saes::training::Optimizer first(OptimizerClass::kAdam, 0.1, {0.9, 0.999});
  p1.grad.copy_(at::tensor(kGrads[0]));
  first.step({&p1, 1});
  p2.value.copy_(p1.value);
  std::map<std::string, at::Tensor> saved;
  for (auto& [name, t] : first.state_tensors()) saved[name] = t.clone();
  saes::training::Optimizer second(OptimizerClass::kAdam, 0.1, {0.9, 0.999});
  second.load_state(saved);
  p1.grad.copy_(at::tensor(kGrads[1]));
  p2.grad.copy_(at::tensor(kGrads[1]));
  first.step({&p1, 1});
  second.step({&p2, 1});
  CHECK(at::equal(p1.value, p2.value));
  saved.erase("W.exp_avg");
  CHECK_THROWS_AS(second.load_state(saved), saes::DataError);
}

TEST_CASE("the fused CPU Adam equals the tensor-op Adam", "[training]") {
  at::manual_seed(3);
  const at::Tensor start = at::randn({64, 48});
  // A transposed (non-contiguous) copy takes the tensor-op path.
  Parameter fused{"W", start.clone(), at::zeros({64, 48}), 1.0, true};
  Parameter ops{"W", start.t().contiguous().t(), at::zeros({48, 64}).t(), 1.0, true};
  REQUIRE_FALSE(ops.value.is_contiguous());
  saes::training::Optimizer a(OptimizerClass::kAdam, 1e-2, {0.9, 0.999});
  saes::training::Optimizer b(OptimizerClass::kAdam, 1e-2, {0.9, 0.999});
  for (int step = 0; step < 5; ++step) {
    const at::Tensor g = at::randn({64, 48});
    fused.grad.copy_(g);
    ops.grad.copy_(g);
    a.step({&fused, 1});
    b.step({&ops, 1});
  }
  CHECK(at::allclose(fused.value, ops.value, 1e-6, 1e-6));
}

TEST_CASE("Adam step timing at d_model 768, d_sae 24576 (fused vs tensor ops)",
          "[.][training-bench]") {
  const std::int64_t d = 768, n = 24576;
  std::vector<Parameter> params = {{"W_E", at::randn({d, n}), at::randn({d, n}), 1.0, true},
                                   {"W_D", at::randn({n, d}), at::randn({n, d}), 1.0, true}};
  const auto seconds = [](const auto& body) {
    body();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) body();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 5;
  };
  saes::training::Optimizer opt(OptimizerClass::kAdam, 1e-4, {0.9, 0.999});
  const double fused = seconds([&] { opt.step(params); });
  // torch.optim.Adam's single-tensor operations on the same (contiguous) tensors.
  std::vector<at::Tensor> m, v;
  for (const auto& p : params) {
    m.push_back(at::zeros_like(p.value));
    v.push_back(at::zeros_like(p.value));
  }
  const double ops = seconds([&] {
    for (std::size_t i = 0; i < params.size(); ++i) {
      m[i].mul_(0.9).add_(params[i].grad, 0.1);
      v[i].mul_(0.999).addcmul_(params[i].grad, params[i].grad, 0.001);
      const at::Tensor denom = (v[i].sqrt() / 0.5).add_(1e-8);
      params[i].value.addcdiv_(m[i], denom, -1e-4);
    }
  });
  WARN("Adam step, " << at::get_num_threads() << " threads: fused " << fused << " s, tensor ops "
                     << ops << " s");
}

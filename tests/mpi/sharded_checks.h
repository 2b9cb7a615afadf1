// Comparisons of a feature-sharded dictionary's results with the whole dictionary's, shared by
// the feature-parallel MPI tests: one relative tolerance (the sums over features are added in
// another order, partial sums per rank) and a seeded float32 randn.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/dictionaries/sparse_dictionary.h"

namespace saes::testing {

inline at::Tensor seeded_randn(std::vector<std::int64_t> shape, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen, at::kFloat);
}

/// max |got − want| relative to max |want| below 1e-5 (float32; the test's sums are short).
inline void check_sharded_close(const at::Tensor& got, const at::Tensor& want,
                                const std::string& what) {
  const double scale = std::max(want.abs().max().item<double>(), 1e-6);
  const double diff = (got - want).abs().max().item<double>() / scale;
  INFO(what << ": relative max |diff| " << diff);
  CHECK(diff < 1e-5);
}

inline void check_sharded_close(double got, double want, const std::string& what) {
  INFO(what << ": " << got << " vs " << want);
  CHECK(std::abs(got - want) <= 1e-5 * std::max(std::abs(want), 1e-3));
}

/// A sharded step's result `b` against the whole dictionary's `a`: the same losses, L0 and x̂
/// (each variant's test adds its own terms: l_p, l_aux, fired counts, gradients).
inline void check_sharded_result(const dictionaries::StepResult& b,
                                 const dictionaries::StepResult& a) {
  check_sharded_close(b.loss, a.loss, "loss");
  check_sharded_close(b.l_rec, a.l_rec, "l_rec");
  check_sharded_close(b.l_sparsity, a.l_sparsity, "l_sparsity");
  CHECK(b.l0 == Approx(a.l0).epsilon(1e-9));
  check_sharded_close(b.reconstructed, a.reconstructed, "x_hat");
}

/// Each of the sharded dictionary's gradients is its features' (and heads') slice of the whole
/// one's (the parameters without a feature dim: equal).
template <class Dictionary>
void check_sharded_grads(Dictionary& whole, Dictionary& part) {
  auto wp = whole.parameters();
  auto pp = part.parameters();
  REQUIRE(wp.size() == pp.size());
  for (std::size_t i = 0; i < wp.size(); ++i) {
    const at::Tensor want = part.local_parameter(pp[i], wp[i].grad);
    check_sharded_close(pp[i].grad, want, "grad " + pp[i].name);
  }
}

/// The whole dictionary's parameters copied into its sharded copy (each rank its features' slice,
/// the unsharded tensors whole).
template <class Dictionary>
void copy_to_shards(Dictionary& whole, Dictionary& part) {
  auto wp = whole.parameters();
  auto pp = part.parameters();
  REQUIRE(wp.size() == pp.size());
  for (std::size_t i = 0; i < wp.size(); ++i) {
    pp[i].value.copy_(part.local_parameter(pp[i], wp[i].value));
  }
}

/// copy_to_shards, then dataset norm `norm` for every hook of both dictionaries.
template <class Dictionary>
void copy_to_shards(Dictionary& whole, Dictionary& part, double norm) {
  copy_to_shards(whole, part);
  for (const auto& h : whole.hook_points()) {
    whole.set_dataset_norm(h, norm);
    part.set_dataset_norm(h, norm);
  }
}

/// Each of the sharded dictionary's parameters is within `tol` of its slice of the whole one's
/// (0: equal), e.g. after the same seeded init on both.
template <class Dictionary>
void check_sharded_values(Dictionary& whole, Dictionary& part, double tol = 0.0) {
  auto wp = whole.parameters();
  auto pp = part.parameters();
  REQUIRE(wp.size() == pp.size());
  for (std::size_t i = 0; i < wp.size(); ++i) {
    INFO(wp[i].name);
    const at::Tensor want = part.local_parameter(pp[i], wp[i].value);
    const double diff = (pp[i].value - want).abs().max().template item<double>();
    CHECK(diff <= tol);
  }
}

}  // namespace saes::testing

// FeatureAnalyzer against brute force on random sparse activations: statistics, top contexts,
// band ceilings, stored sparse values, merge and the memory bound.
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include <ATen/ATen.h>

#include "saes/analysis/feature_analyzer.h"
#include "saes/core/error.h"

namespace {

using saes::analysis::AnalyzerOptions;
using saes::analysis::FeatureAnalyzer;

constexpr std::int64_t kB = 6, kT = 12, kD = 20;

struct Batch {
  at::Tensor f, tokens, mask;
};

std::vector<Batch> make_batches(int n, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<Batch> out;
  for (int i = 0; i < n; ++i) {
    at::Tensor f = at::relu(at::randn({kB, kT, kD}, gen) - 1.0) * at::rand({1, 1, kD}, gen) * 4;
    at::Tensor tokens = at::randint(0, 50, {kB, kT}, gen);
    at::Tensor mask = at::ones({kB, kT}, at::kBool);
    mask.index_put_({0, at::indexing::Slice(8, kT)}, false);  // a padded context
    out.push_back({f, tokens, mask});
  }
  return out;
}

AnalyzerOptions options() {
  AnalyzerOptions o;
  o.bands = {{"non_activating", 0.3, 5, 0}, {"top", 1.0, 4, 0}};
  return o;
}

/// [n_contexts, d] peaks and the per-feature statistics of all batches, masked.
struct Brute {
  at::Tensor peaks, max, count, sum;
};

Brute brute(const std::vector<Batch>& batches) {
  std::vector<at::Tensor> fs;
  for (const auto& b : batches) fs.push_back(b.f * b.mask.unsqueeze(-1));
  const at::Tensor f = at::cat(fs);
  return {f.amax({1}), f.amax({0, 1}), f.gt(0).sum(at::IntArrayRef{0, 1}), f.sum(at::IntArrayRef{0, 1}, false, at::kDouble)};
}

}  // namespace

TEST_CASE("analyzer statistics equal a brute-force pass", "[analysis]") {
  const auto batches = make_batches(5, 1);
  FeatureAnalyzer a(kD, options());
  for (const auto& b : batches) a.add_batch(b.f, b.tokens, b.mask);
  const auto stats = a.finish();
  const Brute ref = brute(batches);
  REQUIRE(a.n_contexts() == 5 * kB);
  REQUIRE(a.n_analyzed_tokens() == 5 * (kB * kT - (kT - 8)));
  for (std::int64_t i = 0; i < kD; ++i) {
    const auto& s = stats[static_cast<std::size_t>(i)];
    CHECK(s.max_act == Approx(ref.max[i].item<double>()));
    CHECK(s.act_times == ref.count[i].item<std::int64_t>());
    const double mean = s.act_times > 0 ? ref.sum[i].item<double>() / s.act_times : 0.0;
    CHECK(s.mean_act == Approx(mean));
    std::int64_t hist = 0;
    for (auto h : s.histogram) hist += h;
    CHECK(hist == s.act_times);
  }
}

TEST_CASE("analyzer top contexts are the highest-peak contexts with their sparse values",
          "[analysis]") {
  const auto batches = make_batches(5, 2);
  FeatureAnalyzer a(kD, options());
  for (const auto& b : batches) a.add_batch(b.f, b.tokens, b.mask);
  const auto stats = a.finish();
  const Brute ref = brute(batches);
  std::vector<at::Tensor> all_f, all_tok;
  for (const auto& b : batches) {
    all_f.push_back(b.f * b.mask.unsqueeze(-1));
    all_tok.push_back(b.tokens);
  }
  const at::Tensor f = at::cat(all_f);
  const at::Tensor tok = at::cat(all_tok);
  for (std::int64_t i = 0; i < kD; ++i) {
    const auto sorted = std::get<0>(ref.peaks.select(1, i).sort(0, true));
    const auto& top = stats[static_cast<std::size_t>(i)].samples[1];
    std::int64_t positive = sorted.gt(0).sum().item<std::int64_t>();
    REQUIRE(static_cast<std::int64_t>(top.size()) == std::min<std::int64_t>(4, positive));
    for (std::size_t k = 0; k < top.size(); ++k) {
      CHECK(top[k].score == Approx(sorted[static_cast<std::int64_t>(k)].item<float>()));
      const std::int64_t c = top[k].provenance.context_index;
      CHECK(top[k].score == Approx(ref.peaks[c][i].item<float>()));
      for (std::size_t j = 0; j < top[k].positions.size(); ++j) {
        const std::int64_t t = top[k].positions[j];
        CHECK(top[k].values[j] == f[c][t][i].item<float>());
      }
      CHECK(top[k].tokens.size() == (c == 0 || c % kB == 0 ? 8U : static_cast<std::size_t>(kT)));
      CHECK(top[k].tokens[0] == tok[c][0].item<std::int64_t>());
    }
  }
}

TEST_CASE("analyzer bands respect their ceilings", "[analysis]") {
  const auto batches = make_batches(6, 3);
  FeatureAnalyzer a(kD, options());
  for (const auto& b : batches) a.add_batch(b.f, b.tokens, b.mask);
  for (const auto& s : a.finish()) {
    REQUIRE(s.samples[0].size() <= 5);
    for (const auto& c : s.samples[0]) CHECK(c.score <= 0.3 * s.max_act + 1e-6);
    for (const auto& c : s.samples[1]) CHECK(c.score > 0);
    for (std::size_t k = 1; k < s.samples[0].size(); ++k) {
      CHECK(s.samples[0][k - 1].score >= s.samples[0][k].score);
    }
  }
}

TEST_CASE("analyzer max_length crops around the peak", "[analysis]") {
  const auto batches = make_batches(2, 4);
  AnalyzerOptions o;
  o.bands = {{"top", 1.0, 3, 4}};
  FeatureAnalyzer a(kD, o);
  for (const auto& b : batches) a.add_batch(b.f, b.tokens, b.mask);
  for (const auto& s : a.finish()) {
    for (const auto& c : s.samples[0]) {
      CHECK(c.tokens.size() <= 4);
      const auto best = std::max_element(c.values.begin(), c.values.end());
      REQUIRE(best != c.values.end());
      CHECK(*best == c.score);
    }
  }
}

TEST_CASE("analyzer merge of two halves equals one pass", "[analysis]") {
  const auto batches = make_batches(6, 5);
  FeatureAnalyzer whole(kD, options());
  AnalyzerOptions o1 = options();
  o1.rank = 1;
  FeatureAnalyzer first(kD, options());
  FeatureAnalyzer second(kD, o1);
  for (std::size_t i = 0; i < batches.size(); ++i) {
    whole.add_batch(batches[i].f, batches[i].tokens, batches[i].mask);
    (i % 2 == 0 ? first : second).add_batch(batches[i].f, batches[i].tokens, batches[i].mask);
  }
  first.merge(second);
  const auto a = whole.finish();
  const auto b = first.finish();
  CHECK(first.n_analyzed_tokens() == whole.n_analyzed_tokens());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].act_times == b[i].act_times);
    CHECK(a[i].max_act == b[i].max_act);
    CHECK(a[i].histogram == b[i].histogram);
    REQUIRE(a[i].samples[1].size() == b[i].samples[1].size());
    for (std::size_t k = 0; k < a[i].samples[1].size(); ++k) {
      CHECK(a[i].samples[1][k].score == b[i].samples[1][k].score);
    }
  }
  FeatureAnalyzer other(kD + 1, options());
  CHECK_THROWS_AS(first.merge(other), saes::DataError);
}

TEST_CASE("analyzer memory does not grow with the token budget", "[analysis]") {
  const auto batches = make_batches(40, 6);
  FeatureAnalyzer a(kD, options());
  for (std::size_t i = 0; i < 10; ++i) a.add_batch(batches[i].f, batches[i].tokens, batches[i].mask);
  const std::int64_t after10 = a.memory_bytes();
  for (std::size_t i = 10; i < 40; ++i) a.add_batch(batches[i].f, batches[i].tokens, batches[i].mask);
  // Heaps are full after 10 batches; later pushes replace entries of the same maximal size.
  // Bound: (heap capacity ≤ 2·n_samples) × (entry + 3 arrays of ≤ 2·T 4-byte values) + stats.
  const std::int64_t entry =
      static_cast<std::int64_t>(sizeof(saes::analysis::SampledContext)) + 3 * 4 * 2 * kT;
  const std::int64_t bound = kD * 2 * (5 + 4) * entry + kD * 8 * (3 + 60) + 2 * kD * 64;
  CHECK(a.memory_bytes() <= bound);
  CHECK(after10 <= bound);
}

TEST_CASE("analyzer ignores masked and ignored tokens", "[analysis]") {
  AnalyzerOptions o = options();
  o.ignore_token_ids = {7};
  FeatureAnalyzer a(2, o);
  const at::Tensor f = at::ones({1, 3, 2});
  const at::Tensor tokens = at::tensor({7, 8, 9}, at::kLong).view({1, 3});
  at::Tensor mask = at::ones({1, 3}, at::kBool);
  mask[0][2] = false;
  a.add_batch(f, tokens, mask);
  const auto s = a.finish();
  CHECK(s[0].act_times == 1);
  CHECK(a.n_analyzed_tokens() == 1);
  CHECK_THROWS_AS(a.add_batch(at::ones({1, 3, 5}), tokens, mask), saes::DataError);
}

// Lorsa against a plain formula implementation written from spec §2.6 (float64 loops over every
// batch, position and head): the attention patterns and z with both RoPE layouts, NTK-by-parts
// frequencies, QK-norm, GQA grouping and a padding mask; the TopK/JumpReLU features with gating;
// the training step's loss against the formula and its gradients against central differences;
// padding never counted; the checkpoint's names, shapes and buffers; the exact fold.
#include "saes/dictionaries/lorsa.h"

#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/dictionaries/registry.h"
#include "saes/io/safetensors.h"
#include "support/temp_dir.h"

namespace sd = saes::dictionaries;

namespace {

constexpr std::int64_t kB = 2, kT = 5, kD = 6, kH = 2, kDqk = 4, kS = 6;  // 3 OV heads per QK

sd::SparseDictionaryConfig lorsa_cfg(bool adjacent, bool qk_norm, sd::ActFn act = sd::ActFn::kTopK) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kLorsa;
  cfg.d_model = kD;
  cfg.expansion_factor = static_cast<double>(kS) / kD;
  cfg.act_fn = act;
  cfg.top_k = 2;
  cfg.hook_point_in = "blocks.0.ln1.hook_normalized";
  cfg.hook_point_out = "blocks.0.hook_attn_out";
  cfg.n_qk_heads = kH;
  cfg.d_qk_head = kDqk;
  cfg.rotary_dim = 4;
  cfg.rotary_base = 100.0;
  cfg.rotary_adjacent_pairs = adjacent;
  cfg.n_ctx = 8;
  cfg.use_post_qk_ln = qk_norm;
  if (qk_norm) cfg.normalization_type = "RMS";
  cfg.jumprelu_threshold_window = 0.5;
  cfg.dtype = saes::DType::kFloat64;
  return cfg;
}

sd::LowRankSparseAttention random_lorsa(const sd::SparseDictionaryConfig& cfg, std::uint64_t seed) {
  sd::LowRankSparseAttention l(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  l.init_parameters({1.0, 1.0, std::log(0.05)}, gen);
  for (auto& p : l.parameters()) {
    if (p.name == "b_Q" || p.name == "b_K" || p.name == "b_V" || p.name == "b_D")
      p.value.normal_(0.0, 0.3, gen);
    if (p.name == "ln_q.w" || p.name == "ln_k.w") p.value.normal_(1.0, 0.3, gen);
    if (p.name == "W_O") p.value.mul_(at::rand({kS, 1}, gen, p.value.options()) + 0.5);
    if (p.name == "W_Q" || p.name == "W_K") p.value.mul_(3.0);
  }
  l.set_dataset_norm(cfg.hook_point_in, 1.7);
  l.set_dataset_norm(cfg.hook_point_out, 0.6);
  return l;
}

at::Tensor randn(at::IntArrayRef shape, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kDouble));
}

/// The rotary frequency ω_j of the spec (NTK-by-parts as Llama 3 when enabled).
double omega(const sd::SparseDictionaryConfig& c, std::int64_t j) {
  double w = std::pow(c.rotary_base, -2.0 * static_cast<double>(j) / static_cast<double>(c.rotary_dim));
  if (!c.use_NTK_by_parts_rope) return w;
  const double wavelen = 2.0 * std::acos(-1.0) / w, old = static_cast<double>(c.old_context_len);
  const double lo = c.NTK_by_parts_low_freq_factor, hi = c.NTK_by_parts_high_freq_factor;
  if (wavelen < old / hi) return w;
  if (wavelen > old / lo) return w / c.NTK_by_parts_factor;
  const double smooth = (old / wavelen - lo) / (hi - lo);
  return (1 - smooth) * w / c.NTK_by_parts_factor + smooth * w;
}

/// q or k of (b, t, h) by the formula: x·W + b, RMS-norm × weight, then RoPE at position t.
std::vector<double> qk(const sd::SparseDictionaryConfig& c, const at::Tensor& x, const at::Tensor& W,
                       const at::Tensor& bias, const at::Tensor& ln, std::int64_t b, std::int64_t t,
                       std::int64_t h) {
  std::vector<double> v(kDqk);
  for (std::int64_t e = 0; e < kDqk; ++e) {
    double s = bias[h][e].item<double>();
    for (std::int64_t i = 0; i < kD; ++i) s += x[b][t][i].item<double>() * W[h][i][e].item<double>();
    v[e] = s;
  }
  if (ln.defined()) {
    double ms = 0;
    for (double a : v) ms += a * a;
    ms /= kDqk;
    for (std::int64_t e = 0; e < kDqk; ++e) v[e] = v[e] / std::sqrt(ms + c.eps) * ln[h][e].item<double>();
  }
  if (c.positional_embedding_type == "rotary") {
    const std::int64_t half = c.rotary_dim / 2;
    std::vector<double> r = v;
    for (std::int64_t j = 0; j < half; ++j) {
      const double a = static_cast<double>(t) * omega(c, j);
      const std::int64_t i0 = c.rotary_adjacent_pairs ? 2 * j : j;
      const std::int64_t i1 = c.rotary_adjacent_pairs ? 2 * j + 1 : j + half;
      r[i0] = v[i0] * std::cos(a) - v[i1] * std::sin(a);
      r[i1] = v[i1] * std::cos(a) + v[i0] * std::sin(a);
    }
    v = r;
  }
  return v;
}

struct Reference {
  at::Tensor A;  ///< [B, H, T, T]
  at::Tensor z;  ///< [B, T, S]
};

/// Patterns and z by the formula; `mask` [B, T] (1 = real) or undefined.
Reference reference(const sd::LowRankSparseAttention& l, const at::Tensor& x, const at::Tensor& mask) {
  const auto& c = l.config();
  Reference out{at::zeros({kB, kH, kT, kT}, at::kDouble), at::zeros({kB, kT, kS}, at::kDouble)};
  const double scale = std::sqrt(static_cast<double>(kDqk));
  for (std::int64_t b = 0; b < kB; ++b) {
    for (std::int64_t h = 0; h < kH; ++h) {
      for (std::int64_t q = 0; q < kT; ++q) {
        const auto qv = qk(c, x, l.W_Q(), l.b_Q(), l.ln_q(), b, q, h);
        std::vector<double> s(kT, -INFINITY);
        double mx = -INFINITY;
        for (std::int64_t k = 0; k <= q; ++k) {
          const bool real = !mask.defined() || mask[b][k].item<double>() != 0 || k == q;
          if (!real) continue;
          const auto kv = qk(c, x, l.W_K(), l.b_K(), l.ln_k(), b, k, h);
          double dot = 0;
          for (std::int64_t e = 0; e < kDqk; ++e) dot += qv[e] * kv[e];
          s[k] = dot / scale;
          mx = std::max(mx, s[k]);
        }
        double den = 0;
        for (std::int64_t k = 0; k < kT; ++k) den += std::isinf(s[k]) ? 0 : std::exp(s[k] - mx);
        for (std::int64_t k = 0; k < kT; ++k) {
          out.A[b][h][q][k] = std::isinf(s[k]) ? 0.0 : std::exp(s[k] - mx) / den;
        }
      }
    }
    for (std::int64_t i = 0; i < kS; ++i) {
      const std::int64_t g = i / (kS / kH);
      for (std::int64_t q = 0; q < kT; ++q) {
        double z = 0;
        for (std::int64_t k = 0; k < kT; ++k) {
          double v = l.b_V()[i].item<double>();
          for (std::int64_t d = 0; d < kD; ++d) v += x[b][k][d].item<double>() * l.W_V()[i][d].item<double>();
          z += out.A[b][g][q][k].item<double>() * v;
        }
        out.z[b][q][i] = z;
      }
    }
  }
  return out;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

/// Every parameter's gradient from the last forward_backward of `l` against central differences
/// of the step's loss at three entries (float64; the JumpReLU threshold's gradient is the
/// straight-through estimate, not a derivative: skipped).
void check_central_differences(sd::LowRankSparseAttention& l, const sd::TrainBatch& batch,
                               const sd::LossSettings& ls) {
  for (auto& p : l.parameters()) {
    if (p.group == sd::ParamGroup::kJumpRelu) continue;
    const at::Tensor flat = p.value.view({-1}), grad = p.grad.clone().view({-1});
    for (const std::int64_t i : {std::int64_t{0}, flat.numel() / 2, flat.numel() - 1}) {
      const double keep = flat[i].item<double>(), hstep = 1e-6;
      flat[i] = keep + hstep;
      const double up = l.forward_backward(batch, ls).loss;
      flat[i] = keep - hstep;
      const double down = l.forward_backward(batch, ls).loss;
      flat[i] = keep;
      INFO(p.name << "[" << i << "]");
      CHECK(grad[i].item<double>() == Approx((up - down) / (2 * hstep)).margin(1e-6));
    }
  }
}

}  // namespace

TEST_CASE("lorsa attention and z equal the formula: RoPE layouts, QK-norm, GQA, padding", "[lorsa]") {
  const at::Tensor pad = at::tensor({0., 0., 1., 1., 1., 1., 1., 1., 1., 1.}, at::kDouble).view({kB, kT});
  for (const bool adjacent : {true, false}) {
    for (const bool qk_norm : {false, true}) {
      for (const bool ntk : {false, true}) {
        DYNAMIC_SECTION("adjacent " << adjacent << " qk_norm " << qk_norm << " ntk " << ntk) {
          auto c = lorsa_cfg(adjacent, qk_norm);
          if (ntk) {  // frequencies in every NTK-by-parts band at this base and context
            c.use_NTK_by_parts_rope = true;
            c.NTK_by_parts_factor = 4.0;
            c.NTK_by_parts_low_freq_factor = 1.0;
            c.NTK_by_parts_high_freq_factor = 4.0;
            c.old_context_len = 40;
          }
          const auto l = random_lorsa(c, 3);
          const at::Tensor x = randn({kB, kT, kD}, 5);
          const Reference ref = reference(l, x, pad);
          CHECK(max_diff(l.attention_pattern(x, pad), ref.A) < 1e-12);
          const Reference plain = reference(l, x, at::Tensor());
          CHECK(max_diff(l.attention_pattern(x), plain.A) < 1e-12);
          CHECK(max_diff(l.hidden_pre(x), plain.z) < 1e-12);
          // the z-pattern of a head sums over keys to its z
          CHECK(max_diff(l.z_pattern(x, 4).sum(-1), plain.z.select(2, 4)) < 1e-12);
        }
      }
    }
  }
  auto none = lorsa_cfg(true, false);
  none.positional_embedding_type = "none";
  const auto l = random_lorsa(none, 4);
  const at::Tensor x = randn({kB, kT, kD}, 6);
  CHECK(max_diff(l.hidden_pre(x), reference(l, x, at::Tensor()).z) < 1e-12);
}

TEST_CASE("lorsa features: TopK and JumpReLU with decoder-norm gating, decode", "[lorsa]") {
  for (const auto act : {sd::ActFn::kTopK, sd::ActFn::kJumpRelu, sd::ActFn::kRelu}) {
    const auto l = random_lorsa(lorsa_cfg(true, false, act), 7);
    const at::Tensor x = randn({kB, kT, kD}, 8);
    const at::Tensor z = reference(l, x, at::Tensor()).z;
    const at::Tensor n = l.W_O().norm(2, 1);
    const at::Tensor s = z * n;
    at::Tensor want = at::zeros_like(z);
    for (std::int64_t b = 0; b < kB; ++b) {
      for (std::int64_t t = 0; t < kT; ++t) {
        const at::Tensor row = s[b][t];
        for (std::int64_t i = 0; i < kS; ++i) {
          bool on = false;
          if (act == sd::ActFn::kRelu) {
            on = z[b][t][i].item<double>() > 0;
          } else if (act == sd::ActFn::kJumpRelu) {
            on = row[i].item<double>() > std::exp(l.log_jumprelu_threshold()[i].item<double>());
          } else {  // among the 2 largest positive scores of the token
            int above = 0;
            for (std::int64_t j = 0; j < kS; ++j) above += row[j].item<double>() > row[i].item<double>();
            on = row[i].item<double>() > 0 && above < 2;
          }
          if (on) want[b][t][i] = z[b][t][i];
        }
      }
    }
    const at::Tensor f = l.encode(x);
    CHECK(max_diff(f, want) < 1e-12);
    CHECK(max_diff(l.decode(f), at::matmul(want, l.W_O()) + l.b_D()) < 1e-12);
  }
}

TEST_CASE("lorsa training step: loss by the formula, gradients by central differences", "[lorsa]") {
  for (const auto act : {sd::ActFn::kRelu, sd::ActFn::kJumpRelu}) {
    for (const bool qk_norm : {false, true}) {
      DYNAMIC_SECTION("act " << static_cast<int>(act) << " qk_norm " << qk_norm) {
        auto c = lorsa_cfg(false, qk_norm, act);
        c.norm_activation = sd::NormActivation::kInference;
        auto l = random_lorsa(c, 11);
        sd::TrainBatch batch;
        batch.acts[c.hook_point_in] = randn({kB, kT, kD}, 12);
        batch.acts[c.hook_point_out] = randn({kB, kT, kD}, 13);
        batch.mask = at::tensor({1., 1., 1., 1., 1., 0., 0., 1., 1., 1.}, at::kDouble);
        sd::LossSettings ls;
        ls.sparsity = sd::SparsityPenalty::kTanh;
        ls.l1_coefficient = 0.3;
        ls.lp_coefficient = act == sd::ActFn::kJumpRelu ? 0.2 : 0.0;
        const sd::StepResult r = l.forward_backward(batch, ls);
        // the loss by the formula over the 8 real tokens
        const at::Tensor m = batch.mask.view({kB, kT});
        const at::Tensor z = reference(l, batch.acts[c.hook_point_in], m).z.reshape({-1, kS});
        const at::Tensor n = l.W_O().norm(2, 1);
        const at::Tensor on = act == sd::ActFn::kRelu
                                  ? z.gt(0)
                                  : (z * n).gt(l.log_jumprelu_threshold().exp());
        const at::Tensor f = z * on * batch.mask.unsqueeze(1);
        const at::Tensor xhat = at::matmul(f, l.W_O()) + l.b_D();
        const at::Tensor e = (xhat - batch.acts[c.hook_point_out].reshape({-1, kD})).pow(2).sum(1);
        const at::Tensor w = batch.mask / 8.0;
        double want = (e * w).sum().item<double>() +
                      0.3 * (at::tanh(f * n * 4.0).sum(1) * w).sum().item<double>();
        if (act == sd::ActFn::kJumpRelu) {
          want += 0.2 * ((at::relu(l.log_jumprelu_threshold().exp() - z) * n).sum(1) * w).sum().item<double>();
        }
        CHECK(r.loss == Approx(want).epsilon(1e-12));
        CHECK(r.n_tokens == 8.0);
        CHECK(r.fired.sum().item<std::int64_t>() == f.gt(0).sum().item<std::int64_t>());
        // gradients: central differences of the step's loss (the JumpReLU threshold's is the
        // straight-through estimate, not a derivative: skipped)
        check_central_differences(l, batch, ls);
      }
    }
  }
}

TEST_CASE("lorsa sparse step equals the dense autograd step", "[lorsa]") {
  for (const auto act : {sd::ActFn::kTopK, sd::ActFn::kBatchTopK, sd::ActFn::kRelu}) {
    for (const auto pen : {sd::SparsityPenalty::kPower, sd::SparsityPenalty::kTanh,
                           sd::SparsityPenalty::kTanhQuad}) {
      for (const bool gating : {true, false}) {
        DYNAMIC_SECTION("act " << static_cast<int>(act) << " penalty " << static_cast<int>(pen)
                               << " gating " << gating) {
          auto c = lorsa_cfg(true, true, act);
          c.sparsity_include_decoder_norm = gating;
          c.sparse_kernels = sd::SparseKernels::kOff;
          auto dense = random_lorsa(c, 21);
          c.sparse_kernels = sd::SparseKernels::kOn;
          auto sparse = random_lorsa(c, 21);
          REQUIRE(sparse.uses_sparse_step(0));
          REQUIRE_FALSE(dense.uses_sparse_step(0));
          sd::TrainBatch batch;
          batch.acts[c.hook_point_in] = randn({kB, kT, kD}, 22);
          batch.acts[c.hook_point_out] = randn({kB, kT, kD}, 23);
          batch.mask = at::tensor({1., 1., 1., 1., 1., 0., 0., 1., 1., 1.}, at::kDouble);
          sd::LossSettings ls;
          ls.sparsity = pen;
          ls.l1_coefficient = 0.3;
          ls.p = 2;
          if (act != sd::ActFn::kRelu) {  // Aux-K over 4 dead heads, the residual not detached
            batch.dead = at::tensor({0, 1, 0, 0, 1, 0}).to(at::kBool);
            ls.auxk_coefficient = 0.4;
            ls.k_aux = 2;
            ls.auxk_detach_residual = pen == sd::SparsityPenalty::kTanh;
          }
          const sd::StepResult a = dense.forward_backward(batch, ls);
          const sd::StepResult b = sparse.forward_backward(batch, ls);
          if (act != sd::ActFn::kRelu) {
            CHECK(a.l_aux > 0);
            CHECK(b.l_aux == Approx(a.l_aux).epsilon(1e-10));
          }
          CHECK(b.sparse_feature_acts.defined());
          // float64, the same sums in another order: 1e-10
          CHECK(b.loss == Approx(a.loss).epsilon(1e-10));
          CHECK(b.l_sparsity == Approx(a.l_sparsity).epsilon(1e-10).margin(1e-14));
          CHECK(b.l0 == a.l0);
          CHECK(at::equal(a.fired, b.fired));
          CHECK((a.feature_acts - b.sparse_feature_acts.to_dense()).abs().max().item<double>() <
                1e-12);
          const auto pa = dense.parameters(), pb = sparse.parameters();
          for (std::size_t i = 0; i < pa.size(); ++i) {
            INFO(pa[i].name);
            CHECK((pa[i].grad - pb[i].grad).abs().max().item<double>() <=
                  1e-10 * (1 + pa[i].grad.abs().max().item<double>()));
          }
        }
      }
    }
  }
}

TEST_CASE("lorsa Aux-K: the loss by the formula, gradients by central differences", "[lorsa]") {
  for (const bool detach : {false, true}) {
    auto c = lorsa_cfg(true, false, sd::ActFn::kTopK);
    c.sparse_kernels = sd::SparseKernels::kOff;
    c.norm_activation = sd::NormActivation::kInference;
    auto l = random_lorsa(c, 31);
    sd::TrainBatch batch;
    batch.acts[c.hook_point_in] = randn({kB, kT, kD}, 32);
    batch.acts[c.hook_point_out] = randn({kB, kT, kD}, 33);
    batch.dead = at::tensor({1, 0, 1, 1, 0, 0}).to(at::kBool);
    sd::LossSettings ls;
    ls.auxk_coefficient = 0.5;
    ls.k_aux = 2;
    ls.auxk_detach_residual = detach;
    const sd::StepResult r = l.forward_backward(batch, ls);
    // the formula: the 2 largest gated dead scores per token decode ê; l_aux = α·mean‖ê − e‖²
    const at::Tensor z = reference(l, batch.acts[c.hook_point_in], at::Tensor()).z.reshape({-1, kS});
    const at::Tensor n = l.W_O().norm(2, 1);
    const at::Tensor s_dead = (z * n).masked_fill(batch.dead.logical_not(), -1e30);
    const at::Tensor idx = std::get<1>(s_dead.topk(2, 1));
    const at::Tensor pick = at::zeros_like(z).scatter_(1, idx, 1.0) * (z * n).gt(0) *
                            batch.dead.to(at::kDouble);
    const at::Tensor e = batch.acts[c.hook_point_out].reshape({-1, kD}) -
                         (at::matmul(l.encode(batch.acts[c.hook_point_in]).reshape({-1, kS}), l.W_O()) +
                          l.b_D());
    const at::Tensor q = at::matmul(z * pick, l.W_O()) - e;
    CHECK(r.l_aux == Approx(0.5 * q.pow(2).sum(1).mean().item<double>()).epsilon(1e-10));
    if (detach) continue;  // a detached residual's gradient is no derivative of the loss
    check_central_differences(l, batch, ls);
  }
}

TEST_CASE("lorsa checkpoints keep the original's names, shapes and buffers; the fold is exact",
          "[lorsa]") {
  saes::testing::TempDir dir;
  const auto c = lorsa_cfg(true, true, sd::ActFn::kJumpRelu);
  auto l = random_lorsa(c, 21);
  l.save(dir / "w.safetensors");
  const auto file = saes::io::SafetensorsFile::open(dir / "w.safetensors");
  CHECK(file.info("W_Q").shape == std::vector<std::int64_t>{kH, kD, kDqk});
  CHECK(file.info("b_K").shape == std::vector<std::int64_t>{kH, kDqk});
  CHECK(file.info("W_V").shape == std::vector<std::int64_t>{kS, kD});
  CHECK(file.info("W_O").shape == std::vector<std::int64_t>{kS, kD});
  CHECK(file.info("ln_q.w").shape == std::vector<std::int64_t>{kH, kDqk});
  CHECK(file.info("mask").shape == std::vector<std::int64_t>{8, 8});
  CHECK(file.info("rotary_sin").shape == std::vector<std::int64_t>{8, 4});
  CHECK(file.contains("IGNORE"));
  // adjacent pairs: each frequency twice in a row; position 3, frequency 1 = 100^(-1/2)
  const at::Tensor sin = file.tensor("rotary_sin");
  CHECK(sin[3][2].item<double>() == Approx(std::sin(3 * 0.1)).epsilon(1e-12));
  CHECK(sin[3][3].item<double>() == Approx(std::sin(3 * 0.1)).epsilon(1e-12));
  sd::LowRankSparseAttention back(c);
  back.load(dir / "w.safetensors");
  for (auto& p : back.parameters()) {
    for (auto& q : l.parameters()) {
      if (p.name == q.name) CHECK(at::equal(p.value, q.value));
    }
  }
  // fold: raw in → raw out unchanged (JumpReLU with gating: θ rescaled)
  const at::Tensor x_raw = randn({kB, kT, kD}, 22) * 3.0;
  const at::Tensor before =
      l.decode(l.encode(l.normalize(x_raw, c.hook_point_in))) / l.dataset_scale(c.hook_point_out);
  l.fold_activation_scale();
  CHECK(max_diff(l.decode(l.encode(x_raw)), before) < 1e-12);
  CHECK(l.encode(x_raw).gt(0).sum().item<std::int64_t>() > 0);
}

TEST_CASE("lorsa refuses configurations it cannot run, naming the key", "[lorsa]") {
  auto c = lorsa_cfg(true, false);
  c.n_qk_heads = 4;  // 6 OV heads over 4 QK heads
  REQUIRE_THROWS_WITH(sd::LowRankSparseAttention(c), Catch::Contains("must be divisible by n_qk_heads"));
  c = lorsa_cfg(true, false);
  c.hook_point_out = c.hook_point_in;
  REQUIRE_THROWS_WITH(sd::LowRankSparseAttention(c), Catch::Contains("reconstructs another hook"));
  c = lorsa_cfg(true, false);
  c.rotary_scale = 2;
  REQUIRE_THROWS_AS(sd::LowRankSparseAttention(c), saes::UnsupportedError);
  const auto l = random_lorsa(lorsa_cfg(true, false), 1);
  REQUIRE_THROWS_WITH(l.encode(randn({kT, kD}, 2)), Catch::Contains("activations-2d"));
  REQUIRE_THROWS_WITH(l.encode(randn({1, 9, kD}, 2)), Catch::Contains("longer than sae.n_ctx 8"));
  CHECK(sd::make_dictionary(lorsa_cfg(true, false))->label_hooks() ==
        std::vector<std::string>{"blocks.0.hook_attn_out"});
}

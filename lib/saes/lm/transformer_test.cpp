// Tests of the transformer engine on the real llama2.c stories260K model: reference activations,
// greedy generation, padding invariance, early stop, hook replacement and loader errors.
#include "saes/lm/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <ATen/TensorOperators.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/generate.h"
#include "saes/lm/llama2c_loader.h"
#include "saes/lm/transformer_attention.h"

#include "support/temp_dir.h"

namespace saes::lm {
namespace {

std::filesystem::path model_dir() {
  return saes::testing::test_assets_dir() / "llama2c-stories260K";
}

nlohmann::json reference_index() {
  return nlohmann::json::parse(io::read_file(model_dir() / "stories260K_ref_activations.json"));
}

at::Tensor ids_tensor(std::vector<int64_t> ids) {
  return at::from_blob(ids.data(), {1, static_cast<int64_t>(ids.size())}, at::kLong).clone();
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

}  // namespace

TEST_CASE("stories260K reproduces every reference activation and the logits within 1e-4", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const Transformer model = load_llama2c(model_dir() / "stories260K.bin");
  const nlohmann::json index = reference_index();
  const std::string raw = io::read_file(model_dir() / "stories260K_ref_activations.f32");
  HookSet hooks;
  for (const auto& array : index["arrays"]) hooks.capture(array["name"].get<std::string>());
  const at::Tensor tokens = ids_tensor(index["prompt_tokens"].get<std::vector<int64_t>>());
  const auto captured = model.forward(tokens, nullptr, hooks);
  // Tolerance: the float64 reference vs our float32 forward; the assets README measured 1.3e-5.
  constexpr double kAtol = 1e-4;
  for (const auto& array : index["arrays"]) {
    const auto name = array["name"].get<std::string>();
    const auto shape = array["shape"].get<std::vector<int64_t>>();
    const auto offset = array["offset_bytes"].get<std::size_t>();
    at::Tensor expected =
        at::from_blob(const_cast<char*>(raw.data() + offset), shape, at::kFloat).clone();
    INFO(name);
    REQUIRE(captured.count(name) == 1);
    const at::Tensor got = captured.at(name).select(0, 0);
    REQUIRE(got.sizes() == expected.sizes());
    CHECK(max_abs_diff(got, expected) < kAtol);
  }
}

TEST_CASE("stories260K greedy generation reproduces run.c's 255-token greedy sample", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const Transformer model = load_llama2c(model_dir() / "stories260K.bin");
  const nlohmann::json greedy = reference_index()["greedy_from_bos"];
  const auto expected = greedy["tokens"].get<std::vector<int64_t>>();
  REQUIRE(expected.size() == 256);
  const std::vector<int64_t> got = generate_greedy(model, {1}, 255);
  CHECK(got == expected);
}

TEST_CASE("hook values have TransformerLens shapes and meanings", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const Transformer model = load_llama2c(model_dir() / "stories260K.bin");
  HookSet hooks;
  for (const std::string& name : model.hook_names()) hooks.capture(name);
  const at::Tensor tokens = ids_tensor({1, 403, 407, 261, 378});
  const auto out = model.forward(tokens, nullptr, hooks);
  CHECK(out.size() == model.hook_names().size());
  CHECK(out.at("blocks.2.attn.hook_q").sizes() == at::IntArrayRef({1, 5, 8, 8}));
  CHECK(out.at("blocks.2.attn.hook_k").sizes() == at::IntArrayRef({1, 5, 4, 8}));
  CHECK(out.at("blocks.2.attn.hook_v").sizes() == at::IntArrayRef({1, 5, 4, 8}));
  CHECK(out.at("blocks.2.attn.hook_z").sizes() == at::IntArrayRef({1, 5, 8, 8}));
  CHECK(out.at("blocks.2.mlp.hook_post").sizes() == at::IntArrayRef({1, 5, 172}));
  CHECK(out.at("logits").sizes() == at::IntArrayRef({1, 5, 512}));
  // RMSNorm hook_normalized is x / sqrt(mean(x^2) + eps), before the weight.
  const at::Tensor x = out.at("blocks.3.hook_resid_mid");
  const at::Tensor normalized = x / (x.pow(2).mean(-1, true) + 1e-5).sqrt();
  CHECK(max_abs_diff(out.at("blocks.3.ln2.hook_normalized"), normalized) < 1e-5);
  CHECK(max_abs_diff(out.at("hook_embed"), out.at("blocks.0.hook_resid_pre")) == 0.0);
  // hook_attn_out is z times W_O.
  const at::Tensor z = out.at("blocks.1.attn.hook_z").reshape({1, 5, 64});
  const at::Tensor attn_out = z.matmul(model.weight("blocks.1.attn.W_O").t());
  CHECK(max_abs_diff(out.at("blocks.1.hook_attn_out"), attn_out) < 1e-5);
}

TEST_CASE("right or left padding does not change real tokens' activations", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const Transformer model = load_llama2c(model_dir() / "stories260K.bin");
  const auto prompt = reference_index()["prompt_tokens"].get<std::vector<int64_t>>();
  const auto n = static_cast<int64_t>(prompt.size());
  constexpr int64_t kPad = 5;
  HookSet hooks;
  for (const std::string& name : model.hook_names()) hooks.capture(name);
  const auto alone = model.forward(ids_tensor(prompt), nullptr, hooks);

  const at::Tensor real = ids_tensor(prompt);
  const at::Tensor pad = at::full({1, kPad}, 7, at::kLong);
  const at::Tensor tokens = at::cat({at::cat({real, pad}, 1), at::cat({pad, real}, 1)}, 0);
  const at::Tensor ones = at::ones({1, n}, at::kLong);
  const at::Tensor zeros = at::zeros({1, kPad}, at::kLong);
  const at::Tensor mask = at::cat({at::cat({ones, zeros}, 1), at::cat({zeros, ones}, 1)}, 0);
  const auto padded = model.forward(tokens, &mask, hooks);
  for (const auto& [name, value] : alone) {
    INFO(name);
    const at::Tensor right = padded.at(name).select(0, 0).narrow(0, 0, n);
    const at::Tensor left = padded.at(name).select(0, 1).narrow(0, kPad, n);
    // float32 reductions in another order (batch shape, BLAS kernel: AVX2 vs AVX-512) differ by
    // ~sqrt(K)·ε per reduction of length K, compounded over the layers: 4·ε·sqrt(K)·(layers + 1)
    // relative to the value's scale, K the longest reduction (d_model, d_mlp or the context).
    // Padding that leaked into attention would move values by orders of magnitude more.
    const auto& spec = model.spec();
    const double K = static_cast<double>(std::max({spec.d_model, spec.d_mlp, n}));
    const double tolerance = 4.0 * std::numeric_limits<float>::epsilon() * std::sqrt(K) *
                             static_cast<double>(spec.n_layers + 1) *
                             (1.0 + value.abs().max().item<double>());
    CHECK(max_abs_diff(right, value.select(0, 0)) < tolerance);
    CHECK(max_abs_diff(left, value.select(0, 0)) < tolerance);
  }
}

TEST_CASE("forward stops right after the deepest captured hook", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const Transformer model = load_llama2c(model_dir() / "stories260K.bin");
  int later_calls = 0;
  int earlier_calls = 0;
  const auto count = [](int& counter) {
    return [&counter](const at::Tensor& x) {
      ++counter;
      return x;
    };
  };
  HookSet hooks;
  hooks.capture("blocks.0.hook_resid_post")
      .replace("blocks.0.hook_mlp_out", count(earlier_calls))
      .replace("blocks.1.hook_resid_pre", count(later_calls))
      .replace("blocks.4.attn.hook_q", count(later_calls))
      .replace("logits", count(later_calls));
  const auto out = model.forward(ids_tensor({1, 403, 407}), nullptr, hooks);
  CHECK(out.size() == 1);
  CHECK(earlier_calls == 1);
  CHECK(later_calls == 0);

  HookSet attn_only;
  attn_only.capture("blocks.1.attn.hook_k").replace("blocks.1.mlp.hook_post", count(later_calls));
  model.forward(ids_tensor({1, 403}), nullptr, attn_only);
  CHECK(later_calls == 0);
}

TEST_CASE("replacing a hook changes what flows onward", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const Transformer model = load_llama2c(model_dir() / "stories260K.bin");
  const at::Tensor tokens = ids_tensor({1, 403, 407, 261, 378});
  const at::Tensor base = model.logits(tokens);

  HookSet identity;
  identity.capture("logits").replace("blocks.1.hook_resid_post",
                                     [](const at::Tensor& x) { return x; });
  CHECK(at::equal(model.forward(tokens, nullptr, identity).at("logits"), base));

  HookSet zero;
  zero.capture("logits").capture("blocks.1.hook_resid_post");
  zero.replace("blocks.1.hook_resid_post", [](const at::Tensor& x) { return at::zeros_like(x); });
  const auto out = model.forward(tokens, nullptr, zero);
  CHECK(out.at("blocks.1.hook_resid_post").abs().max().item<double>() == 0.0);
  CHECK(max_abs_diff(out.at("logits"), base) > 1e-2);

  // replace_output: the replaced MLP is skipped (its input never reaches the function), unless a
  // hook inside it is used; the result is that of the same replacement
  const at::Tensor mlp1 =
      model.forward(tokens, nullptr, HookSet().capture("blocks.1.hook_mlp_out")).at(
          "blocks.1.hook_mlp_out");
  HookSet plain, output_only, inner;
  plain.capture("logits").replace("blocks.1.hook_mlp_out",
                                  [&](const at::Tensor&) { return mlp1 * 2.0; });
  at::Tensor seen;
  output_only.capture("logits").replace_output("blocks.1.hook_mlp_out", [&](const at::Tensor& x) {
    seen = x;
    return mlp1 * 2.0;
  });
  const at::Tensor doubled = model.forward(tokens, nullptr, plain).at("logits");
  CHECK(at::equal(model.forward(tokens, nullptr, output_only).at("logits"), doubled));
  CHECK(!at::equal(seen, mlp1));  // the MLP did not run: the function got a stand-in
  inner.capture("logits").capture("blocks.1.mlp.hook_post");
  inner.replace_output("blocks.1.hook_mlp_out", [&](const at::Tensor& x) {
    seen = x;
    return mlp1 * 2.0;
  });
  const auto with_inner = model.forward(tokens, nullptr, inner);
  CHECK(at::equal(seen, mlp1));  // a hook inside the MLP is used: it ran
  CHECK(at::equal(with_inner.at("logits"), doubled));

  HookSet bad_shape;
  bad_shape.capture("logits").replace("blocks.0.hook_resid_pre",
                                      [](const at::Tensor& x) { return x.narrow(-1, 0, 3); });
  REQUIRE_THROWS_WITH(
      model.forward(tokens, nullptr, bad_shape),
      Catch::Contains("hook 'blocks.0.hook_resid_pre': replacement returned shape"));
}

TEST_CASE("an unknown hook name is a ConfigError listing the valid names", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const Transformer model = load_llama2c(model_dir() / "stories260K.bin");
  const at::Tensor tokens = ids_tensor({1, 403});
  for (const char* bad : {"blocks.9.hook_resid_post", "blocks.01.hook_resid_pre",
                          "blocks.0.hook_pos", "hook_pos_embed", "resid"}) {
    HookSet hooks;
    hooks.capture(bad);
    INFO(bad);
    REQUIRE_THROWS_AS(model.forward(tokens, nullptr, hooks), ConfigError);
    REQUIRE_THROWS_WITH(
        model.forward(tokens, nullptr, hooks),
        Catch::Contains(fmt::format("unknown hook '{}' for this model (5 layers); valid: ", bad)) &&
            Catch::Contains("hook_embed, blocks.{0..4}.{hook_resid_pre, ln1.hook_normalized") &&
            Catch::Contains("ln_final.hook_normalized, logits"));
  }
  HookSet out_of_vocab;
  out_of_vocab.capture("logits");
  REQUIRE_THROWS_AS(model.forward(ids_tensor({1, 512}), nullptr, out_of_vocab), DataError);
}

TEST_CASE("truncated, padded or versioned llama2.c files are rejected", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const std::string bytes = io::read_file(model_dir() / "stories260K.bin");
  saes::testing::TempDir dir;
  const auto truncated = dir / "truncated.bin";
  io::write_file_atomic(truncated, bytes.substr(0, bytes.size() - 4));
  REQUIRE_THROWS_AS(read_llama2c_checkpoint(truncated), DataError);
  REQUIRE_THROWS_WITH(read_llama2c_checkpoint(truncated),
                      Catch::Contains("truncated.bin") &&
                          Catch::Contains("file size 1056536 bytes") &&
                          Catch::Contains("expected 1056540 bytes"));
  const auto longer = dir / "longer.bin";
  io::write_file_atomic(longer, bytes + "xxxx");
  REQUIRE_THROWS_AS(read_llama2c_checkpoint(longer), DataError);

  std::string bad_header = bytes;
  const int32_t zero_heads = 0;
  std::memcpy(bad_header.data() + 12, &zero_heads, 4);
  io::write_file_atomic(dir / "heads.bin", bad_header);
  REQUIRE_THROWS_WITH(read_llama2c_checkpoint(dir / "heads.bin"),
                      Catch::Contains("n_heads must be > 0, got 0"));

  io::write_file_atomic(dir / "v1.bin", std::string("24ka") + bytes.substr(4));
  REQUIRE_THROWS_AS(read_llama2c_checkpoint(dir / "v1.bin"), UnsupportedError);
  REQUIRE_THROWS_AS(read_llama2c_checkpoint(dir / "missing.bin"), IoError);
}

TEST_CASE("a bfloat16 model tracks the float32 logits", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const Transformer fp32 = load_llama2c(model_dir() / "stories260K.bin");
  TransformerOptions options;
  options.dtype = DType::kBFloat16;
  const Transformer bf16 = load_llama2c(model_dir() / "stories260K.bin", options);
  const at::Tensor tokens =
      ids_tensor(reference_index()["prompt_tokens"].get<std::vector<int64_t>>());
  const at::Tensor expected = fp32.logits(tokens);
  const at::Tensor got = bf16.logits(tokens);
  CHECK(got.scalar_type() == at::kBFloat16);
  // bfloat16 keeps 8 mantissa bits: a few percent of the logit scale after 5 blocks.
  CHECK(max_abs_diff(got.to(at::kFloat), expected) < 0.05 * expected.abs().max().item<double>());
  CHECK(at::equal(got.argmax(-1), expected.argmax(-1)));
}

TEST_CASE("with gradients enabled a replacement's input receives gradients", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const Transformer model = load_llama2c(model_dir() / "stories260K.bin");
  const at::Tensor delta = at::zeros({1, 3, 64}).requires_grad_(true);
  HookSet hooks;
  hooks.capture("logits").replace("blocks.2.hook_resid_mid",
                                  [&](const at::Tensor& x) { return x + delta; });
  const auto out = model.forward(ids_tensor({1, 403, 407}), nullptr, hooks, GradMode::kEnabled);
  out.at("logits").select(1, 2).select(1, 338).sum().backward();
  REQUIRE(delta.grad().defined());
  CHECK(delta.grad().select(1, 2).abs().sum().item<double>() > 0.0);
  CHECK(delta.grad().select(1, 0).abs().sum().item<double>() >
        0.0);  // earlier positions via attention
}

}  // namespace saes::lm

namespace saes::lm {
namespace {

// softmax(q·k over visible keys) v for one query row, in double; uniform over all keys when no key
// is visible (what the lowest-float fill gives).
std::vector<double> attention_row(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const at::Tensor& blocked_row) {
  const int64_t seq = k.size(0), d = k.size(1);
  std::vector<double> logits(static_cast<std::size_t>(seq));
  double top = -1e300;
  bool any = false;
  for (int64_t j = 0; j < seq; ++j) {
    if (blocked_row[j].item<bool>()) continue;
    double dot = 0;
    for (int64_t c = 0; c < d; ++c) dot += q[c].item<double>() * k[j][c].item<double>();
    logits[static_cast<std::size_t>(j)] = dot;
    top = std::max(top, dot);
    any = true;
  }
  std::vector<double> out(static_cast<std::size_t>(d), 0.0);
  double total = 0;
  for (int64_t j = 0; j < seq; ++j) {
    const bool visible = !blocked_row[j].item<bool>();
    if (any && !visible) continue;
    const double w = any ? std::exp(logits[static_cast<std::size_t>(j)] - top) : 1.0;
    total += w;
    for (int64_t c = 0; c < d; ++c) out[static_cast<std::size_t>(c)] += w * v[j][c].item<double>();
  }
  for (auto& o : out) o /= total;
  return out;
}

}  // namespace

TEST_CASE("sliced attention equals the attention formula for every slice size", "[lm]") {
  const int64_t batch = 3, heads = 4, seq = 7, d_head = 5;
  at::manual_seed(11);
  const at::Tensor q = at::randn({batch, heads, seq, d_head});
  const at::Tensor k = at::randn({batch, heads, seq, d_head});
  const at::Tensor v = at::randn({batch, heads, seq, d_head});
  // Causal, plus per-item left padding of 0, 2 and 3 keys: the first rows of items 1 and 2 see no
  // key at all.
  at::Tensor blocked = at::ones({seq, seq}, at::kBool).triu(1).repeat({batch, 1, 1, 1});
  for (int64_t b = 1; b < batch; ++b) blocked[b].narrow(-1, 0, b + 1).fill_(true);
  const bool shared = GENERATE(false, true);  // one [1, 1, seq, seq] mask for every item
  if (shared) blocked = blocked.narrow(0, 0, 1);
  const int64_t head_bytes = seq * seq * 4;
  // One head at a time, two heads, one whole item, two items (slices of 2 and 1), the default.
  const int64_t slice_bytes = GENERATE_COPY(int64_t{1}, 2 * head_bytes, heads * head_bytes,
                                            2 * heads * head_bytes, int64_t{0});
  INFO("slice_bytes " << slice_bytes << ", shared mask " << shared);
  const at::Tensor z = attend(q, k, v, blocked, slice_bytes);
  REQUIRE(z.sizes() == q.sizes());
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < seq; ++i) {
        const auto expected =
            attention_row(q[b][h][i], k[b][h], v[b][h], blocked[shared ? 0 : b][0][i]);
        for (int64_t c = 0; c < d_head; ++c)
          REQUIRE(z[b][h][i][c].item<double>() ==
                  Approx(expected[static_cast<std::size_t>(c)]).margin(1e-5));
      }
    }
  }
  // bf16 operands: fp32 scores and softmax, the result in bf16 (within bf16 rounding).
  const at::Tensor z16 =
      attend(q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16), blocked, slice_bytes);
  REQUIRE(z16.scalar_type() == at::kBFloat16);
  REQUIRE(at::allclose(z16.to(at::kFloat), z, 0.05, 0.05));
}

}  // namespace saes::lm

// Qwen3, Mistral and Gemma 2/3 beyond the reference fixtures (hf_fixture_test.cpp): the config
// keys each family reads and refuses, padding with sliding windows, half precision with Gemma's
// float32 (1 + w) norms, and the logit lens of residual vectors through ln_final.
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/zeros.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/safetensors.h"
#include "saes/lm/hf_config.h"
#include "saes/lm/hf_folder.h"

namespace saes::lm {
namespace {

std::filesystem::path fixture(const char* name) {
  return std::filesystem::path(SAES_SOURCE_DIR) / "tests" / "data" / "hf" / name;
}

/// The fixture's config.json with `patch` merged in (null values erase keys).
std::string patched_config(const char* name, const nlohmann::json& patch) {
  nlohmann::json config = nlohmann::json::parse(io::read_file(fixture(name) / "config.json"));
  config.merge_patch(patch);
  return config.dump();
}

TransformerSpec parse(const char* name, const nlohmann::json& patch = nlohmann::json::object()) {
  return parse_hf_config(patched_config(name, patch), std::string(name) + "/config.json");
}

/// The fixture's config with `key` present and null.
TransformerSpec parse_with_null(const char* name, const char* key) {
  nlohmann::json config = nlohmann::json::parse(io::read_file(fixture(name) / "config.json"));
  config[key] = nullptr;
  return parse_hf_config(config.dump(), std::string(name) + "/config.json");
}

}  // namespace

TEST_CASE("Qwen3 and Mistral config keys", "[lm][hf]") {
  const TransformerSpec qwen3 = parse("qwen3");
  CHECK(qwen3.architecture == Architecture::kQwen3);
  CHECK(qwen3.qk_norm);
  CHECK(qwen3.sliding_layers.empty());
  CHECK(qwen3.rope_theta == 1e6);
  // Qwen3Config's head_dim defaults to 128, not hidden_size / heads
  CHECK(parse("qwen3", {{"head_dim", nullptr}}).d_head == 128);
  REQUIRE_THROWS_AS(parse("qwen3", {{"use_sliding_window", true}}), UnsupportedError);
  REQUIRE_THROWS_WITH(parse("qwen3", {{"use_sliding_window", true}}),
                      Catch::Contains("qwen3/config.json: use_sliding_window: true"));

  const TransformerSpec mistral = parse("mistral");
  CHECK(mistral.sliding_window == 4);
  CHECK(mistral.sliding_layers == std::vector<bool>(2, true));
  // null disables the window (Mistral ≥ v0.2); an absent key is MistralConfig's 4096
  const TransformerSpec no_window = parse_with_null("mistral", "sliding_window");
  CHECK(no_window.sliding_window == 0);
  CHECK(!is_sliding_layer(no_window, 0));
  nlohmann::json config = nlohmann::json::parse(io::read_file(fixture("mistral") / "config.json"));
  config.erase("sliding_window");
  CHECK(parse_hf_config(config.dump(), "c.json").sliding_window == 4096);
  REQUIRE_THROWS_AS(parse("mistral", {{"sliding_window", 0}}), ConfigError);
}

TEST_CASE("Gemma config keys: layer types, soft-capping, RoPE per layer type", "[lm][hf]") {
  const TransformerSpec g2 = parse("gemma2");
  CHECK(g2.architecture == Architecture::kGemma2);
  CHECK(g2.sliding_layers == std::vector<bool>{true, false, true});  // even layers slide
  CHECK(g2.attn_softcap == 1.0);
  CHECK(g2.final_softcap == 3.0);
  CHECK(g2.attn_scale_base == 24.0);
  CHECK(g2.embed_scale == Approx(std::sqrt(32.0)));
  CHECK(g2.norm_weight_offset == 1.0);
  CHECK(!g2.qk_norm);
  CHECK(!g2.local_rope);
  // Gemma2Config's defaults are 50 and 30; null turns each off
  CHECK(parse_with_null("gemma2", "attn_logit_softcapping").attn_softcap == 0.0);
  nlohmann::json config = nlohmann::json::parse(io::read_file(fixture("gemma2") / "config.json"));
  config.erase("final_logit_softcapping");
  CHECK(parse_hf_config(config.dump(), "c.json").final_softcap == 30.0);
  REQUIRE_THROWS_AS(parse("gemma2", {{"hidden_activation", "swish"}}), UnsupportedError);

  const TransformerSpec g3 = parse("gemma3");
  CHECK(g3.qk_norm);
  CHECK(g3.local_rope);
  CHECK(g3.rope_theta == 1e6);
  CHECK(g3.rope_linear_factor == 4.0);
  CHECK(g3.rope_local.theta == 10000.0);
  CHECK(g3.rope_local.linear_factor == 1.0);
  CHECK(g3.sliding_layers == std::vector<bool>{true, true, false});
  CHECK(rope_of_layer(g3, 0).theta == 10000.0);
  CHECK(rope_of_layer(g3, 2).linear_factor == 4.0);
  // without layer_types every sliding_window_pattern-th layer is global (default 6)
  CHECK(parse("gemma3", {{"layer_types", nullptr}}).sliding_layers ==
        std::vector<bool>(3, true));
  CHECK(parse("gemma3", {{"layer_types", nullptr}, {"sliding_window_pattern", 2}})
            .sliding_layers == std::vector<bool>{true, false, true});
  REQUIRE_THROWS_WITH(parse("gemma3", {{"layer_types", {"full_attention"}}}),
                      Catch::Contains("key 'layer_types' must list one type per layer (3)"));
  REQUIRE_THROWS_AS(
      parse("gemma3", {{"layer_types", {"full_attention", "chunked_attention", "full_attention"}}}),
      UnsupportedError);
  REQUIRE_THROWS_AS(
      parse("gemma3", {{"rope_parameters", {{"full_attention", {{"rope_type", "yarn"}}}}}}),
      UnsupportedError);

  const TransformerSpec mm = parse("gemma3-multimodal");
  CHECK(mm.architecture == Architecture::kGemma3);
  CHECK(mm.rope_linear_factor == 8.0);  // rope_scaling: the global layers only
  CHECK(mm.rope_local.linear_factor == 1.0);
  CHECK(mm.sliding_layers == std::vector<bool>{true, false, true, false});
  REQUIRE_THROWS_WITH(parse("gemma3-multimodal", {{"text_config", nullptr}}),
                      Catch::Contains("needs a 'text_config' map"));
}

TEST_CASE("padding leaves sliding-window models' real tokens unchanged", "[lm][hf]") {
  for (const char* name : {"mistral", "gemma2", "gemma3"}) {
    INFO(name);
    const Transformer model = load_hf_folder(fixture(name));
    const auto ref = io::SafetensorsFile::open(fixture(name) / "reference.safetensors");
    const at::Tensor real = ref.tensor("input_ids", io::TensorLoad::kCopy).narrow(0, 0, 1);
    const int64_t n = real.size(1);
    constexpr int64_t kPad = 3;
    HookSet hooks;
    hooks.capture("logits");
    hooks.capture("blocks.1.hook_resid_post");
    const auto alone = model.forward(real, nullptr, hooks);
    const at::Tensor pad = at::full({1, kPad}, 5, at::kLong);
    const at::Tensor tokens = at::cat({at::cat({real, pad}, 1), at::cat({pad, real}, 1)}, 0);
    const at::Tensor ones = at::ones({1, n}, at::kLong);
    const at::Tensor zeros = at::zeros({1, kPad}, at::kLong);
    const at::Tensor mask = at::cat({at::cat({ones, zeros}, 1), at::cat({zeros, ones}, 1)}, 0);
    const auto padded = model.forward(tokens, &mask, hooks);
    for (const auto& [hook, value] : alone) {
      INFO(hook);
      // float32 in another batch shape: a few ε·sqrt(K) per reduction, K ≤ 64, over 3 layers;
      // a window counted over the padding would move values by O(1).
      const double tolerance = 1e-5 * (1.0 + value.abs().max().item<double>());
      const at::Tensor right = padded.at(hook).select(0, 0).narrow(0, 0, n);
      const at::Tensor left = padded.at(hook).select(0, 1).narrow(0, kPad, n);
      CHECK((right - value.select(0, 0)).abs().max().item<double>() < tolerance);
      CHECK((left - value.select(0, 0)).abs().max().item<double>() < tolerance);
    }
  }
}

TEST_CASE("bfloat16 Gemma keeps its (1 + w) norm weights in float32", "[lm][hf]") {
  const Transformer fp32 = load_hf_folder(fixture("gemma3"));
  TransformerOptions options;
  options.dtype = DType::kBFloat16;
  const Transformer bf16 = load_hf_folder(fixture("gemma3"), options);
  CHECK(bf16.weight("blocks.0.ln1_post.w").scalar_type() == at::kFloat);
  CHECK(bf16.weight("blocks.0.attn.q_norm.w").scalar_type() == at::kFloat);
  CHECK(bf16.weight("blocks.0.attn.W_Q").scalar_type() == at::kBFloat16);
  const auto ref = io::SafetensorsFile::open(fixture("gemma3") / "reference.safetensors");
  const at::Tensor ids = ref.tensor("input_ids", io::TensorLoad::kCopy);
  const at::Tensor expected = fp32.logits(ids);
  const at::Tensor got = bf16.logits(ids);
  CHECK(got.scalar_type() == at::kBFloat16);
  // 8 mantissa bits through 3 blocks: a few percent of the logit scale
  CHECK((got.to(at::kFloat) - expected).abs().max().item<double>() <
        0.05 * expected.abs().max().item<double>());
}

TEST_CASE("logits_of_residual is ln_final then the unembedding, per vector", "[lm][hf]") {
  for (const char* name : {"gpt2", "gemma2", "qwen3"}) {
    INFO(name);
    const Transformer model = load_hf_folder(fixture(name));
    const auto& spec = model.spec();
    const at::Tensor x = at::randn({5, spec.d_model}) * 3.0;
    // the formula written out: normalize each row alone, the weight (and bias), W_U (and b_U)
    at::Tensor n;
    if (spec.norm == NormType::kLayerNorm) {
      const at::Tensor centred = x - x.mean(-1, true);
      n = centred * at::rsqrt(centred.pow(2).mean(-1, true) + spec.norm_eps);
      n = n * model.weight("ln_final.w") + model.weight("ln_final.b");
    } else {
      n = x * at::rsqrt(x.pow(2).mean(-1, true) + spec.norm_eps) * model.weight("ln_final.w");
    }
    const at::Tensor& w_u = model.weight(spec.tied_embeddings ? "embed.W_E" : "unembed.W_U");
    at::Tensor expected = at::linear(n, w_u);
    if (spec.unembed_bias) expected = expected + model.weight("unembed.b_U");
    const at::Tensor got = model.logits_of_residual(x);
    // no final soft-capping: Gemma 2's cap of 3 would bound these logits
    CHECK((got - expected).abs().max().item<double>() <
          1e-5 * (1.0 + expected.abs().max().item<double>()));
    // a vector's scale does not change its lens (up to eps)
    CHECK((model.logits_of_residual(x * 10.0) - got).abs().max().item<double>() <
          1e-4 * (1.0 + expected.abs().max().item<double>()));
  }
}

}  // namespace saes::lm

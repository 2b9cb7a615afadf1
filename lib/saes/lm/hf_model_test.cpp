// Tests of the Hugging Face config parsing and weight mappings (Llama, Qwen2, GPT-2, GPT-NeoX) with
// in-memory WeightSources: stories260K re-laid-out as HF Llama, and tiny random GPT-2 / NeoX
// models.
#include "saes/lm/hf_model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>

#include <catch2/catch.hpp>

#include <cmath>

#include "saes/core/error.h"
#include "saes/lm/llama2c_loader.h"
#include "saes/lm/transformer_rotary.h"
#include "support/temp_dir.h"

namespace saes::lm {
namespace {

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

/// llama2.c (interleaved pairs) rows -> HF (half-split) rows within each head, as HF's
/// convert_llama_weights_to_hf permute does.
at::Tensor permute_for_half_split(const at::Tensor& w, int64_t heads) {
  return w.view({heads, w.size(0) / heads / 2, 2, w.size(1)}).transpose(1, 2).reshape(w.sizes());
}

/// stories260K in Hugging Face Llama names.
MapWeightSource stories_as_hf_llama(Llama2cCheckpoint& ckpt) {
  MapWeightSource& src = ckpt.weights;
  const TransformerSpec& s = ckpt.spec;
  MapWeightSource hf({}, "hf-llama-memory");
  hf.set("model.embed_tokens.weight", src.get("embed.W_E"));
  hf.set("model.norm.weight", src.get("ln_final.w"));
  for (int64_t l = 0; l < s.n_layers; ++l) {
    const std::string a = "blocks." + std::to_string(l) + ".";
    const std::string b = "model.layers." + std::to_string(l) + ".";
    hf.set(b + "input_layernorm.weight", src.get(a + "ln1.w"));
    hf.set(b + "post_attention_layernorm.weight", src.get(a + "ln2.w"));
    hf.set(b + "self_attn.q_proj.weight",
           permute_for_half_split(src.get(a + "attn.W_Q"), s.n_heads));
    hf.set(b + "self_attn.k_proj.weight",
           permute_for_half_split(src.get(a + "attn.W_K"), s.n_kv_heads));
    hf.set(b + "self_attn.v_proj.weight", src.get(a + "attn.W_V"));
    hf.set(b + "self_attn.o_proj.weight", src.get(a + "attn.W_O"));
    hf.set(b + "mlp.gate_proj.weight", src.get(a + "mlp.W_gate"));
    hf.set(b + "mlp.up_proj.weight", src.get(a + "mlp.W_in"));
    hf.set(b + "mlp.down_proj.weight", src.get(a + "mlp.W_out"));
  }
  return hf;
}

std::string stories_config(const std::string& architecture, const std::string& extra = "") {
  return R"({"architectures": [")" + architecture + R"("], "hidden_size": 64,
    "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8,
    "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true, "hidden_act": "silu",
    "bos_token_id": 1, "eos_token_id": 2)" +
         extra + "}";
}

at::Tensor stories_tokens() {
  std::vector<int64_t> ids = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376};
  return at::from_blob(ids.data(), {1, 10}, at::kLong).clone();
}

HookSet all_hooks(const Transformer& model) {
  HookSet hooks;
  for (const std::string& name : model.hook_names()) hooks.capture(name);
  return hooks;
}

at::Tensor random(at::Generator& gen, std::vector<int64_t> shape) {
  return at::randn(shape, gen) * 0.2;
}

}  // namespace

TEST_CASE("stories260K re-laid-out as HF Llama gives the llama2.c activations", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const auto path = saes::testing::test_assets_dir() / "llama2c-stories260K" / "stories260K.bin";
  Llama2cCheckpoint ckpt = read_llama2c_checkpoint(path);
  const Transformer reference = load_llama2c(path);
  MapWeightSource hf = stories_as_hf_llama(ckpt);
  const Transformer model = load_hf_transformer(stories_config("LlamaForCausalLM"), hf, {}, "cfg");
  CHECK(model.spec().rope_style == RopeStyle::kHalfSplit);
  const auto expected = reference.forward(stories_tokens(), nullptr, all_hooks(reference));
  const auto got = model.forward(stories_tokens(), nullptr, all_hooks(model));
  for (const auto& [name, value] : expected) {
    INFO(name);
    if (name.find("hook_q") != std::string::npos || name.find("hook_k") != std::string::npos) {
      // Same numbers, rotary dims reordered: HF dim i / i + 4 holds llama2.c pair (2i, 2i + 1).
      // The permuted W_Q / W_K rows change the GEMM's blocking, so the float32 rounding over the
      // d_model = 64 terms differs as much as for the other hooks (seen: 1.1e-5 on one CPU).
      const at::Tensor reordered = value.unflatten(-1, {4, 2}).transpose(-1, -2).flatten(-2);
      CHECK(max_abs_diff(got.at(name), reordered) < 2e-5);
    } else {
      CHECK(max_abs_diff(got.at(name), value) < 2e-5);
    }
  }
}

TEST_CASE("Qwen2 ignores an inactive sliding window and requires q/k/v biases", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const auto path = saes::testing::test_assets_dir() / "llama2c-stories260K" / "stories260K.bin";
  Llama2cCheckpoint ckpt = read_llama2c_checkpoint(path);
  MapWeightSource hf = stories_as_hf_llama(ckpt);
  const std::string config =
      stories_config("Qwen2ForCausalLM", R"(, "sliding_window": 4, "use_sliding_window": false)");
  REQUIRE_THROWS_WITH(load_hf_transformer(config, hf, {}, "cfg"),
                      Catch::Contains("missing tensor 'model.layers.0.self_attn.q_proj.bias'"));
  at::Tensor v_bias = at::zeros({32});
  v_bias[3] = 0.5;
  for (int l = 0; l < 5; ++l) {
    const std::string b = "model.layers." + std::to_string(l) + ".self_attn.";
    hf.set(b + "q_proj.bias", at::zeros({64}));
    hf.set(b + "k_proj.bias", at::zeros({32}));
    hf.set(b + "v_proj.bias", v_bias);
  }
  const Transformer qwen = load_hf_transformer(config, hf, {}, "cfg");
  HookSet hooks;
  hooks.capture("blocks.0.attn.hook_v").capture("blocks.0.ln1.hook_normalized");
  const auto out = qwen.forward(stories_tokens(), nullptr, hooks);
  const at::Tensor x = out.at("blocks.0.ln1.hook_normalized") * qwen.weight("blocks.0.ln1.w");
  const at::Tensor v = x.matmul(qwen.weight("blocks.0.attn.W_V").t()) + v_bias;
  CHECK(max_abs_diff(out.at("blocks.0.attn.hook_v"), v.view({1, 10, 4, 8})) < 1e-5);
  REQUIRE_THROWS_AS(
      load_hf_transformer(stories_config("Qwen2ForCausalLM", R"(, "use_sliding_window": true)"), hf,
                          {}, "cfg"),
      UnsupportedError);
}

TEST_CASE("llama3 rope scaling keeps, interpolates and divides the three frequency bands", "[lm]") {
  const TransformerSpec spec = parse_hf_config(
      stories_config("LlamaForCausalLM",
                     R"(, "head_dim": 128, "rope_theta": 500000.0, "rope_scaling": {"rope_type":
      "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192})"),
      "cfg");
  TransformerSpec plain = spec;
  plain.llama3_scaling.enabled = false;
  const std::vector<float> scaled = rotary_inverse_frequencies(spec);
  const std::vector<float> base = rotary_inverse_frequencies(plain);
  REQUIRE(scaled.size() == 64);
  int unchanged = 0, divided = 0, interpolated = 0;
  for (std::size_t i = 0; i < base.size(); ++i) {
    const double wavelen = 2 * M_PI / base[i];
    INFO(i);
    if (wavelen < 8192.0 / 4.0) {
      CHECK(scaled[i] == base[i]);
      ++unchanged;
    } else if (wavelen > 8192.0) {
      CHECK(scaled[i] == Approx(base[i] / 8.0).epsilon(1e-6));
      ++divided;
    } else {
      const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      CHECK(scaled[i] == Approx((1 - smooth) * base[i] / 8 + smooth * base[i]).epsilon(1e-6));
      ++interpolated;
    }
  }
  CHECK(unchanged > 0);
  CHECK(divided > 0);
  CHECK(interpolated > 0);
}

TEST_CASE("GPT-2 Conv1D weights are transposed and c_attn splits into q, k, v", "[lm]") {
  at::Generator gen = at::detail::createCPUGenerator(7);
  const int64_t d = 16, vocab = 50, ctx = 32, mlp = 64;
  MapWeightSource hf({}, "gpt2-memory");
  hf.set("wte.weight", random(gen, {vocab, d}));
  hf.set("wpe.weight", random(gen, {ctx, d}));
  for (int l = 0; l < 2; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    for (const char* ln : {"ln_1", "ln_2"}) {
      hf.set(p + ln + ".weight", 1.0 + random(gen, {d}));
      hf.set(p + ln + ".bias", random(gen, {d}));
    }
    hf.set(p + "attn.c_attn.weight", random(gen, {d, 3 * d}));
    hf.set(p + "attn.c_attn.bias", random(gen, {3 * d}));
    hf.set(p + "attn.c_proj.weight", random(gen, {d, d}));
    hf.set(p + "attn.c_proj.bias", random(gen, {d}));
    hf.set(p + "attn.bias", at::zeros({1, 1, ctx, ctx}));  // legacy buffer, ignored
    hf.set(p + "mlp.c_fc.weight", random(gen, {d, mlp}));
    hf.set(p + "mlp.c_fc.bias", random(gen, {mlp}));
    hf.set(p + "mlp.c_proj.weight", random(gen, {mlp, d}));
    hf.set(p + "mlp.c_proj.bias", random(gen, {d}));
  }
  hf.set("ln_f.weight", 1.0 + random(gen, {d}));
  hf.set("ln_f.bias", random(gen, {d}));
  const std::string config = R"({"architectures": ["GPT2LMHeadModel"], "n_embd": 16, "n_layer": 2,
    "n_head": 4, "n_inner": null, "vocab_size": 50, "n_positions": 32})";
  const Transformer model = load_hf_transformer(config, hf, {}, "cfg");
  std::vector<int64_t> ids = {3, 14, 15, 9, 2, 6};
  const at::Tensor tokens = at::from_blob(ids.data(), {1, 6}, at::kLong).clone();
  const auto out = model.forward(tokens, nullptr, all_hooks(model));

  CHECK(max_abs_diff(out.at("blocks.0.hook_resid_pre"),
                     out.at("hook_embed") + out.at("hook_pos_embed")) == 0.0);
  CHECK(max_abs_diff(out.at("hook_pos_embed").select(0, 0), hf.get("wpe.weight").narrow(0, 0, 6)) ==
        0.0);
  const at::Tensor x =
      out.at("blocks.1.ln1.hook_normalized") * hf.get("h.1.ln_1.weight") + hf.get("h.1.ln_1.bias");
  const at::Tensor qkv =
      x.matmul(hf.get("h.1.attn.c_attn.weight")) + hf.get("h.1.attn.c_attn.bias");
  CHECK(max_abs_diff(out.at("blocks.1.attn.hook_k"), qkv.narrow(-1, d, d).view({1, 6, 4, 4})) <
        1e-5);
  const at::Tensor post = out.at("blocks.0.mlp.hook_post");
  CHECK(max_abs_diff(out.at("blocks.0.hook_mlp_out"), post.matmul(hf.get("h.0.mlp.c_proj.weight")) +
                                                          hf.get("h.0.mlp.c_proj.bias")) < 1e-5);
  const at::Tensor final_x = out.at("blocks.1.hook_resid_post");
  const at::Tensor normed =
      (final_x - final_x.mean(-1, true)) / (final_x.var(-1, false, true) + 1e-5).sqrt();
  CHECK(max_abs_diff(out.at("ln_final.hook_normalized"), normed) < 1e-5);
  const at::Tensor logits =
      (normed * hf.get("ln_f.weight") + hf.get("ln_f.bias")).matmul(hf.get("wte.weight").t());
  CHECK(max_abs_diff(out.at("logits"), logits) < 1e-4);

  MapWeightSource prefixed({}, "gpt2-prefixed");
  for (const std::string& name : hf.names()) prefixed.set("transformer." + name, hf.get(name));
  const Transformer same = load_hf_transformer(config, prefixed, {}, "cfg");
  CHECK(at::equal(same.logits(tokens), out.at("logits")));
}

TEST_CASE("GPT-NeoX splits the fused qkv per head and has no resid_mid when parallel", "[lm]") {
  at::Generator gen = at::detail::createCPUGenerator(11);
  const int64_t d = 16, heads = 2, d_head = 8, vocab = 40, mlp = 32;
  MapWeightSource hf({}, "neox-memory");
  hf.set("gpt_neox.embed_in.weight", random(gen, {vocab, d}));
  hf.set("embed_out.weight", random(gen, {vocab, d}));
  const auto set_norm = [&](const std::string& name) {
    hf.set(name + ".weight", 1.0 + random(gen, {d}));
    hf.set(name + ".bias", random(gen, {d}));
  };
  for (int l = 0; l < 2; ++l) {
    const std::string p = "gpt_neox.layers." + std::to_string(l) + ".";
    set_norm(p + "input_layernorm");
    set_norm(p + "post_attention_layernorm");
    hf.set(p + "attention.query_key_value.weight", random(gen, {3 * d, d}));
    hf.set(p + "attention.query_key_value.bias", random(gen, {3 * d}));
    hf.set(p + "attention.dense.weight", random(gen, {d, d}));
    hf.set(p + "attention.dense.bias", random(gen, {d}));
    hf.set(p + "mlp.dense_h_to_4h.weight", random(gen, {mlp, d}));
    hf.set(p + "mlp.dense_h_to_4h.bias", random(gen, {mlp}));
    hf.set(p + "mlp.dense_4h_to_h.weight", random(gen, {d, mlp}));
    hf.set(p + "mlp.dense_4h_to_h.bias", random(gen, {d}));
  }
  set_norm("gpt_neox.final_layer_norm");
  const auto config = [](bool parallel) {
    return std::string(R"({"architectures": ["GPTNeoXForCausalLM"], "hidden_size": 16,
      "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 40,
      "max_position_embeddings": 64, "rotary_pct": 0.5, "use_parallel_residual": )") +
           (parallel ? "true" : "false") + "}";
  };
  std::vector<int64_t> ids = {3, 14, 15, 9, 2};
  const at::Tensor tokens = at::from_blob(ids.data(), {1, 5}, at::kLong).clone();

  const Transformer parallel = load_hf_transformer(config(true), hf, {}, "cfg");
  CHECK(parallel.spec().rotary_dim == 4);
  HookSet missing_mid;
  missing_mid.capture("blocks.0.hook_resid_mid");
  REQUIRE_THROWS_AS(parallel.forward(tokens, nullptr, missing_mid), ConfigError);
  const auto out = parallel.forward(tokens, nullptr, all_hooks(parallel));
  CHECK(max_abs_diff(out.at("blocks.0.hook_resid_post"),
                     out.at("blocks.0.hook_resid_pre") + out.at("blocks.0.hook_attn_out") +
                         out.at("blocks.0.hook_mlp_out")) < 1e-6);
  // ln2 reads resid_pre in a parallel block.
  const at::Tensor pre = out.at("blocks.1.hook_resid_pre");
  const at::Tensor normed = (pre - pre.mean(-1, true)) / (pre.var(-1, false, true) + 1e-5).sqrt();
  CHECK(max_abs_diff(out.at("blocks.1.ln2.hook_normalized"), normed) < 1e-5);
  // Rows of query_key_value are (q, k, v) per head; dims past rotary_dim are not rotated.
  const at::Tensor x =
      out.at("blocks.1.ln1.hook_normalized") * hf.get("gpt_neox.layers.1.input_layernorm.weight") +
      hf.get("gpt_neox.layers.1.input_layernorm.bias");
  const at::Tensor fused =
      x.matmul(hf.get("gpt_neox.layers.1.attention.query_key_value.weight").t()) +
      hf.get("gpt_neox.layers.1.attention.query_key_value.bias");
  const at::Tensor per_head = fused.view({1, 5, heads, 3, d_head});
  CHECK(max_abs_diff(out.at("blocks.1.attn.hook_v"), per_head.select(3, 2)) < 1e-5);
  CHECK(max_abs_diff(out.at("blocks.1.attn.hook_q").narrow(-1, 4, 4),
                     per_head.select(3, 0).narrow(-1, 4, 4)) < 1e-5);
  CHECK(max_abs_diff(out.at("blocks.1.attn.hook_q").select(1, 0),
                     per_head.select(3, 0).select(1, 0)) < 1e-5);  // position 0: no rotation

  const Transformer sequential = load_hf_transformer(config(false), hf, {}, "cfg");
  const auto seq_out = sequential.forward(tokens, nullptr, all_hooks(sequential));
  CHECK(max_abs_diff(seq_out.at("blocks.0.hook_resid_mid"),
                     seq_out.at("blocks.0.hook_resid_pre") + seq_out.at("blocks.0.hook_attn_out")) <
        1e-6);
}

TEST_CASE("HF loading names unsupported architectures and missing tensors", "[lm]") {
  REQUIRE_THROWS_AS(parse_hf_config(R"({"architectures": ["MambaForCausalLM"]})", "c.json"),
                    UnsupportedError);
  REQUIRE_THROWS_WITH(parse_hf_config(R"({"architectures": ["MambaForCausalLM"]})", "c.json"),
                      Catch::Contains("c.json: architecture 'MambaForCausalLM' is not supported"));
  REQUIRE_THROWS_WITH(parse_hf_config(R"({"architectures": ["LlamaForCausalLM"]})", "c.json"),
                      Catch::Contains("c.json: missing key 'hidden_size'"));
  REQUIRE_THROWS_AS(parse_hf_config(stories_config("LlamaForCausalLM",
                                                   R"(, "rope_scaling": {"rope_type": "yarn"})"),
                                    "c.json"),
                    UnsupportedError);
  const std::string eos_list = R"(, "eos_token_id": [7, 9], "partial_rotary_factor": 0.5)";
  CHECK(parse_hf_config(stories_config("LlamaForCausalLM", eos_list), "c.json").eos_token_id == 7);
  MapWeightSource empty({}, "model.safetensors");
  REQUIRE_THROWS_WITH(
      load_hf_transformer(stories_config("LlamaForCausalLM"), empty, {}, "c.json"),
      Catch::Contains("model.safetensors: missing tensor 'model.embed_tokens.weight'"));
  MapWeightSource wrong({{"model.embed_tokens.weight", at::zeros({512, 32})}}, "model.safetensors");
  REQUIRE_THROWS_WITH(
      load_hf_transformer(stories_config("LlamaForCausalLM"), wrong, {}, "c.json"),
      Catch::Contains(
          "tensor 'model.embed_tokens.weight' has shape [512, 32], expected [512, 64]"));
}

TEST_CASE("HF config sizes are positive integers and token ids integers (fuzz findings)", "[lm]") {
  // fuzz_hf_config found num_attention_heads: 0 dividing by zero; a float where an integer
  // belongs was converted silently (1e300: undefined behaviour).
  const std::string neox = R"({"architectures": ["GPTNeoXForCausalLM"], "hidden_size": 32,
    "intermediate_size": 64, "max_position_embeddings": 64, "num_hidden_layers": 2,
    "vocab_size": 100, "num_attention_heads": HEADS, "rotary_pct": PCT})";
  const auto with = [&](const std::string& heads, const std::string& pct) {
    std::string text = neox;
    text.replace(text.find("HEADS"), 5, heads);
    text.replace(text.find("PCT"), 3, pct);
    return text;
  };
  CHECK(parse_hf_config(with("4", "0.25"), "c.json").d_head == 8);
  REQUIRE_THROWS_WITH(parse_hf_config(with("0", "0.25"), "c.json"),
                      Catch::Contains("c.json: key 'num_attention_heads' must be a positive integer"));
  REQUIRE_THROWS_WITH(parse_hf_config(with("-4", "0.25"), "c.json"),
                      Catch::Contains("must be a positive integer"));
  REQUIRE_THROWS_WITH(parse_hf_config(with("1e300", "0.25"), "c.json"),
                      Catch::Contains("c.json: key 'num_attention_heads' must be an integer"));
  REQUIRE_THROWS_WITH(parse_hf_config(with("4", "1e300"), "c.json"),
                      Catch::Contains("rotary_pct (partial_rotary_factor) must be in [0, 1]"));
  REQUIRE_THROWS_AS(parse_hf_config(stories_config("LlamaForCausalLM", R"(, "eos_token_id": ["x"])"),
                                    "c.json"),
                    ConfigError);
  // fuzz_hf_config (fuzz/corpus/hf_config/regression-architectures-object): an object where the
  // architecture name belongs escaped as nlohmann's type_error.
  REQUIRE_THROWS_WITH(parse_hf_config(R"({"architectures": [{"x": 1}]})", "c.json"),
                      Catch::Contains("c.json: key 'architectures' must be a list of names"));
  REQUIRE_THROWS_WITH(
      parse_hf_config(stories_config("LlamaForCausalLM", R"(, "rope_scaling": [1])"), "c.json"),
      Catch::Contains("c.json: key 'rope_scaling' must be a map or null"));
}

}  // namespace saes::lm

// Tests of HF folder loading (single and sharded safetensors) and load_language_model dispatch:
// stories260K saved as an HF Llama folder gives the llama2.c model's logits.
#include "saes/lm/hf_folder.h"

#include <fstream>

#include <ATen/TensorOperators.h>
#include <ATen/ops/from_blob.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/llama2c_loader.h"

#include "support/temp_dir.h"

namespace saes::lm {
namespace {

namespace fs = std::filesystem;

at::Tensor permute_for_half_split(const at::Tensor& w, int64_t heads) {
  return w.view({heads, w.size(0) / heads / 2, 2, w.size(1)}).transpose(1, 2).reshape(w.sizes());
}

/// stories260K in HF Llama names (as in hf_model_test.cpp).
std::map<std::string, at::Tensor> stories_as_hf(Llama2cCheckpoint& ckpt) {
  MapWeightSource& src = ckpt.weights;
  const TransformerSpec& s = ckpt.spec;
  std::map<std::string, at::Tensor> hf;
  hf["model.embed_tokens.weight"] = src.get("embed.W_E");
  hf["model.norm.weight"] = src.get("ln_final.w");
  for (int64_t l = 0; l < s.n_layers; ++l) {
    const std::string a = "blocks." + std::to_string(l) + ".";
    const std::string b = "model.layers." + std::to_string(l) + ".";
    hf[b + "input_layernorm.weight"] = src.get(a + "ln1.w");
    hf[b + "post_attention_layernorm.weight"] = src.get(a + "ln2.w");
    hf[b + "self_attn.q_proj.weight"] = permute_for_half_split(src.get(a + "attn.W_Q"), s.n_heads);
    hf[b + "self_attn.k_proj.weight"] =
        permute_for_half_split(src.get(a + "attn.W_K"), s.n_kv_heads);
    hf[b + "self_attn.v_proj.weight"] = src.get(a + "attn.W_V");
    hf[b + "self_attn.o_proj.weight"] = src.get(a + "attn.W_O");
    hf[b + "mlp.gate_proj.weight"] = src.get(a + "mlp.W_gate");
    hf[b + "mlp.up_proj.weight"] = src.get(a + "mlp.W_in");
    hf[b + "mlp.down_proj.weight"] = src.get(a + "mlp.W_out");
  }
  return hf;
}

constexpr const char* kConfig = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
  "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8,
  "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 512,
  "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true, "hidden_act": "silu",
  "bos_token_id": 1, "eos_token_id": 2})";

fs::path stories_bin() {
  return saes::testing::test_assets_dir() / "llama2c-stories260K" / "stories260K.bin";
}

/// Writes stories260K as an HF folder; `sharded`: two files + index.json.
void write_hf_folder(const fs::path& dir, bool sharded) {
  fs::create_directories(dir);
  Llama2cCheckpoint ckpt = read_llama2c_checkpoint(stories_bin());
  auto tensors = stories_as_hf(ckpt);
  io::write_file_atomic(dir / "config.json", kConfig);
  if (!sharded) {
    io::save_safetensors(dir / "model.safetensors", tensors);
    return;
  }
  std::map<std::string, at::Tensor> first, second;
  std::string weight_map;
  for (const auto& [name, t] : tensors) {
    const bool in_first =
        name.find("layers.0.") != std::string::npos || name.find("embed") != std::string::npos;
    (in_first ? first : second)[name] = t;
    weight_map +=
        (weight_map.empty() ? "" : ", ") + ("\"" + name + "\": \"") +
        (in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors") + "\"";
  }
  io::save_safetensors(dir / "model-00001-of-00002.safetensors", first);
  io::save_safetensors(dir / "model-00002-of-00002.safetensors", second);
  io::write_file_atomic(dir / "model.safetensors.index.json",
                        "{\"metadata\": {}, \"weight_map\": {" + weight_map + "}}");
}

at::Tensor prompt() {
  std::vector<int64_t> ids = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376};
  return at::from_blob(ids.data(), {1, 10}, at::kLong).clone();
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

}  // namespace

TEST_CASE("an HF folder, single or sharded, loads to the llama2.c model's logits", "[lm]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  const at::Tensor expected = load_llama2c(stories_bin()).logits(prompt());
  for (bool sharded : {false, true}) {
    INFO("sharded " << sharded);
    const fs::path dir = tmp / (sharded ? "sharded" : "single");
    write_hf_folder(dir, sharded);
    fs::copy_file(stories_bin().parent_path() / "tok512.bin", dir / "tok512.bin");
    LanguageModelConfig config;
    config.model_from_pretrained_path = dir;
    config.tokenizer_path = dir / "tok512.bin";
    LanguageModel lm = load_language_model(config);
    CHECK(max_abs_diff(lm.model.logits(prompt()), expected) < 2e-5);
    CHECK(lm.special_ids.bos == 1);
    CHECK(lm.special_ids.eos == 2);
    CHECK(lm.special_ids.pad == 2);
  }
}

TEST_CASE("load_language_model finds tok512.bin beside a llama2.c checkpoint", "[lm]") {
  SAES_REQUIRE_ASSETS();
  LanguageModelConfig config;
  config.model_from_pretrained_path = stories_bin();
  config.bos_token_id = 5;
  LanguageModel lm = load_language_model(config);
  CHECK(lm.tokenizer->vocab_size() == 512);
  CHECK(lm.special_ids.bos == 5);
  CHECK(lm.model.spec().n_layers == 5);
}

TEST_CASE("model loading errors name the folder and the missing piece", "[lm]") {
  saes::testing::TempDir tmp;
  LanguageModelConfig config;
  REQUIRE_THROWS_AS(load_language_model(config), ConfigError);
  config.model_from_pretrained_path = tmp / "absent";
  REQUIRE_THROWS_WITH(load_language_model(config), Catch::Contains("absent"));
  fs::create_directories(tmp / "empty");
  config.model_from_pretrained_path = tmp / "empty";
  REQUIRE_THROWS_WITH(load_language_model(config), Catch::Contains("config.json"));
  io::write_file_atomic(tmp / "empty" / "config.json", kConfig);
  REQUIRE_THROWS_WITH(load_language_model(config), Catch::Contains("model.safetensors"));
  io::write_file_atomic(tmp / "empty" / "model.safetensors.index.json",
                        R"({"weight_map": {"model.norm.weight": "gone.safetensors"}})");
  REQUIRE_THROWS_WITH(load_language_model(config), Catch::Contains("gone.safetensors"));
}

}  // namespace saes::lm

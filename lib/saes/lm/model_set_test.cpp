// Tests of model.checkpoints on the real stories260K: the same weights under several names give
// the single model's activations bit for bit (loaded once per path), a perturbed copy differs
// exactly after the perturbed layer, and mismatched checkpoints and hook names are one-line errors.
#include "saes/lm/model_set.h"

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include <ATen/TensorOperators.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/from_blob.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/hf_folder.h"

#include "support/temp_dir.h"

namespace saes::lm {
namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

fs::path stories() { return saes::testing::test_assets_dir() / "llama2c-stories260K"; }

LanguageModelConfig stories_config(std::map<std::string, fs::path> checkpoints = {}) {
  LanguageModelConfig config;
  config.model_from_pretrained_path = stories() / "stories260K.bin";
  config.tokenizer_path = stories() / "tok512.bin";
  config.checkpoints = std::move(checkpoints);
  return config;
}

/// stories260K.bin's header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len.
std::array<int32_t, 7> header_of(const std::string& bytes) {
  std::array<int32_t, 7> h{};
  std::memcpy(h.data(), bytes.data(), sizeof(h));
  return h;
}

/// A copy of stories260K.bin with layer `layer`'s MLP output matrix (w2, mlp.W_out) times `scale`
/// (llama2.c v0 order: embeddings, attention norms, wq, wk, wv, wo, ffn norms, w1, w2, w3, ...).
fs::path write_perturbed(const fs::path& dir, int64_t layer, float scale) {
  std::string bytes = io::read_file(stories() / "stories260K.bin");
  const auto h = header_of(bytes);
  const int64_t d = h[0], hidden = h[1], n_layers = h[2], kv = h[4] * (h[0] / h[3]);
  const int64_t w2 = int64_t{h[5]} * d + n_layers * (2 * d + 2 * d * d + 2 * kv * d) +
                     n_layers * hidden * d;  // floats before w2
  auto* floats = reinterpret_cast<float*>(bytes.data() + sizeof(h));
  for (int64_t i = 0; i < d * hidden; ++i) floats[w2 + layer * d * hidden + i] *= scale;
  const fs::path path = dir / "perturbed.bin";
  io::write_file_atomic(path, bytes);
  return path;
}

/// stories260K.bin cut to its first `vocab` token embeddings: a valid model, another vocabulary.
fs::path write_small_vocab(const fs::path& dir, int32_t vocab) {
  const std::string bytes = io::read_file(stories() / "stories260K.bin");
  auto h = header_of(bytes);
  const std::size_t row = static_cast<std::size_t>(h[0]) * sizeof(float);
  const std::size_t start = sizeof(h);
  std::string out = bytes.substr(0, start) + bytes.substr(start, vocab * row) +
                    bytes.substr(start + static_cast<std::size_t>(h[5]) * row);
  h[5] = vocab;
  std::memcpy(out.data(), h.data(), sizeof(h));
  const fs::path path = dir / "small_vocab.bin";
  io::write_file_atomic(path, out);
  return path;
}

at::Tensor prompt() {
  std::vector<int64_t> ids = {1, 403, 407, 261, 378, 302, 29, 416, 267, 368, 449, 30};
  return at::from_blob(ids.data(), {2, 6}, at::kLong).clone();
}

std::vector<std::string> prefixed(const std::string& name, const std::vector<std::string>& hooks) {
  std::vector<std::string> out;
  for (const auto& hook : hooks) out.push_back(name + kCheckpointSeparator + hook);
  return out;
}

const std::vector<std::string> kHooks = {"blocks.2.hook_resid_post", "blocks.3.hook_resid_mid",
                                         "blocks.3.hook_mlp_out", "blocks.3.hook_resid_post",
                                         "blocks.4.hook_resid_post"};

}  // namespace

TEST_CASE("checkpoints with the same weights give the single model's activations bit for bit",
          "[lm][checkpoints]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir dir;
  fs::copy_file(stories() / "stories260K.bin", dir / "copy.bin");
  // a: the main model's own file; b and c: one byte-identical copy, listed twice
  const LanguageModel lm = load_language_model(stories_config(
      {{"a", stories() / "stories260K.bin"}, {"b", dir / "copy.bin"}, {"c", dir / "copy.bin"}}));
  REQUIRE(lm.checkpoints.size() == 3);
  // each path is loaded once: a shares the main model's weights, c is b
  CHECK(lm.checkpoints.at("a")->weight("embed.W_E").data_ptr() ==
        lm.model.weight("embed.W_E").data_ptr());
  CHECK(lm.checkpoints.at("b")->weight("embed.W_E").data_ptr() !=
        lm.model.weight("embed.W_E").data_ptr());
  CHECK(lm.checkpoints.at("c") == lm.checkpoints.at("b"));

  const ModelSet single(lm.model);
  const auto expected = single.forward(prompt(), nullptr, kHooks);
  std::vector<std::string> hooks = prefixed("a", kHooks);
  for (const auto& h : prefixed("b", kHooks)) hooks.push_back(h);
  for (const auto& h : prefixed("c", kHooks)) hooks.push_back(h);
  const auto got = lm.model_set().forward(prompt(), nullptr, hooks);
  REQUIRE(got.size() == hooks.size());
  for (const auto& hook : kHooks) {
    INFO(hook);
    for (const std::string name : {"a", "b", "c"}) {
      CHECK(at::equal(got.at(name + ":" + hook), expected.at(hook)));
    }
  }
}

TEST_CASE("a perturbed checkpoint differs exactly after its perturbed layer", "[lm][checkpoints]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir dir;
  const LanguageModel lm = load_language_model(stories_config(
      {{"base", stories() / "stories260K.bin"}, {"tuned", write_perturbed(dir.path(), 3, 1.5f)}}));
  std::vector<std::string> hooks = prefixed("base", kHooks);
  for (const auto& h : prefixed("tuned", kHooks)) hooks.push_back(h);
  const auto got = lm.model_set().forward(prompt(), nullptr, hooks);
  const auto same = [&](const std::string& hook) {
    return at::equal(got.at("base:" + hook), got.at("tuned:" + hook));
  };
  CHECK(same("blocks.2.hook_resid_post"));  // before layer 3's MLP
  CHECK(same("blocks.3.hook_resid_mid"));
  CHECK_FALSE(same("blocks.3.hook_mlp_out"));  // from the scaled W_out on
  CHECK_FALSE(same("blocks.3.hook_resid_post"));
  CHECK_FALSE(same("blocks.4.hook_resid_post"));
  // the scaled matrix is layer 3's W_out: its output is the base one's × 1.5 (within rounding)
  CHECK(at::allclose(got.at("tuned:blocks.3.hook_mlp_out"),
                     got.at("base:blocks.3.hook_mlp_out") * 1.5, 1e-4, 1e-5));
}

TEST_CASE("hook names of a model set name their checkpoint, or none without checkpoints",
          "[lm][checkpoints]") {
  SAES_REQUIRE_ASSETS();
  const LanguageModel lm = load_language_model(
      stories_config({{"a", stories() / "stories260K.bin"}, {"b", stories() / "stories260K.bin"}}));
  const ModelSet models = lm.model_set();
  CHECK(models.has_checkpoints());
  CHECK_NOTHROW(models.check_hook("b:blocks.4.hook_resid_post"));
  CHECK_THROWS_WITH(models.check_hook("blocks.4.hook_resid_post"),
                    Contains("hook point \"blocks.4.hook_resid_post\": with model.checkpoints set, "
                             "hook points are <checkpoint>:<hook> (checkpoints: a, b)"));
  CHECK_THROWS_WITH(models.check_hook("c:blocks.4.hook_resid_post"),
                    Contains("names checkpoint \"c\", which model.checkpoints lacks "
                             "(checkpoints: a, b)"));
  CHECK_THROWS_AS(models.check_hook("a:blocks.9.hook_resid_post"), ConfigError);
  CHECK_THROWS_WITH(models.check_hook("a:blocks.9.hook_resid_post"),
                    Contains("hook point \"a:blocks.9.hook_resid_post\": unknown hook"));
  const ModelSet single(lm.model);
  CHECK_THROWS_WITH(single.check_hook("a:blocks.4.hook_resid_post"),
                    Contains("names checkpoint \"a\", but model.checkpoints is not set"));
}

TEST_CASE("a checkpoint of another vocabulary or architecture is refused naming its key",
          "[lm][checkpoints]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir dir;
  const auto error_of = [](const LanguageModelConfig& config) -> std::string {
    try {
      load_language_model(config);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string vocab =
      error_of(stories_config({{"small", write_small_vocab(dir.path(), 256)}}));
  CHECK_THAT(vocab, Contains("model.checkpoints.small: "));
  CHECK_THAT(vocab, Contains("d_vocab (vocabulary size) 256 differs from the main model's 512"));
  CHECK(vocab.find('\n') == std::string::npos);
  const fs::path gpt2 = fs::path(SAES_SOURCE_DIR) / "tests" / "data" / "hf" / "gpt2";
  CHECK_THAT(error_of(stories_config({{"gpt2", gpt2}})),
             Contains("model.checkpoints.gpt2: " + gpt2.string() +
                      ": architecture gpt2 differs from the main model's llama2c"));
  CHECK_THROWS_AS(load_language_model(stories_config({{"gone", dir / "missing.bin"}})), IoError);
  CHECK_THROWS_WITH(load_language_model(stories_config({{"gone", dir / "missing.bin"}})),
                    Contains("model.checkpoints.gone: no such file or folder"));
}

}  // namespace saes::lm

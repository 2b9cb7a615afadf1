// In-process tests of run_train on real stories260K activations (generated into a TempDir, or on
// the fly): every activation function reaches a sane explained variance and its expected L0,
// resume ends with the weights of an uninterrupted run, each member of a sweep trains exactly as
// it would alone, and bad setups are rejected before training.
#include <fstream>
#include <string>

#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/distributed/single_process_communicator.h"
#include "saes/io/atomic_file.h"
#include "saes/io/safetensors.h"
#include "saes/lm/hf_folder.h"
#include "saes/runners/activation_input.h"
#include "saes/runners/runners.h"
#include "saes/training/checkpoint.h"

#include "support/temp_dir.h"

namespace saes::runners {
namespace {

namespace fs = std::filesystem;

constexpr const char* kHook = "blocks.3.hook_resid_post";
constexpr std::int64_t kTokens = 20480;

fs::path asset(const std::string& name) { return saes::testing::test_assets_dir() / name; }

int run(const auto& settings, auto runner) {
  Logger logger(LogLevel::kError);
  distributed::SingleProcessCommunicator world;
  RunContext context{logger, world, ProgressMode::kOff};
  return runner(settings, context);
}

/// 20480 per-token layer-3 residual activations of stories260K on TinyStories text, generated
/// once per test process (the test cases only read them).
fs::path generate_shards() {
  static const saes::testing::TempDir root;
  static const bool done = [] {
    config::GenerateSettings s;
    s.model_name = "stories260K";
    s.model.model_from_pretrained_path = asset("llama2c-stories260K/stories260K.bin");
    s.dataset_name = "tinystories";
    s.dataset.paths = {asset("corpora/tinystories/tinystories_validation_head.txt").string()};
    s.hook_points = {kHook};
    s.output_dir = root.path() / "acts";
    s.target = data::ActivationTarget::kActivations1d;
    s.context_size = 256;
    s.packing = true;
    s.model_batch_size = 16;
    s.batch_size = 8192;
    s.total_tokens = kTokens;
    s.override_dtype = DType::kFloat32;
    s.device_type = "cpu";
    return run(s, &run_generate) == 0;
  }();
  REQUIRE(done);
  return root.path() / "acts";
}

config::TrainSettings topk_settings(const fs::path& acts, const fs::path& out) {
  config::TrainSettings s;
  s.sae_name = "test-topk";
  s.sae_series = "test";
  s.sae.sae_type = dictionaries::SaeType::kSae;
  s.sae.hook_point_in = kHook;
  s.sae.hook_point_out = kHook;
  s.sae.d_model = 64;
  s.sae.expansion_factor = 8;
  s.sae.act_fn = dictionaries::ActFn::kTopK;
  s.sae.top_k = 16;
  s.sae.norm_activation = dictionaries::NormActivation::kDatasetWise;
  s.sae.device = "cpu";
  s.sae.dtype = DType::kFloat32;
  s.initializer = training::InitializerConfig{};
  s.initializer->grid_search_init_norm = true;
  s.trainer.amp_dtype = DType::kFloat32;
  s.trainer.lr = 2e-3;
  s.trainer.lr_warm_up_steps = training::StepsOrFraction::of_steps(5);
  s.trainer.total_training_tokens = kTokens;
  s.trainer.log_frequency = 10;
  s.trainer.n_checkpoints = 0;
  s.trainer.exp_result_path = out;
  data::ActivationSourceConfig source;
  source.type = data::SourceType::kActivations;
  source.name = "acts";
  source.path.root = acts;
  s.activation_factory.sources = {source};
  s.activation_factory.target = data::ActivationTarget::kActivations1d;
  s.activation_factory.hook_points = {kHook};
  s.activation_factory.batch_size = 256;
  s.device_type = "cpu";
  s.logging.progress = ProgressMode::kOff;
  return s;
}

std::vector<nlohmann::json> read_metrics(const fs::path& file) {
  std::ifstream in(file);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

/// The TinyStories text with one document per paragraph (a `<|endoftext|>` line between them).
fs::path paragraph_documents() {
  static const saes::testing::TempDir root;
  static const fs::path file = [] {
    std::string text = io::read_file(asset("corpora/tinystories/tinystories_validation_head.txt"));
    std::string out;
    for (std::size_t pos = 0, next = 0; pos < text.size(); pos = next + 2) {
      next = std::min(text.find("\n\n", pos), text.size());
      out += text.substr(pos, next - pos) + "\n<|endoftext|>\n";
    }
    io::write_file_atomic(root.path() / "stories.txt", out);
    return root.path() / "stories.txt";
  }();
  return file;
}

/// Stories260K on TinyStories text run on the fly (no shards), capturing `hooks`.
void use_live_source(config::TrainSettings& s, const std::vector<std::string>& hooks) {
  s.model.emplace();
  s.model->model_name = "stories260K";
  s.model->model_from_pretrained_path = asset("llama2c-stories260K/stories260K.bin");
  data::DatasetConfig text;
  text.paths = {paragraph_documents().string()};
  s.datasets["tinystories"] = text;
  data::ActivationSourceConfig source;
  source.type = data::SourceType::kDataset;
  source.name = "tinystories";
  s.activation_factory.sources = {source};
  s.activation_factory.hook_points = hooks;
  s.activation_factory.context_size = 128;
  s.activation_factory.model_batch_size = 8;
}

/// The two run folders hold the same metrics lines (fp32 tolerance) and the same weights.
void check_same_run(const fs::path& a, const fs::path& b) {
  const auto ma = read_metrics(a / "metrics.jsonl");
  const auto mb = read_metrics(b / "metrics.jsonl");
  REQUIRE(!ma.empty());
  REQUIRE(ma.size() == mb.size());
  for (std::size_t i = 0; i < ma.size(); ++i) {
    for (const auto& [key, value] : ma[i].items()) {
      INFO("line " << i << " " << key);
      REQUIRE(mb[i].contains(key));
      if (value.is_number()) {
        CHECK(mb[i].at(key).get<double>() ==
              Approx(value.get<double>()).epsilon(1e-4).margin(1e-6));
      }
    }
  }
  const auto wa = io::SafetensorsFile::open(a / "sae_weights.safetensors");
  const auto wb = io::SafetensorsFile::open(b / "sae_weights.safetensors");
  for (const char* name : {"W_E", "b_E", "W_D", "b_D"}) {
    INFO(name);
    CHECK(at::allclose(wa.tensor(name), wb.tensor(name), 1e-4, 1e-5));
  }
}

std::string error_of(const config::TrainSettings& s) {
  try {
    run(s, &run_train);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST_CASE("a TopK run on stories260K activations ends with L0 == k and a sane explained variance",
          "[runners][train]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  const fs::path acts = generate_shards();
  const config::TrainSettings s = topk_settings(acts, tmp.path() / "run");
  REQUIRE(run(s, &run_train) == 0);

  const fs::path run_dir = tmp.path() / "run";
  CHECK(fs::exists(run_dir / "config.resolved.yaml"));
  REQUIRE(fs::exists(run_dir / "sae_weights.safetensors"));
  const auto metrics = read_metrics(run_dir / "metrics.jsonl");
  REQUIRE(metrics.size() == 8);  // 80 steps, a line every 10
  const auto& last = metrics.back();
  CHECK(last.at("step").get<int>() == 80);
  for (const char* name :
       {"losses/overall_loss", "losses/mse_loss", "metrics/explained_variance", "metrics/l0",
        "sparsity/dead_features", "details/current_learning_rate", "details/n_training_tokens"}) {
    INFO(name);
    CHECK(last.contains(name));
  }
  CHECK(last.at("metrics/l0").get<double>() == Approx(16.0).margin(1e-9));
  // Measured: 0.79 after 80 steps of 256 tokens; 0.6 leaves room for thread-count noise.
  CHECK(last.at("metrics/explained_variance").get<double>() > 0.6);
  const auto weights = io::SafetensorsFile::open(run_dir / "sae_weights.safetensors");
  CHECK(weights.metadata().at("saes_folded") == "true");
}

TEST_CASE("a resumed TopK run ends with the weights of an uninterrupted one", "[runners][train]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  const fs::path acts = generate_shards();
  config::TrainSettings s = topk_settings(acts, tmp.path() / "full");
  s.trainer.n_checkpoints = 4;
  s.trainer.check_point_save_mode = training::CheckpointSaveMode::kLinear;
  REQUIRE(run(s, &run_train) == 0);

  // The run as a crash after step 40 leaves it: later checkpoints and the final weights gone.
  config::TrainSettings r = s;
  r.trainer.exp_result_path = tmp.path() / "resumed";
  fs::copy(s.trainer.exp_result_path, r.trainer.exp_result_path, fs::copy_options::recursive);
  fs::remove(r.trainer.exp_result_path / "sae_weights.safetensors");
  {
    std::error_code ec;
    saes::io::remove_tree(training::checkpoint_path(r.trainer.exp_result_path, 60), ec);
  }
  r.trainer.from_pretrained_path = r.trainer.exp_result_path;
  REQUIRE(run(r, &run_train) == 0);

  CHECK(io::read_file(s.trainer.exp_result_path / "metrics.jsonl") ==
        io::read_file(r.trainer.exp_result_path / "metrics.jsonl"));
  const auto a = io::SafetensorsFile::open(s.trainer.exp_result_path / "sae_weights.safetensors");
  const auto b = io::SafetensorsFile::open(r.trainer.exp_result_path / "sae_weights.safetensors");
  for (const char* name : {"W_E", "b_E", "W_D", "b_D"}) {
    INFO(name);
    CHECK(at::equal(a.tensor(name), b.tensor(name)));
  }
}

TEST_CASE("a d_model that does not match the shards is rejected", "[runners][train]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  const fs::path acts = generate_shards();
  config::TrainSettings s = topk_settings(acts, tmp.path() / "run");
  s.sae.d_model = 32;
  CHECK_THROWS_AS(run(s, &run_train), ConfigError);
  try {
    run(s, &run_train);
  } catch (const ConfigError& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find("64") != std::string::npos);
    CHECK(std::string(e.what()).find("32") != std::string::npos);
  }
}

TEST_CASE("BatchTopK, JumpReLU and ReLU runs reach a sane explained variance and their L0",
          "[runners][train]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  const fs::path acts = generate_shards();
  config::TrainSettings s = topk_settings(acts, tmp.path() / "run");
  const double min_ev = 0.6;
  double max_l0 = 16.0;
  SECTION("batchtopk: the batch's mean L0 is exactly k") {
    s.sae.act_fn = dictionaries::ActFn::kBatchTopK;
  }
  SECTION("jumprelu with the tanh-quad penalty") {
    s.sae.act_fn = dictionaries::ActFn::kJumpRelu;
    s.sae.jumprelu_threshold_window = 2.0;
    s.initializer->init_log_jumprelu_threshold_value = -3.0;
    s.trainer.sparsity_loss_type = training::SparsityLossType::kTanhQuad;
    s.trainer.l1_coefficient = 0.05;
    s.trainer.lp_coefficient = 3e-6;
    s.trainer.jumprelu_lr_factor = 0.1;
    max_l0 = 128.0;
  }
  SECTION("relu with the decoder-norm weighted L1 penalty") {
    s.sae.act_fn = dictionaries::ActFn::kRelu;
    s.sae.sparsity_include_decoder_norm = true;
    s.trainer.sparsity_loss_type = training::SparsityLossType::kPower;
    s.trainer.l1_coefficient = 1.5;
    s.trainer.l1_coefficient_warmup_steps = training::StepsOrFraction::of_steps(0);
    max_l0 = 128.0;
  }
  // Measured after 80 steps: BatchTopK L0 16, EV 0.78; JumpReLU L0 54, EV 0.70; ReLU L0 90, EV
  // 0.72 (of 512 features).
  REQUIRE(run(s, &run_train) == 0);
  const auto last = read_metrics(tmp.path() / "run" / "metrics.jsonl").back();
  const double l0 = last.at("metrics/l0").get<double>();
  const double ev = last.at("metrics/explained_variance").get<double>();
  INFO("l0 " << l0 << " explained variance " << ev);
  CHECK(ev > min_ev);
  CHECK(l0 > 1.0);
  if (s.sae.act_fn == dictionaries::ActFn::kBatchTopK) {
    CHECK(l0 == Approx(16.0).margin(1e-6));
  } else {
    CHECK(l0 < max_l0);
  }
}

TEST_CASE("each dictionary of a sweep over k trains as it would alone", "[runners][train]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  const fs::path acts = generate_shards();
  config::TrainSettings s = topk_settings(acts, tmp.path() / "sweep");
  s.sweep = {{"k8", {"sae.top_k=8"}}, {"k16", {"sae.top_k=16", "trainer.lr=0.001"}}};
  REQUIRE(run(s, &run_train) == 0);
  CHECK(fs::exists(tmp.path() / "sweep" / "k8" / "config.resolved.yaml"));
  const auto k8 = read_metrics(tmp.path() / "sweep" / "k8" / "metrics.jsonl");
  REQUIRE(!k8.empty());
  CHECK(k8.back().at("metrics/l0").get<double>() == Approx(8.0).margin(1e-9));

  config::TrainSettings a = topk_settings(acts, tmp.path() / "k8");
  a.sae.top_k = 8;
  REQUIRE(run(a, &run_train) == 0);
  check_same_run(tmp.path() / "k8", tmp.path() / "sweep" / "k8");
  config::TrainSettings b = topk_settings(acts, tmp.path() / "k16");
  b.trainer.lr = 0.001;
  REQUIRE(run(b, &run_train) == 0);
  check_same_run(tmp.path() / "k16", tmp.path() / "sweep" / "k16");
}

TEST_CASE("a sweep over two hooks trained on the fly equals each hook trained alone",
          "[runners][train]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  const std::string hook1 = "blocks.1.hook_resid_post";
  config::TrainSettings s = topk_settings("unused", tmp.path() / "sweep");
  s.trainer.total_training_tokens = 4096;
  s.trainer.log_frequency = 4;
  s.sae.norm_activation = dictionaries::NormActivation::kTokenWise;
  use_live_source(s, {hook1, kHook});
  s.sweep = {{"l1", {"sae.hook_point_in=" + hook1, "sae.hook_point_out=" + hook1}}, {"l3", {}}};
  REQUIRE(run(s, &run_train) == 0);

  for (const auto& [name, hook] : {std::pair{"l1", hook1}, std::pair{"l3", std::string(kHook)}}) {
    INFO(name);
    const auto metrics = read_metrics(tmp.path() / "sweep" / name / "metrics.jsonl");
    REQUIRE(metrics.size() == 4);  // 16 steps of 256 tokens
    CHECK(metrics.back().at("metrics/l0").get<double>() == Approx(16.0).margin(1e-9));
    config::TrainSettings alone = s;
    alone.sweep.clear();
    alone.sae.hook_point_in = hook;
    alone.sae.hook_point_out = hook;
    alone.activation_factory.hook_points = {hook};
    alone.trainer.exp_result_path = tmp.path() / name;
    REQUIRE(run(alone, &run_train) == 0);
    check_same_run(tmp.path() / name, tmp.path() / "sweep" / name);
  }
}

TEST_CASE("sweep items that change run-level keys are rejected", "[runners][train]") {
  config::TrainSettings s = topk_settings("unused", "unused");
  s.sweep = {{"a", {"trainer.total_training_tokens=100"}}};
  CHECK(error_of(s).find("sweep item a: trainer.total_training_tokens is shared") !=
        std::string::npos);
  s.sweep = {{"a", {"activation_factory.batch_size=8"}}};
  CHECK(error_of(s).find("is not a sae.*, initializer.* or trainer.* key") != std::string::npos);
  s.sweep = {{"a", {"sae.top_k=100000"}}};
  CHECK(error_of(s).find("top_k") != std::string::npos);
}

TEST_CASE("an amp_dtype other than sae.dtype and eval: true are rejected", "[runners][train]") {
  config::TrainSettings s = topk_settings("unused", "unused");
  s.trainer.amp_dtype = DType::kBFloat16;
  CHECK_THROWS_AS(run(s, &run_train), UnsupportedError);
  CHECK(error_of(s).find("set trainer.amp_dtype: float32 or null (got bfloat16)") !=
        std::string::npos);
  s.trainer.amp_dtype = DType::kFloat32;
  s.eval = true;
  CHECK_THROWS_AS(run(s, &run_train), UnsupportedError);
}

TEST_CASE("a missing shard folder is rejected naming it", "[runners][train]") {
  saes::testing::TempDir tmp;
  config::TrainSettings s = topk_settings(tmp.path() / "no-shards", tmp.path() / "run");
  CHECK_THROWS_AS(run(s, &run_train), IoError);
  CHECK(error_of(s).find("no-shards") != std::string::npos);
}

TEST_CASE("activation_factory.packing fills contexts from text that marks no document boundary",
          "[runners][train]") {
  SAES_REQUIRE_ASSETS();
  // The offline TinyStories text separates stories by blank lines only: one document. Without
  // packing it gives one truncated context; packed, every token lands in a full context.
  lm::LanguageModelConfig model;
  model.model_name = "stories260K";
  model.model_from_pretrained_path = asset("llama2c-stories260K/stories260K.bin");
  const lm::LanguageModel lm = lm::load_language_model(model);
  data::DatasetConfig text;
  text.paths = {asset("corpora/tinystories/tinystories_validation_head.txt").string()};
  text.separator = "<|endoftext|>";
  data::ActivationFactoryConfig factory;
  factory.context_size = 128;
  for (const bool packing : {false, true}) {
    INFO("packing " << packing);
    factory.packing = packing;
    data::TokenBatcher batcher =
        make_token_batcher(text, lm, factory_batcher_options(factory, model));
    std::int64_t rows = 0, full = 0;
    while (rows < 64) {
      auto batch = batcher.next_batch(16);
      if (!batch) break;
      rows += batch->tokens.size(0);
      full += batch->attention_mask.sum(1).eq(128).sum().item<std::int64_t>();
    }
    if (packing) {
      CHECK(rows == 64);
      CHECK(full == 64);
    } else {
      CHECK(rows == 1);
    }
  }
}

}  // namespace
}  // namespace saes::runners

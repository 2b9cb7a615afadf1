// In-process tests of run_analyze_eval on stories260K: with a dataset source it splices an identity
// SAE into the model (loss recovered 1) on exactly the token budget; with cached activations only
// it reports reconstruction metrics; a dataset source without a model is rejected.
#include "saes/runners/analyze_eval.h"

#include <string>

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/eye.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/dictionaries/clt.h"
#include "saes/dictionaries/sae.h"
#include "saes/distributed/single_process_communicator.h"
#include "saes/runners/runners.h"

#include "support/temp_dir.h"

namespace saes::runners {
namespace {

namespace fs = std::filesystem;
using Catch::Matchers::WithinAbs;

constexpr const char* kHook = "blocks.1.hook_resid_post";

fs::path asset(const std::string& name) { return saes::testing::test_assets_dir() / name; }
fs::path stories_model() { return asset("llama2c-stories260K/stories260K.bin"); }
std::string stories_text() { return asset("corpora/tinystories/tinystories_sample.txt").string(); }

/// x̂ = relu([x, −x])·[I; −I] = x exactly.
dictionaries::SparseAutoEncoder identity_sae(std::int64_t d) {
  dictionaries::SparseDictionaryConfig cfg;
  cfg.d_model = d;
  cfg.expansion_factor = 2.0;
  cfg.act_fn = dictionaries::ActFn::kRelu;
  cfg.norm_activation = dictionaries::NormActivation::kInference;
  cfg.use_decoder_bias = false;
  cfg.sparsity_include_decoder_norm = false;
  cfg.hook_point_in = cfg.hook_point_out = kHook;
  dictionaries::SparseAutoEncoder sae(cfg);
  const at::Tensor eye = at::eye(d, at::kFloat);
  for (auto& p : sae.parameters()) {
    if (p.name == "W_E") p.value.copy_(at::cat({eye, eye.neg()}, 1));
    if (p.name == "W_D") p.value.copy_(at::cat({eye, eye.neg()}, 0));
    if (p.name == "b_E") p.value.zero_();
  }
  return sae;
}

config::AnalyzeSettings settings_with(data::ActivationSourceConfig source) {
  config::AnalyzeSettings s;
  s.activation_factory.sources = {std::move(source)};
  s.activation_factory.target = data::ActivationTarget::kActivations1d;
  s.activation_factory.hook_points = {kHook};
  s.activation_factory.batch_size = 256;
  s.activation_factory.context_size = 64;
  s.eval = analysis::EvalConfig{};
  s.eval->total_eval_tokens = 300;
  s.eval->batch_size = 4;
  return s;
}

std::map<std::string, double> evaluate(const config::AnalyzeSettings& s) {
  Logger logger(LogLevel::kError);
  distributed::SingleProcessCommunicator world;
  RunContext context{logger, world, ProgressMode::kOff};
  auto sae = identity_sae(64);
  return run_analyze_eval(s, sae, context);
}

/// 512 tokens of stories260K activations at `hooks`, 1-D shards under `out`.
void generate_cached(const fs::path& out, const std::vector<std::string>& hooks) {
  config::GenerateSettings g;
  g.model_name = "stories260K";
  g.model.model_from_pretrained_path = stories_model();
  g.dataset_name = "tinystories";
  g.dataset.paths = {stories_text()};
  g.hook_points = hooks;
  g.output_dir = out;
  g.target = data::ActivationTarget::kActivations1d;
  g.context_size = 64;
  g.batch_size = 256;
  g.total_tokens = 512;
  g.device_type = "cpu";
  Logger logger(LogLevel::kError);
  distributed::SingleProcessCommunicator world;
  RunContext context{logger, world, ProgressMode::kOff};
  REQUIRE(run_generate(g, context) == 0);
}

}  // namespace

TEST_CASE("analyze eval splices the dictionary into the model on exactly the token budget",
          "[evaluation]") {
  SAES_REQUIRE_ASSETS();
  data::ActivationSourceConfig source;
  source.name = "stories";
  auto s = settings_with(source);
  s.model = lm::LanguageModelConfig{};
  s.model->model_from_pretrained_path = stories_model();
  s.datasets["stories"].paths = {stories_text()};
  const auto m = evaluate(s);
  CHECK(m.at("n_tokens") == 300.0);
  CHECK_THAT(m.at("loss_recovered"), WithinAbs(1.0, 1e-5));
  CHECK_THAT(m.at("kl_div_spliced"), WithinAbs(0.0, 1e-6));
  CHECK(m.at("ce_loss_zero_ablated") > m.at("ce_loss_clean"));
  CHECK(m.count("ce_loss_mean_ablated") == 1);
}

TEST_CASE("analyze eval on cached activations reports reconstruction metrics only",
          "[evaluation]") {
  SAES_REQUIRE_ASSETS();
  const saes::testing::TempDir dir;
  generate_cached(dir / "acts", {kHook});
  data::ActivationSourceConfig source;
  source.type = data::SourceType::kActivations;
  source.name = "cached";
  source.path.root = dir / "acts";
  const auto m = evaluate(settings_with(source));
  CHECK(m.at("n_tokens") == 300.0);
  CHECK_THAT(m.at("fvu"), WithinAbs(0.0, 1e-10));
  CHECK(m.count("loss_recovered") == 0);
}

TEST_CASE("analyze eval rejects a dataset source without a model", "[evaluation]") {
  data::ActivationSourceConfig source;
  source.name = "stories";
  CHECK_THROWS_AS(evaluate(settings_with(source)), ConfigError);
}

}  // namespace saes::runners

namespace saes::runners {

TEST_CASE("analyze eval on cached activations covers every hook of a CLT", "[evaluation][clt]") {
  SAES_REQUIRE_ASSETS();
  const saes::testing::TempDir dir;
  const std::vector<std::string> hooks = {"blocks.0.hook_resid_post", kHook};
  generate_cached(dir / "acts", hooks);
  Logger logger(LogLevel::kError);
  distributed::SingleProcessCommunicator world;
  RunContext context{logger, world, ProgressMode::kOff};

  // Layer l: relu([x_l, −x_l])·[I; −I] = x_l into its own layer, nothing into the later one;
  // then half of layer 0's identity also writes into layer 1 (so layer 1 gets x_1 + x_0/2).
  dictionaries::SparseDictionaryConfig cfg;
  cfg.sae_type = dictionaries::SaeType::kClt;
  cfg.d_model = 64;
  cfg.expansion_factor = 2.0;
  cfg.act_fn = dictionaries::ActFn::kRelu;
  cfg.norm_activation = dictionaries::NormActivation::kInference;
  cfg.use_decoder_bias = false;
  cfg.sparsity_include_decoder_norm = false;
  cfg.hook_points_in = cfg.hook_points_out = hooks;
  dictionaries::CrossLayerTranscoder clt(cfg);
  const at::Tensor eye = at::eye(64, at::kFloat);
  for (auto& p : clt.parameters()) {
    if (p.name == "W_E") p.value.copy_(at::cat({eye, eye.neg()}, 1).expand({2, 64, 128}));
    if (p.name == "W_D.0") p.value[0].copy_(at::cat({eye, eye.neg()}, 0));
    if (p.name == "W_D.1") p.value[1].copy_(at::cat({eye, eye.neg()}, 0));
  }
  data::ActivationSourceConfig source;
  source.type = data::SourceType::kActivations;
  source.name = "cached";
  source.path.root = dir / "acts";
  auto s = settings_with(source);
  s.activation_factory.hook_points = hooks;
  auto m = run_analyze_eval(s, clt, context);
  CHECK(m.at("n_tokens") == 300.0);
  CHECK_THAT(m.at("fvu"), WithinAbs(0.0, 1e-10));
  for (auto& p : clt.parameters()) {
    if (p.name == "W_D.1") p.value[0].copy_(at::cat({eye, eye.neg()}, 0) * 0.5);
  }
  m = run_analyze_eval(s, clt, context);
  CHECK(m.at("fvu") > 0.01);  // layer 1 now off by x_0/2: the metrics read both layers
  s.activation_factory.hook_points = {kHook};
  CHECK_THROWS_WITH(run_analyze_eval(s, clt, context), Catch::Contains("blocks.0.hook_resid_post"));
}

}  // namespace saes::runners

// In-process tests of run_analyze on real stories260K activations (2-D shards generated into a
// TempDir) with a small TopK SAE saved as a run folder: stored maxima and top contexts equal a
// brute-force pass over the same tokens, bands stay under their ceilings, token texts come from
// the tokenizer; bad inputs (missing run folder, wrong d_model, unknown hook, two processes) fail
// with one-line errors.
#include <algorithm>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/analysis/store.h"
#include "saes/config/config_loader.h"
#include "saes/core/error.h"
#include "saes/data/activation_stream.h"
#include "saes/dictionaries/registry.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/distributed/single_process_communicator.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/llama2c_loader.h"
#include "saes/runners/runners.h"
#include "saes/training/dictionary_module.h"

#include "support/temp_dir.h"

namespace saes::runners {
namespace {

namespace fs = std::filesystem;

constexpr const char* kHook = "blocks.3.hook_resid_post";
constexpr std::int64_t kContext = 64;
constexpr std::int64_t kTokens = 64 * 48;

fs::path asset(const std::string& name) { return saes::testing::test_assets_dir() / name; }

int run(const auto& settings, auto runner) {
  Logger logger(LogLevel::kError);
  distributed::SingleProcessCommunicator world;
  RunContext context{logger, world, ProgressMode::kOff};
  return runner(settings, context);
}

/// 48 contexts of 64 tokens, layer-3 residual stream, as 2-D shards under `root`.
fs::path generate_into(const fs::path& root) {
  config::GenerateSettings s;
  s.model_name = "stories260K";
  s.model.model_from_pretrained_path = asset("llama2c-stories260K/stories260K.bin");
  s.dataset_name = "tinystories";
  s.dataset.paths = {asset("corpora/tinystories/tinystories_validation_head.txt").string()};
  s.hook_points = {kHook};
  s.output_dir = root / "acts";
  s.target = data::ActivationTarget::kActivations2d;
  s.context_size = kContext;
  s.packing = true;
  s.model_batch_size = 16;
  s.batch_size = 16;
  s.total_tokens = kTokens;
  s.override_dtype = DType::kFloat32;
  s.device_type = "cpu";
  REQUIRE(run(s, &run_generate) == 0);
  return s.output_dir;
}

/// The shards of generate_into, generated once per test process.
fs::path generate_shards() {
  static const saes::testing::TempDir root;
  static const fs::path acts = generate_into(root.path());
  return acts;
}

/// A run folder as saes-train leaves it: config.resolved.yaml and dataset-wise weights.
fs::path make_run(const fs::path& root) {
  config::TrainSettings s;
  s.sae_name = "t";
  s.sae_series = "t";
  s.sae.hook_point_in = kHook;
  s.sae.hook_point_out = kHook;
  s.sae.d_model = 64;
  s.sae.expansion_factor = 2;
  s.sae.act_fn = dictionaries::ActFn::kTopK;
  s.sae.top_k = 8;
  s.sae.norm_activation = dictionaries::NormActivation::kDatasetWise;
  s.trainer.exp_result_path = root / "run";
  auto dict = dictionaries::make_dictionary(s.sae);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  dict->init_parameters({0.1, 0.1, std::nullopt}, gen);
  dict->set_dataset_norm(kHook, 2.5);
  fs::create_directories(root / "run");
  config::save_resolved_config(s, root / "run");
  dict->save(root / "run" / training::kWeightsFileName);
  return root / "run";
}

config::AnalyzeSettings analyze_settings(const fs::path& acts, const fs::path& run_dir,
                                         const fs::path& out) {
  config::AnalyzeSettings s;
  s.sae.pretrained_name_or_path = run_dir.string();
  s.sae_name = "t";
  s.sae_series = "t";
  data::ActivationSourceConfig source;
  source.type = data::SourceType::kActivations;
  source.name = "acts";
  source.path.root = acts;
  s.activation_factory.sources = {source};
  s.activation_factory.target = data::ActivationTarget::kActivations2d;
  s.activation_factory.hook_points = {kHook};
  s.activation_factory.batch_size = 8;
  s.model = lm::LanguageModelConfig{};
  s.model->model_from_pretrained_path = asset("llama2c-stories260K/stories260K.bin");
  s.analyzer.total_analyzing_tokens = kTokens;
  s.analyzer.subsamples = {{"half", {0.5, 4, std::nullopt}}, {"top", {1.0, 5, std::nullopt}}};
  s.output_dir = out;
  s.device_type = "cpu";
  s.logging.progress = ProgressMode::kOff;
  return s;
}

config::TrainSettings read_train(const fs::path& run_dir) {
  const fs::path yaml = run_dir / config::kResolvedConfigName;
  return config::parse_train_settings(io::read_file(yaml), yaml.string(), {},
                                      config::Validation::kOff);
}

/// Brute force: every context's per-feature peak [n_contexts, d_sae], from the same shards.
at::Tensor brute_peaks(const config::AnalyzeSettings& s, const fs::path& run_dir) {
  const auto train = read_train(run_dir);
  auto dict = dictionaries::make_dictionary(train.sae);
  dict->load(run_dir / training::kWeightsFileName);
  dict->fold_activation_scale();
  Logger logger(LogLevel::kError);
  data::StreamInputs in;
  auto stream = data::make_activation_stream(s.activation_factory, in, logger);
  std::vector<at::Tensor> peaks;
  std::int64_t seen = 0;
  while (seen < s.analyzer.total_analyzing_tokens) {
    auto b = stream->next();
    if (!b) break;
    const at::Tensor x = b->acts.at(kHook);
    const at::Tensor f = dict->encode(x.flatten(0, 1)).view({x.size(0), x.size(1), -1});
    peaks.push_back((f * b->mask.unsqueeze(-1)).amax({1}));
    seen += b->n_tokens;
  }
  return at::cat(peaks);
}

struct Fixture {
  saes::testing::TempDir tmp;
  fs::path acts = generate_shards();
  fs::path run_dir = make_run(tmp.path());
};

}  // namespace

TEST_CASE("analysis of stories260K matches a brute-force pass", "[runners][analysis]") {
  SAES_REQUIRE_ASSETS();
  Fixture fx;
  const auto s = analyze_settings(fx.acts, fx.run_dir, fx.tmp.path() / "out");
  REQUIRE(run(s, &run_analyze) == 0);
  const analysis::AnalysisStore store(fx.tmp.path() / "out" / "default.sqlite");
  const at::Tensor peaks = brute_peaks(s, fx.run_dir);
  REQUIRE(store.d_sae() == 128);
  REQUIRE(store.meta().at("n_contexts") == std::to_string(peaks.size(0)));
  CHECK(store.vocab().size() == 512);
  for (std::int64_t i = 0; i < store.d_sae(); ++i) {
    const auto d = store.feature(i);
    REQUIRE(d.has_value());
    const at::Tensor column = std::get<0>(peaks.select(1, i).sort(0, true));
    CHECK(d->summary.max_act == Approx(column[0].item<double>()).epsilon(1e-5));
    std::vector<float> top;
    for (const auto& c : d->contexts) {
      if (c.band == "top") top.push_back(c.context.score);
      if (c.band == "half") CHECK(c.context.score <= 0.5 * d->summary.max_act + 1e-6);
      CHECK(c.context.score == Approx(peaks[c.context.provenance.context_index][i].item<float>()));
    }
    const auto positive = column.gt(0).sum().item<std::int64_t>();
    REQUIRE(static_cast<std::int64_t>(top.size()) == std::min<std::int64_t>(5, positive));
    for (std::size_t k = 0; k < top.size(); ++k) {
      CHECK(top[k] == Approx(column[static_cast<std::int64_t>(k)].item<float>()).epsilon(1e-5));
    }
    CHECK(d->top_logits.size() == 10);
    CHECK(d->decoder_cosines.empty());  // an SAE has one head: no H×H decoder matrices
  }
  // the logit lens (DLA) written out in float64: each decoder row through ln_final (RMSNorm of
  // the row alone, with the model's eps, then the norm's weight) and the tied unembedding
  const auto train = read_train(fx.run_dir);
  auto dict = dictionaries::make_dictionary(train.sae);
  dict->load(fx.run_dir / training::kWeightsFileName);
  const auto model = lm::load_llama2c(asset("llama2c-stories260K/stories260K.bin"));
  const at::Tensor rows = dict->feature_directions().to(at::kDouble);
  const at::Tensor normalized =
      rows * at::rsqrt(rows.pow(2).mean(-1, true) + model.spec().norm_eps) *
      model.weight("ln_final.w").to(at::kDouble);
  const at::Tensor w_u =
      model.weight(model.spec().tied_embeddings ? "embed.W_E" : "unembed.W_U").to(at::kDouble);
  const at::Tensor logits = at::matmul(normalized, w_u.t());
  REQUIRE(store.meta().at("logit_lens").find("ln_final") != std::string::npos);
  for (std::int64_t i = 0; i < store.d_sae(); ++i) {
    const auto d = store.feature(i);
    const auto [top, top_ids] = logits[i].topk(10);
    const auto [bottom, bottom_ids] = logits[i].topk(10, 0, false);
    for (std::int64_t k = 0; k < 10; ++k) {
      const auto& t = d->top_logits[static_cast<std::size_t>(k)];
      const auto& b = d->bottom_logits[static_cast<std::size_t>(k)];
      // float32 over d_model = 64 terms of O(1): 1e-4 absolute
      CHECK(t.value == Approx(top[k].item<double>()).margin(1e-4));
      CHECK(b.value == Approx(bottom[k].item<double>()).margin(1e-4));
      CHECK(logits[i][t.token].item<double>() == Approx(t.value).margin(1e-4));
    }
  }
}

TEST_CASE("analysis rejects bad inputs with one-line errors", "[runners][analysis]") {
  SAES_REQUIRE_ASSETS();
  Fixture fx;
  const auto base = analyze_settings(fx.acts, fx.run_dir, fx.tmp.path() / "out");
  auto expect_one_line = [](const auto& settings, const std::string& needle) {
    try {
      run(settings, &run_analyze);
      FAIL("expected an error mentioning " << needle);
    } catch (const saes::Error& e) {
      const std::string what = e.what();
      CHECK(what.find(needle) != std::string::npos);
      CHECK(what.find('\n') == std::string::npos);
    }
  };
  auto missing = base;
  missing.sae.pretrained_name_or_path = (fx.tmp.path() / "nowhere").string();
  expect_one_line(missing, "nowhere");
  auto hook = base;
  hook.activation_factory.hook_points = {"blocks.9.hook_resid_post"};
  expect_one_line(hook, "blocks.3.hook_resid_post");
  // A run folder whose dictionary expects another width than the shards hold.
  auto train = read_train(fx.run_dir);
  train.sae.d_model = 32;
  const fs::path wide = fx.tmp.path() / "wide";
  fs::create_directories(wide);
  config::save_resolved_config(train, wide);
  auto dict = dictionaries::make_dictionary(train.sae);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  dict->init_parameters({0.1, 0.1, std::nullopt}, gen);
  dict->set_dataset_norm(kHook, 2.5);
  dict->save(wide / training::kWeightsFileName);
  auto width = base;
  width.sae.pretrained_name_or_path = wide.string();
  expect_one_line(width, "64");
  auto parallel = base;
  parallel.parallelism.model_parallel_size = 2;  // one process launched
  CHECK_THROWS_AS(run(parallel, &run_analyze), saes::ConfigError);
  auto data_parallel = base;
  data_parallel.parallelism.data_parallel_size = 2;
  CHECK_THROWS_AS(run(data_parallel, &run_analyze), saes::UnsupportedError);
}

}  // namespace saes::runners

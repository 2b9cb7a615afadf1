// Contract tests of the config loader: dump -> parse round trips for every settings struct, and one
// test per kind of bad input checking that its one-line message names file:line:col and key path.
#include "saes/config/config_loader.h"

#include <catch2/catch.hpp>
#include <fstream>

#include "saes/core/error.h"
#include "support/temp_dir.h"

namespace saes::config {
namespace {

using Catch::Matchers::Contains;

// Line numbers below refer to this text (line 1 = `sae_name`).
constexpr std::string_view kTrainYaml = R"(sae_name: tiny-sae
sae_series: tests
sae:
  sae_type: sae
  d_model: 64
  expansion_factor: 4
  act_fn: topk
  top_k: 8
  hook_point_in: blocks.4.hook_resid_post
  hook_point_out: blocks.4.hook_resid_post
trainer:
  lr: 2.0e-2
  initial_k: 64
  k_warmup_steps: 200
  total_training_tokens: 2_000_000
activation_factory:
  target: activations-1d
  hook_points: [blocks.4.hook_resid_post]
  batch_size: 2048
  sources:
    - type: activations
      name: tiny
      path: /data/acts
)";

std::string with_line(std::string_view yaml, std::string_view after, std::string_view line) {
  std::string text(yaml);
  const std::size_t at = text.find(after);
  REQUIRE(at != std::string::npos);
  text.insert(text.find('\n', at) + 1, std::string(line) + "\n");
  return text;
}

std::string replaced(std::string_view yaml, std::string_view from, std::string_view to) {
  std::string text(yaml);
  const std::size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

std::string train_error(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_train_settings(yaml, "train.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("expected a ConfigError");
  return {};
}

GenerateSettings filled_generate() {
  GenerateSettings s;
  s.model_name = "stories260K";
  s.model.model_name = "llama2c/stories260K";
  s.model.model_from_pretrained_path = "data/stories260K/stories260K.bin";
  s.model.bos_token_id = 1;
  s.model.dtype = DType::kBFloat16;
  s.model.backend = lm::LmBackend::kHuggingFace;
  s.dataset_name = "TinyStories";
  s.dataset.dataset_name_or_path = "data/tinystories";
  s.dataset.is_dataset_on_disk = true;
  s.hook_points = {"blocks.0.hook_resid_post", "blocks.4.hook_resid_post"};
  s.output_dir = "out/acts";
  s.target = data::ActivationTarget::kActivations1d;
  s.context_size = 256;
  s.model_batch_size = 8;
  s.batch_size = 4096;
  s.buffer_size = 16384;
  s.buffer_shuffle = data::BufferShuffleConfig{7, "cpu"};
  s.total_tokens = 1'000'000;
  s.n_samples_per_chunk = 512;
  s.num_workers = 2;
  s.n_shards = 4;
  s.start_shard = 1;
  s.ignore_token_ids = std::vector<std::int64_t>{0, 1, 2};
  s.override_dtype = DType::kFloat16;
  s.device_type = "cpu";
  s.seed = 7;
  s.threads = 2;
  s.logging = {LogLevel::kDebug, ProgressMode::kPlain, 5.5};
  return s;
}

TrainSettings filled_train() {
  TrainSettings s = parse_train_settings(kTrainYaml, "train.yaml");
  s.sae.act_fn = dictionaries::ActFn::kJumpRelu;
  s.sae.norm_activation = dictionaries::NormActivation::kTokenWise;
  s.sae.sae_pretrained_name_or_path = "null";  // a string that reads as null unless quoted
  s.sae.jumprelu_threshold_window = 4.0;
  s.sae.dtype = DType::kFloat64;
  s.initializer = training::InitializerConfig{};
  s.initializer->bias_init_method = training::BiasInitMethod::kGeometricMedian;
  s.initializer->init_log_jumprelu_threshold_value = -2.302585092994046;
  s.initializer->grid_search_init_norm = true;
  s.initializer->d_active_subspace = 16;
  s.trainer.l1_coefficient = std::nullopt;
  s.trainer.lp_coefficient = 3e-6;
  s.trainer.sparsity_loss_type = training::SparsityLossType::kTanhQuad;
  s.trainer.lr_warm_up_steps = training::StepsOrFraction::of_fraction(1.0);
  s.trainer.lr_cool_down_steps = training::StepsOrFraction::of_steps(1);
  s.trainer.betas = {0.8, 0.99};
  s.trainer.lr_end_ratio = 1.0 / 3.0;
  s.trainer.lr_scheduler_name = training::LrScheduler::kCosineAnnealingWarmup;
  s.trainer.from_pretrained_path = "results/checkpoints/step_100";
  data::ActivationSourceConfig dataset_source;
  dataset_source.type = data::SourceType::kDataset;
  dataset_source.name = "stories";
  dataset_source.sample_weights = 0.5;
  s.activation_factory.sources.push_back(dataset_source);
  data::ActivationSourceConfig& cached = s.activation_factory.sources[0];
  cached.path = {"", {{"blocks.4.hook_resid_post", "/data/acts/l4"}}};
  cached.dtype = DType::kFloat32;
  cached.device = "cuda";
  cached.prefetch = 2;
  s.activation_factory.context_size = 128;
  s.model = lm::LanguageModelConfig{};
  s.model_name = "gpt2";
  s.datasets["stories"].dataset_name_or_path = "roneneldan/TinyStories";
  s.datasets["stories"].cache_dir = "cache";
  s.eval = true;
  s.parallelism = {2, 1};
  s.fold_activation_scale = false;
  s.logging.tensorboard = true;
  s.logging.progress = ProgressMode::kPlain;
  return s;
}

AnalyzeSettings filled_analyze() {
  AnalyzeSettings s;
  s.sae = {"results/tiny", false, false, "cuda:1", DType::kFloat16};
  s.sae_name = "tiny";
  s.sae_series = "tests";
  s.activation_factory = filled_train().activation_factory;
  s.activation_factory.target = data::ActivationTarget::kActivations2d;
  s.model = lm::LanguageModelConfig{};
  s.datasets["stories"] = {};
  s.analyzer.total_analyzing_tokens = 100'000'000;
  s.analyzer.subsamples["subsampling_80%"] = {0.8, 10, std::nullopt};
  s.analyzer.ignore_token_ids = std::vector<std::int64_t>{};
  s.eval = analysis::EvalConfig{5000};
  s.output_dir = "analysis out";
  s.feature_analysis_name = "";
  return s;
}

ConvertSettings filled_convert() {
  ConvertSettings s;
  s.input = "results/tiny";
  s.output = "export/tiny-saelens";
  s.conversion = {convert::ConvertFormat::kSaeLens, 5, true, convert::ScaleFolding::kUnfold,
                  DType::kFloat16, convert::InputFormat::kSaeLens, true,
                  "analysis/default.sqlite", 3};
  s.activation_factory = filled_train().activation_factory;
  s.model = lm::LanguageModelConfig{};
  s.datasets["stories"] = {};
  s.parallelism.model_parallel_size = 2;
  return s;
}

}  // namespace

TEST_CASE("default settings survive dump then parse", "[config]") {
  CHECK(parse_generate_settings(dump_yaml(GenerateSettings{}), "x", {}, Validation::kOff) ==
        GenerateSettings{});
  CHECK(parse_train_settings(dump_yaml(TrainSettings{}), "x", {}, Validation::kOff) ==
        TrainSettings{});
  CHECK(parse_analyze_settings(dump_yaml(AnalyzeSettings{}), "x", {}, Validation::kOff) ==
        AnalyzeSettings{});
  CHECK(parse_convert_settings(dump_yaml(ConvertSettings{}), "x", {}, Validation::kOff) ==
        ConvertSettings{});
}

TEST_CASE("filled settings survive dump then parse and dump identically", "[config]") {
  const GenerateSettings generate = filled_generate();
  const std::string generate_yaml = dump_yaml(generate);
  CHECK(dump_yaml(parse_generate_settings(generate_yaml, "g")) == generate_yaml);
  CHECK(parse_generate_settings(generate_yaml, "g") == generate);

  const TrainSettings train = filled_train();
  const std::string train_yaml = dump_yaml(train);
  CHECK(dump_yaml(parse_train_settings(train_yaml, "t")) == train_yaml);
  CHECK(parse_train_settings(train_yaml, "t") == train);

  const AnalyzeSettings analyze = filled_analyze();
  const std::string analyze_yaml = dump_yaml(analyze);
  CHECK(dump_yaml(parse_analyze_settings(analyze_yaml, "a", {}, Validation::kOff)) == analyze_yaml);
  CHECK(parse_analyze_settings(analyze_yaml, "a", {}, Validation::kOff) == analyze);

  const ConvertSettings convert = filled_convert();
  const std::string convert_yaml = dump_yaml(convert);
  CHECK(dump_yaml(parse_convert_settings(convert_yaml, "c")) == convert_yaml);
  CHECK(parse_convert_settings(convert_yaml, "c") == convert);
}

TEST_CASE("a train config reads into typed fields with upstream defaults", "[config]") {
  const TrainSettings s = parse_train_settings(kTrainYaml, "train.yaml");
  CHECK(s.sae.d_sae() == 256);
  CHECK(s.sae.act_fn == dictionaries::ActFn::kTopK);
  CHECK(s.trainer.lr == 2.0e-2);
  CHECK(s.trainer.total_training_tokens == 2'000'000);
  CHECK(s.trainer.k_warmup_steps == training::StepsOrFraction::of_steps(200));
  CHECK(s.trainer.lr_cool_down_steps == training::StepsOrFraction::of_fraction(0.2));
  CHECK(s.trainer.lr_cool_down_steps.resolve(976) == 195);
  CHECK(s.trainer.l1_coefficient_warmup_steps.resolve(976) == 97);
  CHECK(s.trainer.lr_end_ratio == 1.0 / 32.0);
  CHECK(s.activation_factory.sources.at(0).path.for_hook("blocks.4.hook_resid_post") ==
        "/data/acts/blocks.4.hook_resid_post");
  CHECK(s.initializer == std::nullopt);
  CHECK(s.logging.level == LogLevel::kInfo);
}

TEST_CASE("steps-or-fraction fields keep the form they were written in", "[config]") {
  const TrainSettings s =
      parse_train_settings(kTrainYaml, "train.yaml",
                           {"trainer.lr_warm_up_steps=1.0", "trainer.lr_cool_down_steps=1",
                            "trainer.l1_coefficient_warmup_steps=5e-2"});
  CHECK(s.trainer.lr_warm_up_steps == training::StepsOrFraction::of_fraction(1.0));
  CHECK(s.trainer.lr_cool_down_steps == training::StepsOrFraction::of_steps(1));
  CHECK(s.trainer.l1_coefficient_warmup_steps == training::StepsOrFraction::of_fraction(0.05));
  const std::string yaml = dump_yaml(s);
  CHECK_THAT(yaml, Contains("lr_warm_up_steps: 1.0\n") && Contains("lr_cool_down_steps: 1\n"));
}

TEST_CASE("integers may be written with underscores or as whole floats", "[config]") {
  const TrainSettings s =
      parse_train_settings(kTrainYaml, "train.yaml", {"trainer.total_training_tokens=8e8"});
  CHECK(s.trainer.total_training_tokens == 800'000'000);
  CHECK_THAT(train_error(std::string(kTrainYaml), {"trainer.total_training_tokens=1.5"}),
             Contains("trainer.total_training_tokens: expected an integer, got \"1.5\""));
}

TEST_CASE("malformed YAML names file, line, column and the parser message", "[config]") {
  const std::string error =
      train_error(replaced(kTrainYaml, "[blocks.4.hook_resid_post]", "[blocks.4"));
  CHECK(error == "train.yaml:19:13: invalid YAML: end of sequence flow not found");
}

TEST_CASE("logging.tensorboard is a saes-train key", "[config]") {
  CHECK_FALSE(parse_train_settings(kTrainYaml, "train.yaml").logging.tensorboard);
  const TrainSettings on =
      parse_train_settings(kTrainYaml, "train.yaml", {"logging.tensorboard=true"});
  CHECK(on.logging.tensorboard);
  CHECK(on.logging.level == LogLevel::kInfo);  // the shared logging keys keep their defaults
  // Only saes-train writes TensorBoard files: the other executables do not know the key.
  CHECK_THROWS_WITH(parse_analyze_settings(dump_yaml(AnalyzeSettings{}), "analyze.yaml",
                                           {"logging.tensorboard=true"}, Validation::kOff),
                    Contains("logging.tensorboard") && Contains("unknown key"));
}

TEST_CASE("an unknown key is an error that suggests the closest valid key", "[config]") {
  CHECK(train_error(with_line(kTrainYaml, "  lr: 2.0e-2", "  lrr: 1")) ==
        "train.yaml:13:3: trainer.lrr: unknown key (did you mean \"lr\"?)");
  CHECK(train_error(replaced(kTrainYaml, "d_model: 64", "d_modle: 64")) ==
        "train.yaml:5:3: sae.d_modle: unknown key (did you mean \"d_model\"?)");
  CHECK_THAT(train_error(with_line(kTrainYaml, "  lr: 2.0e-2", "  zzz: 1")),
             Contains("trainer.zzz: unknown key; see docs/config.md"));
}

TEST_CASE("a value of the wrong type names the key, what was expected and what was found",
          "[config]") {
  CHECK(train_error(replaced(kTrainYaml, "lr: 2.0e-2", "lr: abc")) ==
        "train.yaml:12:7: trainer.lr: expected a number, got \"abc\"");
  CHECK(train_error(replaced(kTrainYaml, "trainer:\n", "trainer: [1, 2]\nignored:\n")) ==
        "train.yaml:11:10: trainer: expected a map, got a list");
  CHECK(train_error(with_line(kTrainYaml, "  top_k: 8", "  use_decoder_bias: 1")) ==
        "train.yaml:9:21: sae.use_decoder_bias: expected true or false, got \"1\"");
  CHECK(train_error(replaced(kTrainYaml, "hook_points: [blocks.4.hook_resid_post]",
                             "hook_points: {a: 1}")) ==
        "train.yaml:18:16: activation_factory.hook_points: expected a list, got a map");
  CHECK(train_error(with_line(kTrainYaml, "  top_k: 8", "  dtype: float8")) ==
        "train.yaml:9:10: sae.dtype: expected a dtype (float32, float16, bfloat16, float64, int64, "
        "int32, int16, int8, uint8, bool), got \"float8\"");
}

TEST_CASE("a bad enum value lists the allowed values", "[config]") {
  CHECK(train_error(replaced(kTrainYaml, "act_fn: topk", "act_fn: jumprelo")) ==
        "train.yaml:7:11: sae.act_fn: expected one of relu, jumprelu, topk, batchtopk, "
        "batchlayertopk, "
        "layertopk; got \"jumprelo\" (did you mean \"jumprelu\"?)");
}

TEST_CASE("a missing required key is named with the map that lacks it", "[config]") {
  CHECK(train_error(replaced(kTrainYaml, "  d_model: 64\n", "")) ==
        "train.yaml:4:3: sae.d_model: required key is missing");
  CHECK(train_error(replaced(kTrainYaml, "sae_name: tiny-sae\nsae_series: tests\n", "")) ==
        "train.yaml:1:1: sae_name: required key is missing (also missing: sae_series)");
}

TEST_CASE("keys saes rejects on purpose say why", "[config]") {
  CHECK_THAT(
      train_error(std::string(kTrainYaml) + "wandb: {wandb_project: x}\n"),
      Contains("train.yaml:24:1: wandb: not supported: saes does not log to Weights & Biases; "
               "metrics go to metrics.jsonl"));
  CHECK_THAT(train_error(std::string(kTrainYaml) + "mongo: {mongo_db: x}\n"),
             Contains("mongo: not supported"));
  CHECK_THAT(train_error(with_line(kTrainYaml, "  lr: 2.0e-2", "  gradient_accumulation_steps: 1")),
             Contains("trainer.gradient_accumulation_steps: not supported: it is unused upstream"));
}

TEST_CASE("source fields of the other source type are rejected", "[config]") {
  const std::string yaml = replaced(kTrainYaml, "type: activations", "type: dataset");
  CHECK(train_error(yaml) ==
        "train.yaml:23:7: activation_factory.sources[0].path: only valid with type: activations");
}

TEST_CASE("duplicate keys are errors", "[config]") {
  CHECK(train_error(with_line(kTrainYaml, "  lr: 2.0e-2", "  lr: 1.0")) ==
        "train.yaml:13:3: trainer.lr: duplicate key (first at line 12)");
}

TEST_CASE("overrides replace values, create maps and index lists", "[config]") {
  const TrainSettings s = parse_train_settings(
      kTrainYaml, "train.yaml",
      {"trainer.lr=1e-4", "initializer.grid_search_init_norm=true",
       "activation_factory.sources.0.path=/other",
       "activation_factory.hook_points=[blocks.4.hook_resid_post, blocks.5.hook_resid_post]",
       "trainer.lr=3e-4"});
  CHECK(s.trainer.lr == 3e-4);
  REQUIRE(s.initializer.has_value());
  CHECK(s.initializer->grid_search_init_norm);
  CHECK(s.activation_factory.sources.at(0).path.root == "/other");
  CHECK(s.activation_factory.hook_points.size() == 2);
  // List items also as messages write them (#22 item 9: `sources[0]` suggested "sources").
  const auto bracket = parse_train_settings(kTrainYaml, "train.yaml",
                                            {"activation_factory.sources[0].path=/third"});
  CHECK(bracket.activation_factory.sources.at(0).path.root == "/third");
  CHECK(train_error(std::string(kTrainYaml), {"activation_factory.sources[x].path=1"}) ==
        "--set activation_factory.sources[x].path=1: invalid list index in key path "
        "\"activation_factory.sources[x].path\" (write key[N] or key.N)");
}

TEST_CASE("errors in overridden values name the override", "[config]") {
  CHECK(train_error(std::string(kTrainYaml), {"trainer.lr=abc"}) ==
        "--set trainer.lr=abc: trainer.lr: expected a number, got \"abc\"");
  CHECK(train_error(std::string(kTrainYaml), {"trainer.lrr=1"}) ==
        "--set trainer.lrr=1: trainer.lrr: unknown key (did you mean \"lr\"?)");
  CHECK(train_error(std::string(kTrainYaml), {"trainer.lr"}) ==
        "--set trainer.lr: expected KEY.PATH=VALUE");
  CHECK(train_error(std::string(kTrainYaml), {"trainer..lr=1"}) ==
        "--set trainer..lr=1: invalid key path \"trainer..lr\" (empty segment)");
  CHECK(train_error(std::string(kTrainYaml), {"trainer.lr.x=1"}) ==
        "--set trainer.lr.x=1: trainer.lr: cannot set a key inside \"2.0e-2\"");
  CHECK(train_error(std::string(kTrainYaml), {"activation_factory.sources.3.name=x"}) ==
        "--set activation_factory.sources.3.name=x: activation_factory.sources: \"3\" is not an "
        "index of "
        "this list of 1 items");
  CHECK_THAT(train_error(std::string(kTrainYaml), {"trainer.lr=[1"}),
             Contains("--set trainer.lr=[1: invalid YAML value: "));
  CHECK(train_error(std::string(kTrainYaml), {"sae2.d_model=1"}) ==
        "--set sae2.d_model=1: sae2: unknown key (did you mean \"sae\"?)");
}

TEST_CASE("validation reports every problem, one located line each", "[config]") {
  std::string yaml = replaced(kTrainYaml, "top_k: 8", "top_k: 300");
  yaml = replaced(yaml, "lr: 2.0e-2", "lr: -1.0");
  yaml = replaced(yaml, "batch_size: 2048", "batch_size: 0");
  CHECK(train_error(yaml) ==
        "train.yaml:8:10: sae.top_k: expected 1 <= top_k <= d_sae (256), got 300\n"
        "train.yaml:12:7: trainer.lr: expected > 0, got -1\n"
        "train.yaml:13:14: trainer.initial_k: k annealing starts at initial_k and ends at "
        "sae.top_k (300): "
        "expected >= 300, got 64\n"
        "train.yaml:19:15: activation_factory.batch_size: expected > 0, got 0");
}

TEST_CASE("validation checks cross-field rules", "[config]") {
  CHECK_THAT(train_error(std::string(kTrainYaml), {"sae.act_fn=jumprelu", "initializer={}"}),
             Contains("--set initializer={}: initializer.init_log_jumprelu_threshold_value: "
                      "required for act_fn jumprelu"));
  CHECK_THAT(
      train_error(std::string(kTrainYaml), {"trainer.initial_k=4"}),
      Contains("--set trainer.initial_k=4: trainer.initial_k: k annealing starts at initial_k"));
  CHECK_THAT(
      train_error(std::string(kTrainYaml), {"trainer.k_warmup_steps=1.5"}),
      Contains("trainer.k_warmup_steps: a fraction of the total steps must be in [0, 1], got 1.5"));
  CHECK_THAT(train_error(std::string(kTrainYaml), {"sae.hook_point_in=blocks.3.hook_resid_post"}),
             Contains("activation_factory.hook_points: must include the sae's hook point "
                      "\"blocks.3.hook_resid_post\""));
  // An SAE reads and writes one hook: a missing one is one problem, not two (#22 item 9).
  const std::string both = train_error(
      std::string(kTrainYaml),
      {"sae.hook_point_in=blocks.3.hook_resid_post", "sae.hook_point_out=blocks.3.hook_resid_post"});
  CHECK(both.find('\n') == std::string::npos);
  CHECK_THAT(both, Contains("must include the sae's hook point \"blocks.3.hook_resid_post\""));
  CHECK_THAT(
      train_error(std::string(kTrainYaml), {"data_parallel_size=3"}),
      Contains(
          "activation_factory.batch_size: must be divisible by data_parallel_size (3), got 2048"));
  CHECK_THAT(
      train_error(replaced(kTrainYaml, "type: activations", "type: dataset"),
                  {"activation_factory.sources.0={type: dataset, name: stories}"}),
      Contains(
          "activation_factory.sources[0]: a dataset source needs a language model: set `model`"));
  CHECK(validate(TrainSettings{}).size() > 5);
}

TEST_CASE("a missing config file is an IoError naming it", "[config]") {
  testing::TempDir dir;
  const auto path = dir / "nope.yaml";
  CHECK_THROWS_AS(load_train_settings(path), IoError);
  CHECK_THROWS_WITH(load_train_settings(path), Contains(path.string()));
}

TEST_CASE("load reads a file and the resolved config saved next to outputs reads back equal",
          "[config]") {
  testing::TempDir dir;
  std::ofstream(dir / "train.yaml") << kTrainYaml;
  const TrainSettings s = load_train_settings(dir / "train.yaml", {"seed=3"});
  CHECK(s.seed == 3);
  CHECK_THAT(train_error(replaced(kTrainYaml, "lr: 2.0e-2", "lr: abc")),
             Contains("train.yaml:12:7"));
  const auto saved = save_resolved_config(s, dir / "run");
  CHECK(saved == dir / "run" / "config.resolved.yaml");
  CHECK(load_train_settings(saved) == s);
}

}  // namespace saes::config

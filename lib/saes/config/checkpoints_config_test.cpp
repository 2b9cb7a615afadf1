// model.checkpoints in the config layer: it reads, dumps and reads back; hook points of a run with
// checkpoints name a listed checkpoint ("<name>:<hook>"), and every misnamed hook is a one-line
// error naming its key.
#include <catch2/catch.hpp>

#include "saes/config/config_loader.h"
#include "saes/core/error.h"

namespace saes::config {
namespace {

using Catch::Matchers::Contains;

constexpr std::string_view kGenerateYaml = R"(model_name: stories260K
model:
  model_from_pretrained_path: /m/stories260K.bin
  checkpoints: {a: /m/stories260K.bin, b: /m/step2000.bin}
dataset_name: tinystories
dataset:
  dataset_name_or_path: /data/tinystories
hook_points: [a:blocks.3.hook_resid_post, b:blocks.3.hook_resid_post]
output_dir: /out/acts
batch_size: 4096
)";

constexpr std::string_view kTrainYaml = R"(sae_name: checkpoints-crosscoder
sae_series: tests
sae:
  sae_type: crosscoder
  d_model: 64
  expansion_factor: 4
  act_fn: topk
  top_k: 8
  hook_points: [a:blocks.3.hook_resid_post, b:blocks.3.hook_resid_post]
activation_factory:
  target: activations-1d
  hook_points: [a:blocks.3.hook_resid_post, b:blocks.3.hook_resid_post]
  batch_size: 2048
  sources:
    - type: activations
      name: shards
      path: /out/acts
trainer:
  lr: 1.0e-3
  total_training_tokens: 100000
)";

std::string generate_error(const std::vector<std::string>& overrides) {
  try {
    parse_generate_settings(kGenerateYaml, "gen.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

std::string train_error(const std::vector<std::string>& overrides) {
  try {
    parse_train_settings(kTrainYaml, "train.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("model.checkpoints reads, dumps and reads back equal", "[config][checkpoints]") {
  const GenerateSettings s = parse_generate_settings(kGenerateYaml, "gen.yaml");
  REQUIRE(s.model.checkpoints.size() == 2);
  CHECK(s.model.checkpoints.at("b") == "/m/step2000.bin");
  CHECK(s.hook_points.at(1) == "b:blocks.3.hook_resid_post");
  CHECK(parse_generate_settings(dump_yaml(s), "dump") == s);
  // a crosscoder over two checkpoints trains from their shards without any model configured
  CHECK(parse_train_settings(kTrainYaml, "train.yaml").sae.hook_points.size() == 2);
}

TEST_CASE("hook points of a run with checkpoints name a listed checkpoint",
          "[config][checkpoints]") {
  CHECK(generate_error({"hook_points=[c:blocks.3.hook_resid_post]"}) ==
        "--set hook_points=[c:blocks.3.hook_resid_post]: hook_points[0]: "
        "\"c:blocks.3.hook_resid_post\" names checkpoint \"c\", which model.checkpoints lacks "
        "(checkpoints: a, b)");
  CHECK_THAT(generate_error({"hook_points=[a:blocks.3.hook_resid_post, blocks.3.hook_resid_post]"}),
             Contains("hook_points[1]: \"blocks.3.hook_resid_post\" names no checkpoint: with "
                      "model.checkpoints set, write <checkpoint>:<hook> (checkpoints: a, b)"));
  CHECK_THAT(generate_error({"hook_points=[\"a:\"]"}),
             Contains("hook_points[0]: \"a:\" names no hook"));
  CHECK_THAT(generate_error({"model.checkpoints={}"}),
             Contains("gen.yaml:8:15: hook_points[0]: \"a:blocks.3.hook_resid_post\" names "
                      "checkpoint \"a\", but model.checkpoints is not set"));
  CHECK_THAT(generate_error({"model.checkpoints={\"x:y\": /m/a.bin}"}),
             Contains("model.checkpoints.x:y: a checkpoint name is non-empty and holds no ':'"));
  const std::string one = generate_error({"hook_points=[c:blocks.3.hook_resid_post]"});
  CHECK(one.find('\n') == std::string::npos);
}

TEST_CASE("prefixed hooks need model.checkpoints only where a model computes them",
          "[config][checkpoints]") {
  // shards hold the prefixed names: a model without checkpoints (or none) is fine
  CHECK(train_error({"model={model_from_pretrained_path: /m/stories260K.bin}"}) == "no error");
  const std::string live =
      train_error({"model={model_from_pretrained_path: /m/stories260K.bin}",
                   "activation_factory.sources=[{type: dataset, name: stories}]",
                   "datasets={stories: {dataset_name_or_path: /data/tinystories}}"});
  CHECK_THAT(live, Contains("activation_factory.hook_points[0]: \"a:blocks.3.hook_resid_post\" "
                            "names checkpoint \"a\", but model.checkpoints is not set"));
  CHECK_THAT(live, Contains("activation_factory.hook_points[1]: "));
  CHECK(train_error({"model={model_from_pretrained_path: /m/stories260K.bin, checkpoints: {a: "
                     "/m/a.bin, b: /m/b.bin}}",
                     "activation_factory.sources=[{type: dataset, name: stories}]",
                     "datasets={stories: {dataset_name_or_path: /data/tinystories}}"}) ==
        "no error");
  CHECK_THAT(
      train_error({"model={model_from_pretrained_path: /m/s.bin, checkpoints: {a: /m/a.bin}}"}),
      Contains("activation_factory.hook_points[1]: \"b:blocks.3.hook_resid_post\" names "
               "checkpoint \"b\", which model.checkpoints lacks (checkpoints: a)"));
}

}  // namespace saes::config

// run_convert end to end on a native folder: SAELens export and import back keep the weights, a
// failing conversion leaves no output folder, an existing output needs overwrite, and
// sparsity_from writes sparsity.safetensors (SAELens output only, matching d_sae).
#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/analysis/store.h"
#include "saes/config/config_loader.h"
#include "saes/convert/formats.h"
#include "saes/convert/sparsity.h"
#include "saes/core/error.h"
#include "saes/distributed/single_process_communicator.h"
#include "saes/runners/runners.h"

#include "support/temp_dir.h"

namespace fs = std::filesystem;

namespace {

using namespace saes;

void write_topk_run(const fs::path& dir) {
  dictionaries::SparseDictionaryConfig cfg;
  cfg.d_model = 8;
  cfg.expansion_factor = 2.0;
  cfg.act_fn = dictionaries::ActFn::kTopK;
  cfg.top_k = 3;
  cfg.hook_point_in = cfg.hook_point_out = "blocks.0.hook_resid_post";
  dictionaries::SparseAutoEncoder sae(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  for (auto& p : sae.parameters()) p.value.normal_(0, 1, gen);
  sae.set_dataset_norm(cfg.hook_point_in, 5.0);
  fs::create_directories(dir);
  convert::write_native(sae, dir);
}

/// An analysis database of `d_sae` features; feature i fired (i * 7) % 5 * 100 times in 1000
/// tokens, so features 0, 5, 10, ... are dead.
void write_db(const fs::path& path, std::int64_t d_sae) {
  analysis::AnalysisRecord r;
  r.n_analyzed_tokens = 1000;
  for (std::int64_t i = 0; i < d_sae; ++i) r.features.push_back({(i * 7) % 5 * 100, 1, 1, {}, {}});
  analysis::write_analysis_db(path, r);
}

/// A topk run in dir/run and an analysis database of `db_d_sae` features in dir/a.sqlite; the
/// settings export the run to dir/`output` as SAELens with that database's sparsity.
config::ConvertSettings saelens_with_sparsity(const fs::path& dir, std::int64_t db_d_sae,
                                              const std::string& output) {
  write_topk_run(dir / "run");
  write_db(dir / "a.sqlite", db_d_sae);
  config::ConvertSettings s;
  s.input = dir / "run";
  s.output = dir / output;
  s.conversion.to = convert::ConvertFormat::kSaeLens;
  s.conversion.sparsity_from = dir / "a.sqlite";
  return s;
}

int convert_with(const config::ConvertSettings& s) {
  Logger logger(LogLevel::kError);
  distributed::SingleProcessCommunicator world;
  runners::RunContext context{logger, world, ProgressMode::kOff};
  return runners::run_convert(s, context);
}

}  // namespace

TEST_CASE("run_convert exports to SAELens and imports back to the same function", "[convert]") {
  saes::testing::TempDir dir;
  write_topk_run(dir / "run");
  config::ConvertSettings s;
  s.input = dir / "run";
  s.output = dir / "saelens";
  s.conversion.to = convert::ConvertFormat::kSaeLens;
  CHECK(convert_with(s) == 0);
  CHECK(fs::exists(dir / "saelens" / "cfg.json"));
  CHECK_FALSE(fs::exists(dir / "saelens.tmp"));
  s.input = dir / "saelens";
  s.output = dir / "native";
  s.conversion.to = convert::ConvertFormat::kNative;
  CHECK(convert_with(s) == 0);
  auto a = convert::read_dictionary(dir / "run");
  auto b = convert::read_dictionary(dir / "native");
  a.dict->fold_activation_scale();
  const at::Tensor x = at::randn({16, 8}) * 3;
  const at::Tensor diff = a.dict->decode(a.dict->encode(x)) - b.dict->decode(b.dict->encode(x));
  CHECK(diff.abs().max().item<double>() < 1e-5);
  CHECK_THROWS_AS(convert_with(s), ConfigError);  // output exists and is not empty
  s.conversion.overwrite = true;
  CHECK(convert_with(s) == 0);
}

TEST_CASE("a failing conversion leaves no output folder", "[convert]") {
  saes::testing::TempDir dir;
  write_topk_run(dir / "run");
  config::ConvertSettings s;
  s.input = dir / "run";
  s.output = dir / "out";
  s.conversion.to = convert::ConvertFormat::kSaeLens;
  s.conversion.fold_activation_scale = convert::ScaleFolding::kUnfold;  // unfolded: fine
  s.conversion.topk_to_jumprelu = true;                                 // but no activation_factory
  CHECK_THROWS_AS(convert_with(s), ConfigError);
  CHECK_FALSE(fs::exists(dir / "out"));
  CHECK_FALSE(fs::exists(dir / "out.tmp"));
}

TEST_CASE("run_convert writes sparsity.safetensors from sparsity_from and carries it on",
          "[convert]") {
  saes::testing::TempDir dir;
  config::ConvertSettings s = saelens_with_sparsity(dir.path(), 16, "saelens");
  CHECK(convert_with(s) == 0);
  const at::Tensor sparsity = convert::read_saelens_sparsity(dir / "saelens", 16);
  REQUIRE(sparsity.defined());
  for (std::int64_t i = 0; i < 16; ++i) {
    const double freq = static_cast<double>((i * 7) % 5 * 100) / 1000;
    CHECK(sparsity[i].item<float>() == Approx(std::log10(freq + 1e-10)).margin(1e-6));
    if (i % 5 == 0) CHECK(sparsity[i].item<float>() == Approx(-10).margin(1e-6));
  }
  s.input = dir / "saelens";  // SAELens -> SAELens (a dtype cast) keeps the file
  s.output = dir / "saelens16";
  s.conversion.sparsity_from.reset();
  s.conversion.dtype = DType::kFloat16;
  CHECK(convert_with(s) == 0);
  CHECK(at::equal(convert::read_saelens_sparsity(dir / "saelens16", 16), sparsity));
}

TEST_CASE("sparsity_from with another d_sae fails and leaves no output folder", "[convert]") {
  saes::testing::TempDir dir;
  config::ConvertSettings s = saelens_with_sparsity(dir.path(), 12, "out");
  CHECK_THROWS_AS(convert_with(s), DataError);
  CHECK_THROWS_WITH(convert_with(s), Catch::Contains("has d_sae 12, the dictionary has d_sae 16"));
  CHECK_FALSE(fs::exists(dir / "out"));
  CHECK_FALSE(fs::exists(dir / "out.tmp"));
  s.conversion.sparsity_from = dir / "nothere.sqlite";
  CHECK_THROWS_AS(convert_with(s), IoError);
  CHECK_THROWS_WITH(convert_with(s), Catch::Contains("nothere.sqlite"));
  CHECK_FALSE(fs::exists(dir / "out"));
}

TEST_CASE("sparsity_from with a native output is a ConfigError naming the key", "[convert]") {
  saes::testing::TempDir dir;
  write_topk_run(dir / "run");
  write_db(dir / "a.sqlite", 16);
  const std::vector<std::string> set = {"input=" + (dir / "run").string(),
                                        "output=" + (dir / "out").string(),
                                        "sparsity_from=" + (dir / "a.sqlite").string()};
  CHECK_THROWS_AS(config::parse_convert_settings("{}", "x", set), ConfigError);
  CHECK_THROWS_WITH(config::parse_convert_settings("{}", "x", set),
                    Catch::Contains("sparsity_from"));
  config::ConvertSettings s;
  s.input = dir / "run";
  s.output = dir / "out";
  s.conversion.sparsity_from = dir / "a.sqlite";
  CHECK_THROWS_AS(convert_with(s), ConfigError);
  CHECK_THROWS_WITH(convert_with(s), Catch::Contains("sparsity_from"));
  CHECK_FALSE(fs::exists(dir / "out"));
}

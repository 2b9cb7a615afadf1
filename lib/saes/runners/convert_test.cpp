// run_convert end to end on a native folder: SAELens export and import back keep the weights, a
// failing conversion leaves no output folder, and an existing output needs overwrite.
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/convert/formats.h"
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

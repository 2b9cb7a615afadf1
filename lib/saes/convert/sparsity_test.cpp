// sparsity.safetensors: values from an analysis database are log10(frequency + 1e-10) (dead
// features -10), the file holds exactly SAELens' one tensor, a bad database or d_sae is refused,
// and a SAELens folder's sparsity file is read back with its shape checked.
#include "saes/convert/sparsity.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/analysis/store.h"
#include "saes/convert/formats.h"
#include "saes/core/error.h"
#include "saes/io/safetensors.h"

#include "support/temp_dir.h"

namespace sc = saes::convert;
namespace fs = std::filesystem;
using Tensors = std::map<std::string, at::Tensor>;

namespace {

constexpr std::int64_t kTokens = 1000;

/// An analysis database whose feature i fired act_times[i] times in kTokens tokens.
void write_db(const fs::path& path, const std::vector<std::int64_t>& act_times) {
  saes::analysis::AnalysisRecord r;
  r.n_analyzed_tokens = kTokens;
  for (const std::int64_t n : act_times) r.features.push_back({n, 1.0, 0.5, {}, {}});
  saes::analysis::write_analysis_db(path, r);
}

float expected(std::int64_t act_times) {
  return static_cast<float>(
      std::log10(static_cast<double>(act_times) / kTokens + sc::kSparsityEpsilon));
}

std::unique_ptr<saes::dictionaries::SparseAutoEncoder> small_sae() {
  saes::dictionaries::SparseDictionaryConfig cfg;
  cfg.d_model = 4;
  cfg.expansion_factor = 2.0;
  cfg.act_fn = saes::dictionaries::ActFn::kRelu;
  cfg.hook_point_in = cfg.hook_point_out = "blocks.0.hook_resid_post";
  auto sae = std::make_unique<saes::dictionaries::SparseAutoEncoder>(cfg);
  sae->set_dataset_norm(cfg.hook_point_in, 2.0);
  return sae;
}

}  // namespace

TEST_CASE("sparsity from an analysis database is log10(frequency + 1e-10), dead features -10",
          "[convert]") {
  saes::testing::TempDir dir;
  const std::vector<std::int64_t> act_times = {0, 1, 10, 999, 1000, 0, 37};
  write_db(dir / "a.sqlite", act_times);
  const at::Tensor s = sc::sparsity_from_analysis(dir / "a.sqlite", 7);
  REQUIRE(s.sizes() == at::IntArrayRef{7});
  REQUIRE(s.scalar_type() == at::kFloat);
  for (std::size_t i = 0; i < act_times.size(); ++i) {
    CHECK(s[static_cast<std::int64_t>(i)].item<float>() ==
          Approx(expected(act_times[i])).margin(1e-6));
  }
  CHECK(s[0].item<float>() == Approx(-10.0).margin(1e-6));
  CHECK(s[4].item<float>() == Approx(0.0).margin(1e-6));

  sc::write_saelens_sparsity(s, dir.path());
  const auto file = saes::io::SafetensorsFile::open(dir / sc::kSaeLensSparsityFile);
  CHECK(file.names() == std::vector<std::string>{"sparsity"});
  CHECK(file.info("sparsity").dtype == saes::DType::kFloat32);
  CHECK(file.info("sparsity").shape == std::vector<std::int64_t>{7});
  CHECK(at::equal(sc::read_saelens_sparsity(dir.path(), 7), s));
}

TEST_CASE("sparsity_from refuses a missing database and a d_sae mismatch", "[convert]") {
  saes::testing::TempDir dir;
  CHECK_THROWS_AS(sc::sparsity_from_analysis(dir / "nothere.sqlite", 4), saes::IoError);
  CHECK_THROWS_WITH(sc::sparsity_from_analysis(dir / "nothere.sqlite", 4),
                    Catch::Contains("nothere.sqlite"));
  write_db(dir / "a.sqlite", {1, 2, 3});
  CHECK_THROWS_AS(sc::sparsity_from_analysis(dir / "a.sqlite", 8), saes::DataError);
  CHECK_THROWS_WITH(sc::sparsity_from_analysis(dir / "a.sqlite", 8),
                    Catch::Contains("d_sae 3, the dictionary has d_sae 8"));
  saes::io::save_safetensors(dir / "b.sqlite", Tensors{{"x", at::zeros({2})}});
  CHECK_THROWS_AS(sc::sparsity_from_analysis(dir / "b.sqlite", 3), saes::Error);
}

TEST_CASE("a SAELens folder's sparsity.safetensors is optional and shape-checked on import",
          "[convert]") {
  saes::testing::TempDir dir;
  const auto sae = small_sae();
  sc::write_saelens(*sae, {}, dir.path());
  CHECK_FALSE(sc::read_dictionary(dir.path()).sparsity.defined());

  const at::Tensor s = at::linspace(-10, 0, 8);
  sc::write_saelens_sparsity(s, dir.path());
  const sc::Imported in = sc::read_dictionary(dir.path());
  REQUIRE(in.sparsity.defined());
  CHECK(at::equal(in.sparsity, s));

  sc::write_saelens_sparsity(at::zeros({5}), dir.path());
  CHECK_THROWS_AS(sc::read_dictionary(dir.path()), saes::DataError);
  CHECK_THROWS_WITH(sc::read_dictionary(dir.path()), Catch::Contains("shape [5], expected [8]"));
  saes::io::save_safetensors(dir / sc::kSaeLensSparsityFile, Tensors{{"feature_sparsity", s}});
  CHECK_THROWS_AS(sc::read_dictionary(dir.path()), saes::DataError);
  CHECK_THROWS_WITH(sc::read_dictionary(dir.path()),
                    Catch::Contains("one tensor named 'sparsity'"));
}

// The original's CLT checkpoints import and compute what the original computes: the folders under
// tests/data/reference_clt_* were written by tests/reference/make_clt_fixture.py from the spec's
// shapes (not by saes's writer), with the expected feature acts and reconstructions of a plain
// float64 implementation of the original's maths (tests/data/reference_clt_expected.json).
#include <cmath>
#include <filesystem>
#include <functional>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/convert/formats.h"
#include "saes/dictionaries/clt.h"
#include "saes/io/atomic_file.h"

#include "support/temp_dir.h"

namespace fs = std::filesystem;
namespace sd = saes::dictionaries;
using Json = nlohmann::json;

namespace {

const fs::path kData = fs::path(SAES_SOURCE_DIR) / "tests/data";

/// Nested JSON arrays of numbers → a float64 tensor of `shape`.
at::Tensor from_json(const Json& j, at::IntArrayRef shape) {
  std::vector<double> flat;
  std::function<void(const Json&)> walk = [&](const Json& v) {
    if (v.is_array()) {
      for (const auto& e : v) walk(e);
    } else {
      flat.push_back(v.get<double>());
    }
  };
  walk(j);
  return at::tensor(flat, at::kDouble).view(shape).clone();
}

/// max |a − b| relative to max |b|.
double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b).abs().max().item<double>() / b.abs().max().item<double>();
}

}  // namespace

TEST_CASE("the original's CLT folders import and compute the reference outputs",
          "[convert][clt]") {
  const Json expected = Json::parse(saes::io::read_file(kData / "reference_clt_expected.json"));
  const std::int64_t N = 5, L = 3, d = 4, S = 6;
  const at::Tensor x = from_json(expected["x"], {N, L, d});
  const auto hooks_in = expected["hooks_in"].get<std::vector<std::string>>();
  const auto hooks_out = expected["hooks_out"].get<std::vector<std::string>>();
  // float32 weights, sums of at most L·S = 18 (decode) or d = 4 (encode) products: 1e-5 relative
  // to the largest entry is ~100 float32 epsilons.
  constexpr double kTol = 1e-5;
  for (const std::string act : {"jumprelu", "layertopk"}) {
    INFO("act_fn " << act);
    saes::convert::Imported imp = saes::convert::read_dictionary(kData / ("reference_clt_" + act));
    CHECK(imp.format == saes::convert::InputFormat::kLmSaes);
    auto* clt = dynamic_cast<sd::CrossLayerTranscoder*>(imp.dict.get());
    REQUIRE(clt != nullptr);
    CHECK(clt->input_hooks() == hooks_in);
    CHECK(clt->label_hooks() == hooks_out);
    CHECK(clt->n_features() == L * S);
    CHECK(*clt->dataset_norm(hooks_in[1]) == Approx(2.3).epsilon(1e-7));

    sd::HookActs acts;
    for (std::int64_t l = 0; l < L; ++l) {
      acts[hooks_in[l]] = x.select(1, l).to(at::kFloat);
      acts[hooks_out[l]] = at::zeros({N, d});
    }
    const at::Tensor f = clt->encode(clt->prepare_input(acts));
    const at::Tensor f_ref = from_json(expected[act]["feature_acts"], {N, L, S});
    CHECK(at::equal(f.ne(0), f_ref.ne(0)));  // the same active entries
    CHECK(rel_err(f, f_ref) < kTol);
    const at::Tensor y_ref = from_json(expected[act]["reconstruction"], {L, N, d});
    CHECK(rel_err(clt->decode(f), y_ref) < kTol);

    // Folded (saes-convert --fold), raw inputs give raw outputs: ŷ·n̄_out/√d.
    clt->fold_activation_scale();
    sd::HookActs raw = acts;
    const at::Tensor f_folded = clt->encode(clt->prepare_input(raw));
    CHECK(at::equal(f_folded.ne(0), f_ref.ne(0)));
    const double norms_out[] = {0.9, 1.4, 2.2};
    at::Tensor y_raw = y_ref.clone();
    for (std::int64_t t = 0; t < L; ++t) y_raw[t].mul_(norms_out[t] / std::sqrt(double(d)));
    CHECK(rel_err(clt->decode(f_folded), y_raw) < kTol);

    // and the native copy saes writes reads back to the same function
    saes::testing::TempDir tmp;
    fs::create_directories(tmp.path() / "native");
    saes::convert::write_native(*clt, tmp.path() / "native");
    saes::convert::Imported back = saes::convert::read_dictionary(tmp.path() / "native");
    CHECK(back.format == saes::convert::InputFormat::kNative);
    CHECK(rel_err(back.dict->decode(back.dict->encode(back.dict->prepare_input(raw))), y_raw) <
          kTol);
  }
}

// The original's CLT checkpoints import and compute what the original computes: the folders under
// tests/data/reference_clt_* were written by tests/reference/make_clt_fixture.py from the spec's
// shapes (not by saes's writer), with the expected feature acts and reconstructions of a plain
// float64 implementation of the original's maths (tests/data/reference_clt_expected.json).
#include <cmath>
#include <filesystem>
#include <functional>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/convert/formats.h"
#include "saes/convert/transforms.h"
#include "saes/core/error.h"
#include "saes/dictionaries/clt.h"
#include "saes/dictionaries/sae.h"
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

TEST_CASE("a CLT's TopK family converts to JumpReLU with the source's active count",
          "[convert][clt]") {
  // The layertopk reference CLT, and the same weights as topk (k per token and layer),
  // batchtopk and batchlayertopk; fit and check on random raw inputs.
  saes::convert::Imported imp = saes::convert::read_dictionary(kData / "reference_clt_layertopk");
  const std::int64_t N = 64, L = 3, S = 6, d = 4;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  sd::HookActs fit, check;
  for (const auto& hook : imp.dict->input_hooks()) {
    fit[hook] = at::randn({N, d}, gen) * 2.0;
    check[hook] = at::randn({N, d}, gen) * 2.0;
  }
  for (const auto act : {sd::ActFn::kLayerTopK, sd::ActFn::kBatchLayerTopK, sd::ActFn::kTopK,
                         sd::ActFn::kBatchTopK}) {
    INFO("act_fn " << sd::kActFnNames[static_cast<std::size_t>(act)]);
    auto cfg = imp.dict->config();
    cfg.act_fn = act;
    cfg.top_k = act == sd::ActFn::kTopK || act == sd::ActFn::kBatchTopK ? 2 : 5;
    auto src = saes::convert::copy_with_config(*imp.dict, cfg);
    saes::convert::JumpReluReport report;
    auto jr = saes::convert::topk_to_jumprelu(*src, fit, check, &report);
    CHECK(jr->config().act_fn == sd::ActFn::kJumpRelu);
    CHECK_FALSE(jr->config().sparsity_include_decoder_norm);
    const std::int64_t per_row = cfg.top_k * (cfg.top_k == 2 ? L : 1);
    CHECK(report.kept == per_row * N);
    // θ is the kb-th largest gated entry of the fitting batch and JumpReLU keeps s > θ: the kb
    // largest but (up to rounding of log θ) the one at θ itself
    const at::Tensor x = src->prepare_input(fit);
    const at::Tensor f_jump = jr->encode(x);
    CHECK(f_jump.sizes() == at::IntArrayRef({N, L, S}));
    const std::int64_t active = at::count_nonzero(f_jump).item<std::int64_t>();
    CHECK(active >= report.kept - 1);
    CHECK(active <= report.kept);
    if (act == sd::ActFn::kBatchLayerTopK) {  // the batch source's selection, but that entry
      CHECK(at::count_nonzero(f_jump.ne(0) != src->encode(x).ne(0)).item<std::int64_t>() <= 1);
    }
    CHECK(report.topk_l0 <= static_cast<double>(per_row));
    CHECK(report.l0 > 0);
  }
  auto cfg = imp.dict->config();
  cfg.act_fn = sd::ActFn::kRelu;
  CHECK_THROWS_AS(saes::convert::topk_to_jumprelu(*saes::convert::copy_with_config(*imp.dict, cfg),
                                                  fit, check),
                  saes::ConfigError);
}

TEST_CASE("one layer of a CLT as an SAE transcoder computes the CLT's same-layer part",
          "[convert][clt]") {
  saes::convert::Imported imp = saes::convert::read_dictionary(kData / "reference_clt_jumprelu");
  auto* clt = dynamic_cast<sd::CrossLayerTranscoder*>(imp.dict.get());
  REQUIRE(clt != nullptr);
  const std::int64_t N = 5, L = 3, d = 4;
  const Json expected = Json::parse(saes::io::read_file(kData / "reference_clt_expected.json"));
  const at::Tensor x = from_json(expected["x"], {N, L, d}).to(at::kFloat);
  sd::HookActs acts;
  for (std::int64_t l = 0; l < L; ++l) {
    acts[clt->input_hooks()[l]] = x.select(1, l);
    acts[clt->label_hooks()[l]] = at::zeros({N, d});
  }
  const at::Tensor f = clt->encode(clt->prepare_input(acts));  // [N, L, S]
  for (std::int64_t layer = 0; layer < L; ++layer) {
    INFO("layer " << layer);
    double dropped = -1;
    auto sae = saes::convert::clt_layer_transcoder(*clt, layer, &dropped);
    CHECK(sae->config().hook_point_in == clt->input_hooks()[layer]);
    CHECK(sae->config().hook_point_out == clt->label_hooks()[layer]);
    CHECK(sae->is_transcoder());
    CHECK(dropped >= 0);
    CHECK((layer == L - 1 ? dropped == 0 : dropped > 0));
    // The CLT's output at target `layer` from the features of `layer` alone.
    at::Tensor only = at::zeros_like(f);
    only.select(1, layer).copy_(f.select(1, layer));
    const at::Tensor want = clt->decode(only)[layer].to(at::kDouble);
    const at::Tensor xs = sae->normalize(x.select(1, layer), sae->config().hook_point_in);
    const at::Tensor fs = sae->encode(xs);
    CHECK(at::equal(fs.ne(0), f.select(1, layer).ne(0)));  // the same active features
    CHECK(rel_err(sae->decode(fs), want) < 1e-5);
  }
  CHECK_THROWS_WITH(saes::convert::clt_layer_transcoder(*clt, 3), Catch::Contains("0..2"));
  saes::convert::Imported ltk = saes::convert::read_dictionary(kData / "reference_clt_layertopk");
  CHECK_THROWS_AS(saes::convert::clt_layer_transcoder(*ltk.dict, 0), saes::UnsupportedError);
}

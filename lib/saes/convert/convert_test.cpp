// saes-convert's formats and transforms: SAELens export → import round trips per act_fn, a forward
// written from SAELens' documented formulas (peers.md §1.4) on exported and hand-built folders,
// the original's and sparsify's layouts, TopK → JumpReLU, dtype casts, staged output, errors.
#include <cmath>
#include <fstream>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/convert/formats.h"
#include "saes/convert/staged_output.h"
#include "saes/convert/transforms.h"
#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/safetensors.h"

#include "support/temp_dir.h"

namespace sc = saes::convert;
namespace sd = saes::dictionaries;
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr const char* kHook = "blocks.1.hook_resid_post";

sd::SparseDictionaryConfig small_cfg(sd::ActFn act, bool gated) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 8;
  cfg.expansion_factor = 4.0;
  cfg.act_fn = act;
  cfg.top_k = 4;
  cfg.sparsity_include_decoder_norm = gated;
  cfg.hook_point_in = kHook;
  cfg.hook_point_out = kHook;
  return cfg;
}

/// A random SAE with non-unit decoder rows, random biases, thresholds near the pre-activations
/// and a recorded dataset norm (dataset-wise, not folded).
std::unique_ptr<sd::SparseAutoEncoder> random_sae(const sd::SparseDictionaryConfig& cfg,
                                                  std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto sae = std::make_unique<sd::SparseAutoEncoder>(cfg);
  for (auto& p : sae->parameters()) {
    p.value.normal_(0, 0.5, gen);
    if (p.name == "W_D") p.value.mul_(at::rand({p.value.size(0), 1}, gen) + 0.5);
    if (p.name == "activation_function.log_jumprelu_threshold") p.value.fill_(std::log(0.3));
  }
  for (const auto& hook : sae->hook_points()) sae->set_dataset_norm(hook, 11.0 + hook.size() % 3);
  return sae;
}

at::Tensor raw_inputs(std::int64_t rows, std::uint64_t seed, double scale = 4.0) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({rows, 8}, gen) * scale;
}

/// Our reconstruction of RAW activations in raw units (normalize, encode, decode, denormalize).
at::Tensor our_raw_forward(const sd::SparseAutoEncoder& d, const at::Tensor& x) {
  const at::Tensor xn = d.normalize(x, d.input_hook_point());
  at::Tensor out = d.decode(d.encode(xn));
  if (d.config().norm_activation == sd::NormActivation::kTokenWise) {
    return out * (x.norm(2, {-1}, true) / std::sqrt(8.0));
  }
  return out / d.dataset_scale(d.label_hook_point());
}

/// SAELens' forward from its documented formulas (peers.md §1.4), on a folder's files.
at::Tensor saelens_forward(const fs::path& dir, const at::Tensor& x_in) {
  const Json cfg = Json::parse(saes::io::read_file(dir / "cfg.json"));
  const auto file = saes::io::SafetensorsFile::open(dir / "sae_weights.safetensors");
  auto t = [&](const char* n) { return file.tensor(n).to(at::kDouble); };
  std::string arch = cfg.value("architecture", "standard");
  if (cfg.value("activation_fn_str", "") == "topk") arch = "topk";
  at::Tensor x = x_in.to(at::kDouble);
  at::Tensor scale;
  const std::string norm =
      cfg.contains("normalize_activations") && cfg["normalize_activations"].is_string()
          ? cfg["normalize_activations"].get<std::string>()
          : "none";
  if (norm == "constant_norm_rescale") {
    scale = std::sqrt(static_cast<double>(cfg["d_in"].get<int>())) / x.norm(2, {-1}, true);
    x = x * scale;
  }
  if (cfg.value("apply_b_dec_to_input", true)) x = x - t("b_dec");
  at::Tensor pre = at::matmul(x, t("W_enc")) + t("b_enc");
  at::Tensor f;
  const at::Tensor n = t("W_dec").norm(2, {1});
  const bool rescale = cfg.value("rescale_acts_by_decoder_norm", false);
  if (arch == "standard" || arch == "transcoder") {
    f = at::relu(pre);
  } else if (arch == "jumprelu" || arch == "jumprelu_transcoder") {
    f = at::relu(pre) * (pre > t("threshold")).to(at::kDouble);
  } else {
    if (rescale) pre = pre * n;
    const std::int64_t k = cfg.contains("k") ? cfg["k"].get<std::int64_t>()
                                             : cfg["activation_fn_kwargs"]["k"].get<std::int64_t>();
    auto [values, indices] = at::topk(pre, k, -1);
    f = at::zeros_like(pre).scatter(-1, indices, at::relu(values));
    if (rescale) f = f / n;
  }
  at::Tensor out = at::matmul(f, t("W_dec")) + t("b_dec");
  if (scale.defined()) out = out / scale;
  return out;
}

void save_map(const fs::path& path, const std::map<std::string, at::Tensor>& tensors) {
  saes::io::save_safetensors(path, tensors);
}

void write_json(const fs::path& path, const Json& j) {
  saes::io::write_file_atomic(path, j.dump());
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("SAELens export then import reproduces encode and decode for every act_fn", "[convert]") {
  for (auto act : {sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK}) {
    for (bool gated : {false, true}) {
      for (std::int64_t version : {6, 5}) {
        CAPTURE(static_cast<int>(act), gated, version);
        auto sae = random_sae(small_cfg(act, gated), 3);
        const at::Tensor x = raw_inputs(32, 4);
        const at::Tensor expected = our_raw_forward(*sae, x);
        sae->fold_activation_scale();
        saes::testing::TempDir dir;
        sc::write_saelens(*sae, {}, dir.path(), version);
        auto back = sc::read_dictionary(dir.path());
        CHECK(back.format == sc::InputFormat::kSaeLens);
        CHECK(max_diff(back.dict->decode(back.dict->encode(x)), expected) < 1e-5);
        CHECK(max_diff(sae->decode(sae->encode(x)), expected) < 1e-5);
        // v5 has no rescale flag: gated TopK is exported with the norms folded into W_enc.
        if (!(act == sd::ActFn::kTopK && gated && version == 5)) {
          CHECK(max_diff(back.dict->encode(x), sae->encode(x)) < 1e-6);
        }
        CHECK(max_diff(saelens_forward(dir.path(), x), expected) < 1e-5);
      }
    }
  }
}

TEST_CASE("the v6 cfg.json has the documented keys and tensors, nothing else", "[convert]") {
  auto sae = random_sae(small_cfg(sd::ActFn::kJumpRelu, true), 5);
  saes::testing::TempDir dir;
  sc::Provenance p;
  p.model_name = "stories260K";
  p.context_size = 128;
  sc::write_saelens(*sae, p, dir.path(), 6);
  const Json cfg = Json::parse(saes::io::read_file(dir / "cfg.json"));
  CHECK(cfg["architecture"] == "jumprelu");
  CHECK(cfg["d_in"] == 8);
  CHECK(cfg["d_sae"] == 32);
  CHECK(cfg["dtype"] == "float32");
  CHECK(cfg["apply_b_dec_to_input"] == false);
  CHECK(cfg["normalize_activations"] == "none");
  CHECK(cfg["metadata"]["sae_lens_version"] == "6.18.0");
  CHECK(cfg["metadata"]["hook_name"] == kHook);
  CHECK(cfg["metadata"]["model_name"] == "stories260K");
  CHECK(cfg["metadata"]["context_size"] == 128);
  const auto file = saes::io::SafetensorsFile::open(dir / "sae_weights.safetensors");
  CHECK(file.names().size() == 5);
  CHECK(file.info("W_enc").shape == std::vector<std::int64_t>{8, 32});
  CHECK(file.info("W_dec").shape == std::vector<std::int64_t>{32, 8});
  CHECK(file.info("threshold").shape == std::vector<std::int64_t>{32});
  CHECK(file.metadata().empty());
  // The input was dataset-wise and unfolded: the export folded it, the source is untouched.
  CHECK_FALSE(sae->folded());
}

TEST_CASE("token-wise SAEs export as constant_norm_rescale and transcoders with d_out",
          "[convert]") {
  auto cfg = small_cfg(sd::ActFn::kRelu, false);
  cfg.norm_activation = sd::NormActivation::kTokenWise;
  auto sae = random_sae(cfg, 6);
  const at::Tensor x = raw_inputs(16, 7);
  saes::testing::TempDir dir;
  sc::write_saelens(*sae, {}, dir.path(), 6);
  CHECK(max_diff(saelens_forward(dir.path(), x), our_raw_forward(*sae, x)) < 1e-5);
  auto back = sc::read_dictionary(dir.path());
  CHECK(back.dict->config().norm_activation == sd::NormActivation::kTokenWise);

  auto tcfg = small_cfg(sd::ActFn::kJumpRelu, true);
  tcfg.hook_point_out = "blocks.1.hook_mlp_out";
  auto tc = random_sae(tcfg, 8);
  const at::Tensor expected = our_raw_forward(*tc, x);
  saes::testing::TempDir tdir;
  sc::write_saelens(*tc, {}, tdir.path(), 6);
  const Json j = Json::parse(saes::io::read_file(tdir / "cfg.json"));
  CHECK(j["architecture"] == "jumprelu_transcoder");
  CHECK(j["d_out"] == 8);
  CHECK(j["metadata"]["hook_name_out"] == "blocks.1.hook_mlp_out");
  CHECK(max_diff(saelens_forward(tdir.path(), x), expected) < 1e-5);
  auto tback = sc::read_dictionary(tdir.path());
  CHECK(tback.dict->input_hooks() != tback.dict->label_hooks());
  // Relative to the output's scale: float32 through another BLAS (MKL in a pip LibTorch 2.11)
  // measured 1.1e-5 absolute here, OpenBLAS below 1e-5.
  const double scale = 1.0 + expected.abs().max().item<double>();
  CHECK(max_diff(tback.dict->decode(tback.dict->encode(x)), expected) < 1e-5 * scale);
  CHECK_THROWS_AS(sc::write_saelens(*tc, {}, tdir.path(), 5), saes::UnsupportedError);
}

TEST_CASE("batchtopk exports only after conversion and round trips natively", "[convert]") {
  auto sae = random_sae(small_cfg(sd::ActFn::kBatchTopK, true), 9);
  saes::testing::TempDir dir;
  CHECK_THROWS_AS(sc::write_saelens(*sae, {}, dir.path(), 6), saes::UnsupportedError);
  sc::write_native(*sae, dir.path());
  CHECK(fs::exists(dir / "config.json"));
  auto back = sc::read_dictionary(dir.path());
  CHECK(back.format == sc::InputFormat::kNative);
  CHECK(back.dict->config() == sae->config());
  const at::Tensor x = sae->normalize(raw_inputs(32, 10), kHook);
  CHECK(at::equal(back.dict->encode(x), sae->encode(x)));
  CHECK(back.dict->dataset_norms() == sae->dataset_norms());
}

TEST_CASE("a hand-built SAELens v6 jumprelu folder with b_dec on the input imports", "[convert]") {
  saes::testing::TempDir dir;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  save_map(dir / "sae_weights.safetensors", {{"W_enc", at::randn({8, 16}, gen)},
                                             {"b_enc", at::randn({16}, gen) * 0.1},
                                             {"W_dec", at::randn({16, 8}, gen)},
                                             {"b_dec", at::randn({8}, gen)},
                                             {"threshold", at::rand({16}, gen)}});
  write_json(dir / "cfg.json", {{"architecture", "jumprelu"},
                                {"d_in", 8},
                                {"d_sae", 16},
                                {"dtype", "torch.float32"},
                                {"device", "cpu"},
                                {"apply_b_dec_to_input", true},
                                {"normalize_activations", "none"},
                                {"metadata",
                                 {{"sae_lens_version", "6.5.0"},
                                  {"hook_name", "blocks.0.hook_resid_pre"},
                                  {"model_name", "gpt2"},
                                  {"context_size", 64}}}});
  auto in = sc::read_dictionary(dir.path());
  CHECK(in.dict->config().hook_point_in == "blocks.0.hook_resid_pre");
  CHECK(in.dict->folded());
  CHECK(in.provenance.model_name == std::optional<std::string>("gpt2"));
  CHECK(in.provenance.context_size == std::optional<std::int64_t>(64));
  const at::Tensor x = raw_inputs(32, 12, 1.0);
  CHECK(max_diff(in.dict->decode(in.dict->encode(x)), saelens_forward(dir.path(), x)) < 1e-5);
}

TEST_CASE("a hand-built SAELens v5 topk folder with a scaling_factor imports", "[convert]") {
  saes::testing::TempDir dir;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(13);
  const at::Tensor W_dec = at::randn({16, 8}, gen);
  const at::Tensor s = at::rand({16}, gen) + 0.5;
  save_map(dir / "sae_weights.safetensors", {{"W_enc", at::randn({8, 16}, gen)},
                                             {"b_enc", at::randn({16}, gen)},
                                             {"W_dec", W_dec},
                                             {"b_dec", at::randn({8}, gen)},
                                             {"scaling_factor", s}});
  write_json(dir / "cfg.json", {{"architecture", "standard"},
                                {"d_in", 8},
                                {"d_sae", 16},
                                {"activation_fn_str", "topk"},
                                {"activation_fn_kwargs", {{"k", 3}}},
                                {"hook_name", "blocks.2.hook_resid_post"},
                                {"hook_layer", 2},
                                {"dtype", "float32"},
                                {"normalize_activations", false},
                                {"finetuning_scaling_factor", true}});
  auto in = sc::read_dictionary(dir.path());
  CHECK(in.dict->config().act_fn == sd::ActFn::kTopK);
  CHECK(in.dict->config().top_k == 3);
  // Reference: the files with W_dec rows scaled by the legacy factor.
  saes::testing::TempDir ref;
  fs::copy_file(dir / "cfg.json", ref / "cfg.json");
  const auto file = saes::io::SafetensorsFile::open(dir / "sae_weights.safetensors");
  save_map(ref / "sae_weights.safetensors", {{"W_enc", file.tensor("W_enc")},
                                             {"b_enc", file.tensor("b_enc")},
                                             {"W_dec", W_dec * s.unsqueeze(1)},
                                             {"b_dec", file.tensor("b_dec")}});
  const at::Tensor x = raw_inputs(32, 14, 1.0);
  CHECK(max_diff(in.dict->decode(in.dict->encode(x)), saelens_forward(ref.path(), x)) < 1e-5);
}

TEST_CASE("the original's checkpoint folder imports with its dataset norms", "[convert]") {
  auto sae = random_sae(small_cfg(sd::ActFn::kJumpRelu, true), 15);
  saes::testing::TempDir dir;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, t] : sc::named_parameters(*sae)) tensors.emplace_back(name, t);
  tensors.emplace_back(std::string("dataset_average_activation_norm.") + kHook,
                       at::scalar_tensor(12.5));
  saes::io::save_safetensors(dir / "sae_weights.safetensors", tensors, {{"version", "2.0.0"}});
  Json cfg = Json::parse(sc::dictionary_config_json(sae->config(), false));
  cfg["use_triton_kernel"] = false;  // keys saes does not know are ignored
  write_json(dir / "config.json", cfg);
  CHECK(sc::detect_format(dir.path()) == sc::InputFormat::kLmSaes);
  auto in = sc::read_dictionary(dir.path());
  CHECK(in.dict->dataset_norm(kHook) == std::optional<double>(12.5));
  CHECK_FALSE(in.dict->folded());
  CHECK(at::equal(in.dict->feature_directions(), sae->W_D()));
  in.dict->fold_activation_scale();
  CHECK(in.dict->folded());
}

TEST_CASE("a sparsify hookpoint folder imports with b_dec folded into the encoder", "[convert]") {
  saes::testing::TempDir run;
  const fs::path dir = run / "layers.3";
  fs::create_directories(dir);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(17);
  const at::Tensor W = at::randn({16, 8}, gen), b = at::randn({16}, gen);
  const at::Tensor W_dec = at::randn({16, 8}, gen), b_dec = at::randn({8}, gen);
  save_map(dir / "sae.safetensors",
           {{"encoder.weight", W}, {"encoder.bias", b}, {"W_dec", W_dec}, {"b_dec", b_dec}});
  write_json(dir / "cfg.json", {{"activation", "topk"},
                                {"expansion_factor", 2},
                                {"num_latents", 0},
                                {"k", 3},
                                {"normalize_decoder", true},
                                {"d_in", 8}});
  write_json(run / "config.json", {{"model", "EleutherAI/pythia-70m"}, {"ctx_len", 2048}});
  auto in = sc::read_dictionary(dir);
  CHECK(in.format == sc::InputFormat::kSparsify);
  CHECK(in.dict->config().hook_point_in == "blocks.3.hook_resid_post");
  CHECK(in.provenance.model_name == std::optional<std::string>("EleutherAI/pythia-70m"));
  const at::Tensor x = raw_inputs(32, 18, 1.0).to(at::kDouble);
  const at::Tensor pre =
      at::relu(at::matmul(x - b_dec.to(at::kDouble), W.t().to(at::kDouble)) + b.to(at::kDouble));
  auto [values, indices] = at::topk(pre, 3, -1);
  const at::Tensor f = at::zeros_like(pre).scatter(-1, indices, values);
  CHECK(max_diff(in.dict->encode(x.to(at::kFloat)), f) < 1e-5);
  CHECK(max_diff(in.dict->decode(in.dict->encode(x.to(at::kFloat))),
                 at::matmul(f, W_dec.to(at::kDouble)) + b_dec.to(at::kDouble)) < 1e-5);
}

TEST_CASE("unknown architectures and inconsistent shapes are one-line errors", "[convert]") {
  saes::testing::TempDir dir;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(19);
  save_map(dir / "sae_weights.safetensors", {{"W_enc", at::randn({8, 16}, gen)},
                                             {"b_enc", at::randn({16}, gen)},
                                             {"W_dec", at::randn({8, 16}, gen)},
                                             {"b_dec", at::randn({8}, gen)}});
  Json cfg = {{"architecture", "standard"},
              {"d_in", 8},
              {"d_sae", 16},
              {"metadata", {{"sae_lens_version", "6.0.0"}, {"hook_name", "h"}}}};
  write_json(dir / "cfg.json", cfg);
  CHECK_THROWS_WITH(sc::read_dictionary(dir.path()),
                    Catch::Contains("'W_dec' has shape [8, 16], expected [16, 8]"));
  cfg["architecture"] = "gated";
  write_json(dir / "cfg.json", cfg);
  CHECK_THROWS_AS(sc::read_dictionary(dir.path()), saes::UnsupportedError);
  cfg["architecture"] = "transcoder";
  write_json(dir / "cfg.json", cfg);
  CHECK_THROWS_WITH(sc::read_dictionary(dir.path()), Catch::Contains("'d_out' is missing"));
  saes::testing::TempDir empty;
  CHECK_THROWS_AS(sc::detect_format(empty.path()), saes::DataError);
  CHECK_THROWS_AS(sc::detect_format(empty / "nothere"), saes::IoError);
  CHECK_THROWS_AS(sc::read_dictionary(dir.path(), sc::InputFormat::kNative), saes::DataError);
}

TEST_CASE("TopK to JumpReLU keeps the k*rows largest gated pre-activations", "[convert]") {
  for (auto act : {sd::ActFn::kTopK, sd::ActFn::kBatchTopK}) {
    for (bool gated : {false, true}) {
      auto sae = random_sae(small_cfg(act, gated), 21);
      const at::Tensor fit = raw_inputs(64, 22), check = raw_inputs(64, 23);
      sc::JumpReluReport report;
      auto jr = sc::topk_to_jumprelu(*sae, fit, check, &report);
      CHECK(jr->config().act_fn == sd::ActFn::kJumpRelu);
      CHECK_FALSE(jr->config().sparsity_include_decoder_norm);
      const at::Tensor xf = sae->normalize(fit, kHook);
      const std::int64_t active = (jr->encode(xf) != 0).sum().item<std::int64_t>();
      CHECK(active >= 4 * 64 - 1);
      CHECK(active <= 4 * 64);
      if (act == sd::ActFn::kBatchTopK) {
        // BatchTopK's selection is exactly the entries above the batch's threshold.
        CHECK((jr->encode(xf) != sae->encode(xf)).sum().item<std::int64_t>() <= 1);
      }
      CHECK(report.topk_l0 == Approx(4.0));
      CHECK(report.threshold > 0);
    }
  }
  auto relu = random_sae(small_cfg(sd::ActFn::kRelu, false), 24);
  CHECK_THROWS_AS(sc::topk_to_jumprelu(*relu, raw_inputs(8, 1), raw_inputs(8, 2)),
                  saes::ConfigError);
}

TEST_CASE("dtype casts keep the function within bf16 precision", "[convert]") {
  auto sae = random_sae(small_cfg(sd::ActFn::kRelu, false), 25);
  auto bf = sc::cast_dtype(*sae, saes::DType::kBFloat16);
  const at::Tensor W_E = sc::named_parameters(*bf).at("W_E");
  CHECK(W_E.scalar_type() == at::kBFloat16);
  CHECK(bf->dataset_norms() == sae->dataset_norms());
  CHECK(max_diff(W_E, sae->W_E()) < 1e-2);
}

TEST_CASE("staged output refuses non-empty folders and leaves nothing partial", "[convert]") {
  saes::testing::TempDir dir;
  const fs::path out = dir / "out";
  {
    sc::StagedOutput staged(out, false);
    saes::io::write_file_atomic(staged.staging() / "a.txt", "a");
  }
  CHECK_FALSE(fs::exists(out));
  CHECK_FALSE(fs::exists(dir / "out.tmp"));
  {
    sc::StagedOutput staged(out, false);
    saes::io::write_file_atomic(staged.staging() / "a.txt", "a");
    staged.commit();
  }
  CHECK(saes::io::read_file(out / "a.txt") == "a");
  CHECK_THROWS_AS(sc::StagedOutput(out, false), saes::ConfigError);
  {
    sc::StagedOutput staged(out, true);
    saes::io::write_file_atomic(staged.staging() / "b.txt", "b");
    staged.commit();
  }
  CHECK_FALSE(fs::exists(out / "a.txt"));
  CHECK(fs::exists(out / "b.txt"));
  CHECK_FALSE(fs::exists(dir / "out.old"));
}

TEST_CASE("expansion_factor_for gives back d_sae exactly", "[convert]") {
  for (std::int64_t d : {7, 768, 2304, 4096}) {
    for (std::int64_t s : {16384, 24576, 32769, 131072}) {
      const double f = sc::expansion_factor_for(d, s);
      CHECK(static_cast<std::int64_t>(static_cast<double>(d) * f) == s);
    }
  }
}

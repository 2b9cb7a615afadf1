// SAELens folders (peers.md §1): export with the scaling folded in so SAELens' forward (§1.4)
// reproduces ours, v6 nested or v5 flat cfg.json; import of v5/v6 standard, jumprelu, topk and
// transcoder folders (b_dec-on-input and legacy scaling_factor folded into the weights).
// DEVIATION: nlohmann/json outside io/ — SAELens' cfg.json is read and written here.
#include <algorithm>
#include <cmath>
#include <regex>
#include <set>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/all.h>
#include <ATen/ops/eq.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/log.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "saes/convert/format_readers.h"
#include "saes/convert/formats.h"
#include "saes/convert/sparsity.h"
#include "saes/convert/transforms.h"
#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/safetensors.h"

namespace saes::convert {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using dictionaries::ActFn;
using dictionaries::NormActivation;
using dictionaries::SparseAutoEncoder;
using dictionaries::SparseDictionaryConfig;

constexpr const char* kSaeLensV6Version = "6.18.0";

Json opt(const std::optional<std::string>& v) { return v ? Json(*v) : Json(nullptr); }
Json opt(const std::optional<std::int64_t>& v) { return v ? Json(*v) : Json(nullptr); }
Json opt(const std::optional<bool>& v) { return v ? Json(*v) : Json(nullptr); }

/// The layer number of a TransformerLens hook name ("blocks.3.hook_resid_post" → 3), else 0.
std::int64_t hook_layer(const std::string& hook) {
  std::smatch m;
  static const std::regex kLayer(R"(^blocks\.(\d+)\.)");
  return std::regex_search(hook, m, kLayer) ? std::stoll(m[1].str()) : 0;
}

struct Export {
  std::string architecture;
  std::string normalize = "none";
  bool rescale = false;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
};

/// The SAELens tensors of a folded (or token-wise) dictionary.
Export export_tensors(const SparseAutoEncoder& d, std::int64_t version) {
  const SparseDictionaryConfig& cfg = d.config();
  const bool tc = d.is_transcoder();
  Export e;
  if (cfg.norm_activation == NormActivation::kTokenWise) e.normalize = "constant_norm_rescale";
  at::Tensor W_enc = d.W_E(), b_enc = d.b_E(), W_dec = d.W_D();
  const at::Tensor b_dec = d.b_D().defined() ? d.b_D() : at::zeros({cfg.d_model}, W_dec.options());
  at::Tensor threshold;
  switch (cfg.act_fn) {
    case ActFn::kRelu:
      e.architecture = tc ? "transcoder" : "standard";
      break;
    case ActFn::kJumpRelu:
      e.architecture = tc ? "jumprelu_transcoder" : "jumprelu";
      threshold = at::exp(d.log_jumprelu_threshold());
      // h·n > θ ⟺ h > θ/n: SAELens compares the raw pre-activation.
      if (cfg.sparsity_include_decoder_norm) threshold = threshold / d.decoder_norm();
      break;
    case ActFn::kTopK:
      e.architecture = "topk";
      e.rescale = cfg.sparsity_include_decoder_norm;
      if (e.rescale && version == 5) {
        // v5 has no rescale flag: fold the norms (ranking by h·n is then the plain ranking).
        const at::Tensor n = d.decoder_norm();
        W_enc = W_enc * n;
        b_enc = b_enc * n;
        W_dec = W_dec / n.unsqueeze(1);
        e.rescale = false;
      }
      break;
    default:
      SAES_THROW(UnsupportedError,
                 "SAELens export: act_fn {} has no SAELens inference architecture; convert it "
                 "with --topk-to-jumprelu first",
                 dictionaries::kActFnNames[static_cast<std::size_t>(cfg.act_fn)]);
  }
  e.tensors = {{"W_enc", W_enc.contiguous()},
               {"b_enc", b_enc.contiguous()},
               {"W_dec", W_dec.contiguous()},
               {"b_dec", b_dec.contiguous()}};
  if (threshold.defined()) e.tensors.emplace_back("threshold", threshold.contiguous());
  return e;
}

Json v6_cfg(const SparseAutoEncoder& d, const Export& e, const Provenance& p) {
  const SparseDictionaryConfig& cfg = d.config();
  Json j;
  j["architecture"] = e.architecture;
  j["d_in"] = cfg.d_model;
  j["d_sae"] = d.d_sae();
  j["dtype"] = std::string(dtype_name(cfg.dtype));
  j["device"] = "cpu";
  j["apply_b_dec_to_input"] = false;
  j["normalize_activations"] = e.normalize;
  j["reshape_activations"] = "none";
  if (e.architecture == "topk") {
    j["k"] = cfg.top_k;
    j["rescale_acts_by_decoder_norm"] = e.rescale;
  }
  if (d.is_transcoder()) j["d_out"] = cfg.d_model;
  Json m;
  m["sae_lens_version"] = kSaeLensV6Version;
  m["sae_lens_training_version"] = nullptr;
  m["model_name"] = opt(p.model_name);
  m["model_class_name"] = "HookedTransformer";
  m["hook_name"] = cfg.hook_point_in;
  m["hook_head_index"] = nullptr;
  if (d.is_transcoder()) {
    m["hook_name_out"] = cfg.hook_point_out;
    m["hook_head_index_out"] = nullptr;
  }
  m["context_size"] = opt(p.context_size);
  m["prepend_bos"] = opt(p.prepend_bos);
  m["dataset_path"] = opt(p.dataset_path);
  m["seqpos_slice"] = Json::array({nullptr});
  m["model_from_pretrained_kwargs"] = {{"center_writing_weights", false}};
  j["metadata"] = m;
  return j;
}

Json v5_cfg(const SparseAutoEncoder& d, const Export& e, const Provenance& p) {
  const SparseDictionaryConfig& cfg = d.config();
  const bool topk = e.architecture == "topk";
  Json j;
  j["architecture"] = e.architecture;
  j["d_in"] = cfg.d_model;
  j["d_sae"] = d.d_sae();
  j["activation_fn_str"] = topk ? "topk" : "relu";
  j["activation_fn_kwargs"] = topk ? Json{{"k", cfg.top_k}} : Json::object();
  j["apply_b_dec_to_input"] = false;
  j["finetuning_scaling_factor"] = false;
  j["context_size"] = opt(p.context_size);
  j["model_name"] = opt(p.model_name);
  j["hook_name"] = cfg.hook_point_in;
  j["hook_layer"] = hook_layer(cfg.hook_point_in);
  j["hook_head_index"] = nullptr;
  j["prepend_bos"] = opt(p.prepend_bos);
  j["dataset_path"] = opt(p.dataset_path);
  j["dataset_trust_remote_code"] = false;
  j["normalize_activations"] = e.normalize;
  j["dtype"] = std::string(dtype_name(cfg.dtype));
  j["device"] = "cpu";
  j["sae_lens_training_version"] = nullptr;
  j["model_from_pretrained_kwargs"] = {{"center_writing_weights", false}};
  j["seqpos_slice"] = Json::array({nullptr});
  return j;
}

}  // namespace

void write_saelens(const SparseAutoEncoder& dict, const Provenance& provenance, const fs::path& dir,
                   std::int64_t saelens_version) {
  const SparseDictionaryConfig& cfg = dict.config();
  SAES_CHECK(saelens_version == 5 || saelens_version == 6, ConfigError,
             "saelens_version: expected 5 or 6, got {}", saelens_version);
  SAES_CHECK(!cfg.use_glu_encoder, UnsupportedError,
             "SAELens export: GLU encoders (use_glu_encoder) have no SAELens architecture");
  SAES_CHECK(cfg.norm_activation != NormActivation::kBatchWise, UnsupportedError,
             "SAELens export: batch-wise normalization has no SAELens equivalent");
  SAES_CHECK(!dict.is_transcoder() || cfg.act_fn != ActFn::kTopK, UnsupportedError,
             "SAELens export: SAELens has no TopK transcoder; convert with --topk-to-jumprelu");
  SAES_CHECK(!dict.is_transcoder() || saelens_version == 6, UnsupportedError,
             "SAELens export: SAELens 5 has no transcoders; write --saelens-version 6");
  SAES_CHECK(!dict.is_transcoder() || cfg.norm_activation != NormActivation::kTokenWise,
             UnsupportedError, "SAELens export: token-wise transcoders have no SAELens equivalent");
  auto work = copy_with_config(dict, cfg);
  if (cfg.norm_activation == NormActivation::kDatasetWise) work->fold_activation_scale();
  const Export e = export_tensors(*work, saelens_version);
  const Json j = saelens_version == 6 ? v6_cfg(*work, e, provenance) : v5_cfg(*work, e, provenance);
  io::save_safetensors(dir / kSaeLensWeightsFile, e.tensors);
  io::write_file_atomic(dir / kSaeLensCfgFile, j.dump(2) + "\n");
}

namespace {

Json read_json(const fs::path& path) {
  try {
    return Json::parse(io::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    SAES_THROW(DataError, "{}: malformed JSON: {}", path.string(), e.what());
  }
}

template <class T>
T get(const Json& j, const char* key, const fs::path& where) {
  SAES_CHECK(j.contains(key) && !j[key].is_null(), DataError, "{}: key '{}' is missing",
             where.string(), key);
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception& e) {
    SAES_THROW(DataError, "{}: key '{}': {}", where.string(), key, e.what());
  }
}

template <class T>
std::optional<T> get_opt(const Json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

bool is_v6(const Json& j) {
  auto v = get_opt<std::string>(j, "sae_lens_version");
  if (!v && j.contains("metadata") && j["metadata"].is_object()) {
    v = get_opt<std::string>(j["metadata"], "sae_lens_version");
  }
  if (!v || v->empty() || !std::isdigit(static_cast<unsigned char>((*v)[0]))) return false;
  return std::stoi(*v) >= 6;
}

NormActivation parse_normalize(const Json& j, bool transcoder, const fs::path& where) {
  if (!j.contains("normalize_activations") || j["normalize_activations"].is_null()) {
    return NormActivation::kInference;
  }
  const Json& n = j["normalize_activations"];
  // pre-6 booleans: true meant expected_average_only_in, a no-op at run time (peers.md §1.4).
  if (n.is_boolean()) return NormActivation::kInference;
  const std::string s = n.get<std::string>();
  if (s == "none" || s == "expected_average_only_in") return NormActivation::kInference;
  if (s == "constant_norm_rescale" && !transcoder) return NormActivation::kTokenWise;
  SAES_THROW(UnsupportedError, "{}: normalize_activations \"{}\" is not supported{}",
             where.string(), s, transcoder ? " for transcoders" : "");
}

struct SaeLensArch {
  ActFn act_fn = ActFn::kRelu;
  bool transcoder = false;
  std::int64_t k = 0;
  bool rescale = false;
};

SaeLensArch parse_architecture(const Json& j, bool v6, const fs::path& where) {
  std::string arch = j.value("architecture", std::string("standard"));
  SaeLensArch a;
  if (!v6) {
    const std::string act =
        get_opt<std::string>(j, "activation_fn_str").value_or(j.value("activation_fn", "relu"));
    if (act == "topk") {
      arch = "topk";
      SAES_CHECK(j.contains("activation_fn_kwargs") && j["activation_fn_kwargs"].contains("k"),
                 DataError, "{}: activation_fn_str topk needs activation_fn_kwargs.k",
                 where.string());
      a.k = j["activation_fn_kwargs"]["k"].get<std::int64_t>();
    } else {
      SAES_CHECK(act == "relu", UnsupportedError, "{}: activation_fn_str \"{}\" is not supported",
                 where.string(), act);
    }
  }
  if (arch == "standard" || arch == "transcoder") {
    a.act_fn = ActFn::kRelu;
  } else if (arch == "jumprelu" || arch == "jumprelu_transcoder") {
    a.act_fn = ActFn::kJumpRelu;
  } else if (arch == "topk") {
    a.act_fn = ActFn::kTopK;
    if (v6) a.k = get<std::int64_t>(j, "k", where);
    a.rescale = j.value("rescale_acts_by_decoder_norm", false);
  } else {
    SAES_THROW(UnsupportedError,
               "{}: architecture \"{}\" is not supported (saes reads standard, jumprelu, topk, "
               "transcoder, jumprelu_transcoder)",
               where.string(), arch);
  }
  a.transcoder = arch == "transcoder" || arch == "jumprelu_transcoder";
  return a;
}

at::Tensor checked(const io::SafetensorsFile& f, const std::string& name,
                   std::vector<std::int64_t> shape) {
  SAES_CHECK(f.contains(name), DataError, "{}: tensor '{}' is missing", f.path().string(), name);
  const auto& info = f.info(name);
  SAES_CHECK(info.shape == shape, DataError, "{}: tensor '{}' has shape [{}], expected [{}]",
             f.path().string(), name, fmt::join(info.shape, ", "), fmt::join(shape, ", "));
  return f.tensor(name).to(at::kDouble);
}

}  // namespace

namespace detail {

Imported read_saelens(const fs::path& input, const std::string& device) {
  const fs::path cfg_path = input / kSaeLensCfgFile;
  const Json j = read_json(cfg_path);
  SAES_CHECK(j.is_object(), DataError, "{}: expected a JSON object", cfg_path.string());
  const bool v6 = is_v6(j);
  const Json meta = v6 && j.contains("metadata") ? j["metadata"] : j;
  const SaeLensArch a = parse_architecture(j, v6, cfg_path);
  const auto d_in = get<std::int64_t>(j, "d_in", cfg_path);
  const auto d_sae = get<std::int64_t>(j, "d_sae", cfg_path);
  SAES_CHECK(d_in > 0 && d_sae > 0, DataError, "{}: d_in {} and d_sae {} must be > 0",
             cfg_path.string(), d_in, d_sae);
  if (a.transcoder) {
    const auto d_out = get<std::int64_t>(j, "d_out", cfg_path);
    SAES_CHECK(d_out == d_in, UnsupportedError,
               "{}: transcoder with d_out {} != d_in {} (saes transcoders keep the width)",
               cfg_path.string(), d_out, d_in);
  }
  SparseDictionaryConfig cfg;
  cfg.d_model = d_in;
  cfg.expansion_factor = expansion_factor_for(d_in, d_sae);
  cfg.act_fn = a.act_fn;
  cfg.norm_activation = parse_normalize(j, a.transcoder, cfg_path);
  cfg.sparsity_include_decoder_norm = a.rescale;
  cfg.top_k = a.act_fn == ActFn::kTopK ? a.k : std::min(cfg.top_k, d_sae);
  auto hook = get_opt<std::string>(meta, "hook_name");
  if (!hook) hook = get_opt<std::string>(meta, "hook_point");
  SAES_CHECK(hook.has_value(), DataError, "{}: no hook_name", cfg_path.string());
  cfg.hook_point_in = *hook;
  cfg.hook_point_out = *hook;
  if (a.transcoder) cfg.hook_point_out = get<std::string>(meta, "hook_name_out", cfg_path);
  const std::string dtype_text = j.value("dtype", std::string("float32"));
  const auto dtype = try_parse_dtype(dtype_text);
  SAES_CHECK(dtype && dtype_is_floating(*dtype), DataError, "{}: dtype \"{}\" is not a float dtype",
             cfg_path.string(), dtype_text);
  cfg.dtype = *dtype;
  cfg.device = device;

  const auto file = io::SafetensorsFile::open(input / kSaeLensWeightsFile);
  at::Tensor W_enc = checked(file, "W_enc", {d_in, d_sae});
  at::Tensor b_enc = checked(file, "b_enc", {d_sae});
  at::Tensor W_dec = checked(file, "W_dec", {d_sae, d_in});
  const at::Tensor b_dec = checked(file, "b_dec", {d_in});
  std::set<std::string> known = {"W_enc", "b_enc", "W_dec", "b_dec"};
  if (file.contains("scaling_factor")) {
    const at::Tensor s = checked(file, "scaling_factor", {d_sae});
    W_dec = W_dec * s.unsqueeze(1);  // f·s @ W_dec = f @ (diag(s) W_dec)
    known.insert("scaling_factor");
  }
  if (j.value("apply_b_dec_to_input", true)) b_enc = b_enc - at::mv(W_enc.t(), b_dec);
  at::Tensor log_threshold;
  if (a.act_fn == ActFn::kJumpRelu) {
    log_threshold = at::log(checked(file, "threshold", {d_sae}));
    known.insert("threshold");
  }
  for (const auto& name : file.names()) {
    SAES_CHECK(known.count(name) != 0, DataError, "{}: unexpected tensor '{}' for architecture {}",
               file.path().string(), name, j.value("architecture", std::string("standard")));
  }
  Imported out;
  out.dict = std::make_unique<SparseAutoEncoder>(cfg);
  const std::map<std::string, at::Tensor> values = {
      {"W_E", W_enc},
      {"b_E", b_enc},
      {"W_D", W_dec},
      {"b_D", b_dec},
      {"activation_function.log_jumprelu_threshold", log_threshold}};
  for (auto& p : out.dict->parameters()) p.value.copy_(values.at(p.name));
  out.provenance.model_name = get_opt<std::string>(meta, "model_name");
  out.provenance.context_size = get_opt<std::int64_t>(meta, "context_size");
  out.provenance.prepend_bos = get_opt<bool>(meta, "prepend_bos");
  out.provenance.dataset_path = get_opt<std::string>(meta, "dataset_path");
  out.sparsity = read_saelens_sparsity(input, d_sae);
  return out;
}

}  // namespace detail
}  // namespace saes::convert

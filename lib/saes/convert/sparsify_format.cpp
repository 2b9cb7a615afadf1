// EleutherAI sparsify hookpoint folders (peers.md §3.4): cfg.json + sae.safetensors, the run's
// config.json one level up. sparsify subtracts b_dec before encoding; that is folded into b_E.
// DEVIATION: nlohmann/json outside io/ — sparsify's cfg.json is read here.
#include <regex>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/mv.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "saes/convert/format_readers.h"
#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/safetensors.h"

namespace saes::convert::detail {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

Json read_json(const fs::path& path) {
  try {
    return Json::parse(io::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    SAES_THROW(DataError, "{}: malformed JSON: {}", path.string(), e.what());
  }
}

/// TransformerLens hook of a sparsify hookpoint folder name: layers.N → blocks.N.hook_resid_post.
std::string hook_of(const std::string& folder) {
  static const std::regex kLayers(R"(^(?:.*\.)?layers[._](\d+)$)");
  std::smatch m;
  if (std::regex_match(folder, m, kLayers))
    return fmt::format("blocks.{}.hook_resid_post", m[1].str());
  if (folder == "embed_tokens") return "hook_embed";
  return folder;
}

at::Tensor checked(const io::SafetensorsFile& f, const std::string& name,
                   std::vector<std::int64_t> shape) {
  SAES_CHECK(f.contains(name), DataError, "{}: tensor '{}' is missing", f.path().string(), name);
  const auto& info = f.info(name);
  SAES_CHECK(info.shape == shape, DataError, "{}: tensor '{}' has shape [{}], expected [{}]",
             f.path().string(), name, fmt::join(info.shape, ", "), fmt::join(shape, ", "));
  return f.tensor(name).to(at::kDouble);
}

bool flag(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_boolean() && j[key].get<bool>();
}

}  // namespace

Imported read_sparsify(const fs::path& input, const std::string& device) {
  const fs::path cfg_path = input / kSaeLensCfgFile;
  const Json j = read_json(cfg_path);
  SAES_CHECK(j.is_object(), DataError, "{}: expected a JSON object", cfg_path.string());
  const std::string activation = j.value("activation", std::string("topk"));
  SAES_CHECK(activation == "topk", UnsupportedError,
             "{}: activation \"{}\" is not supported (saes reads topk)", cfg_path.string(),
             activation);
  for (const char* key : {"signed", "skip_connection", "transcode", "multi_topk"}) {
    SAES_CHECK(!flag(j, key), UnsupportedError, "{}: {} is not supported", cfg_path.string(), key);
  }
  const auto file = io::SafetensorsFile::open(input / kSparsifyWeightsFile);
  SAES_CHECK(file.contains("encoder.weight") && file.info("encoder.weight").shape.size() == 2,
             DataError, "{}: tensor 'encoder.weight' is missing or not 2-D", file.path().string());
  const auto& enc_shape = file.info("encoder.weight").shape;
  const std::int64_t d_in = j.value("d_in", enc_shape[1]);
  std::int64_t m = j.value("num_latents", std::int64_t{0});
  if (m == 0)
    m = static_cast<std::int64_t>(static_cast<double>(d_in) * j.value("expansion_factor", 0.0));
  SAES_CHECK(m > 0, DataError, "{}: neither num_latents nor expansion_factor gives d_sae",
             cfg_path.string());
  const at::Tensor W = checked(file, "encoder.weight", {m, d_in});
  const at::Tensor b = checked(file, "encoder.bias", {m});
  const at::Tensor W_dec = checked(file, "W_dec", {m, d_in});
  const at::Tensor b_dec = checked(file, "b_dec", {d_in});
  for (const auto& name : file.names()) {
    SAES_CHECK(
        name == "encoder.weight" || name == "encoder.bias" || name == "W_dec" || name == "b_dec",
        DataError, "{}: unexpected tensor '{}'", file.path().string(), name);
  }
  dictionaries::SparseDictionaryConfig cfg;
  cfg.d_model = d_in;
  cfg.expansion_factor = expansion_factor_for(d_in, m);
  cfg.act_fn = dictionaries::ActFn::kTopK;
  cfg.top_k = j.value("k", std::int64_t{32});
  cfg.norm_activation = dictionaries::NormActivation::kInference;
  cfg.sparsity_include_decoder_norm = false;
  const fs::path abs = fs::absolute(input).lexically_normal();
  const fs::path dir = abs.has_filename() ? abs : abs.parent_path();
  cfg.hook_point_in = hook_of(dir.filename().string());
  cfg.hook_point_out = cfg.hook_point_in;
  cfg.dtype = file.info("encoder.weight").dtype;
  cfg.device = device;

  Imported out;
  out.dict = std::make_unique<dictionaries::SparseAutoEncoder>(cfg);
  const at::Tensor W_E = W.t();
  const std::map<std::string, at::Tensor> values = {
      {"W_E", W_E}, {"b_E", b - at::mv(W, b_dec)}, {"W_D", W_dec}, {"b_D", b_dec}};
  for (auto& p : out.dict->parameters()) p.value.copy_(values.at(p.name));
  const fs::path run_cfg = dir.parent_path() / "config.json";
  if (!fs::exists(run_cfg)) return out;
  const Json r = read_json(run_cfg);
  if (r.contains("model") && r["model"].is_string()) out.provenance.model_name = r["model"];
  if (r.contains("dataset") && r["dataset"].is_string()) out.provenance.dataset_path = r["dataset"];
  if (r.contains("ctx_len") && r["ctx_len"].is_number_integer()) {
    out.provenance.context_size = r["ctx_len"].get<std::int64_t>();
  }
  return out;
}

}  // namespace saes::convert::detail

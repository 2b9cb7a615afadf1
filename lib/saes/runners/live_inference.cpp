// LiveModel (live_inference.h): what an analysis database records, loaded once, run per text.
#include "saes/runners/live_inference.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include <ATen/TensorOperators.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/topk.h>
#include <fmt/format.h>

#include "saes/analysis/store.h"
#include "saes/config/config_loader.h"
#include "saes/core/error.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/lm/hf_folder.h"
#include "saes/lm/hooks.h"
#include "saes/lm/tokenizer.h"
#include "saes/runners/dictionary_loading.h"

namespace saes::runners {
namespace fs = std::filesystem;

struct LiveModel::Loaded {
  explicit Loaded(lm::LanguageModel m) : lm(std::move(m)) {}
  lm::LanguageModel lm;
  std::unique_ptr<dictionaries::SparseDictionary> dict;
  bool prepend_bos = true;
  std::int64_t max_tokens = kMaxLiveTokens;
  std::optional<std::int64_t> only_layer;  ///< a CLT analysed for one layer (meta clt_layer)
};

LiveModel::LiveModel(const analysis::AnalysisStore& store) : store_(store) {}
LiveModel::~LiveModel() = default;

void LiveModel::load() {
  const auto& meta = store_.meta();
  const auto yaml = meta.find("config_yaml");
  SAES_CHECK(yaml != meta.end() && !yaml->second.empty(), UnsupportedError,
             "live inference: this analysis database records no config (analysed before the "
             "config was stored); re-run saes-analyze");
  const config::AnalyzeSettings s =
      config::parse_analyze_settings(yaml->second, "the analysis database's config_yaml");
  SAES_CHECK(s.model.has_value(), UnsupportedError,
             "live inference: the analysis read stored activations and records no model (set "
             "`model` in the analyze config to browse your own text)");
  SAES_CHECK(s.model->checkpoints.empty(), UnsupportedError,
             "live inference: a dictionary over several checkpoints (model.checkpoints) is not "
             "supported");
  const fs::path sae = s.sae.pretrained_name_or_path;
  SAES_CHECK(fs::exists(sae), IoError,
             "live inference: the analysed dictionary {} is not found from here (the path the "
             "analysis recorded, relative to the viewer's working directory)",
             sae.string());
  const fs::path weights = s.model->model_from_pretrained_path.value_or("");
  SAES_CHECK(!weights.empty() && fs::exists(weights), IoError,
             "live inference: the model {} is not found from here (model.model_from_pretrained_path "
             "as the analysis recorded it)",
             weights.empty() ? std::string("(none)") : weights.string());
  auto loaded = std::make_unique<Loaded>(lm::load_language_model(*s.model));
  SAES_CHECK(loaded->lm.tokenizer != nullptr, ConfigError,
             "live inference: the model has no tokenizer (model.tokenizer_path)");
  loaded->dict = load_trained_dictionary(
      sae, DictionaryLoad{s.model->device, DType::kFloat32, s.sae.strict_loading, {}});
  if (s.sae.fold_activation_scale &&
      loaded->dict->config().norm_activation == dictionaries::NormActivation::kDatasetWise) {
    loaded->dict->fold_activation_scale();
  }
  loaded->prepend_bos = s.model->prepend_bos;
  const std::int64_t n_ctx = loaded->lm.model.spec().n_ctx;
  if (n_ctx > 0) loaded->max_tokens = std::min(loaded->max_tokens, n_ctx);
  if (const auto layer = meta.find("clt_layer"); layer != meta.end()) {
    loaded->only_layer = std::stoll(layer->second);
  }
  loaded_ = std::move(loaded);
}

analysis::LiveTokens LiveModel::run(std::string_view text, std::optional<std::int64_t> feature) {
  const std::lock_guard lock(mutex_);
  if (!tried_) {
    tried_ = true;
    try {
      load();
    } catch (...) {
      failure_ = std::current_exception();
    }
  }
  if (failure_) std::rethrow_exception(failure_);
  Loaded& m = *loaded_;
  std::vector<std::int64_t> ids;
  if (m.prepend_bos && m.lm.special_ids.bos) ids.push_back(*m.lm.special_ids.bos);
  for (const std::int64_t id : m.lm.tokenizer->encode(text)) ids.push_back(id);
  const auto T = static_cast<std::int64_t>(ids.size());
  SAES_CHECK(T >= 1, DataError, "text: it encodes to no token");
  SAES_CHECK(T <= m.max_tokens, DataError, "text: {} tokens, the limit is {}", T, m.max_tokens);

  lm::HookSet hooks;
  for (const auto& h : m.dict->input_hooks()) hooks.capture(h);
  const auto acts = m.lm.model.forward(at::tensor(ids, at::kLong).view({1, T}), nullptr, hooks,
                                       lm::GradMode::kInference);
  dictionaries::HookActs raw;
  for (const auto& h : m.dict->input_hooks()) {
    const at::Tensor v = acts.at(h).to(at::kFloat);
    raw[h] = m.dict->reads_sequences() ? v : v[0];
  }
  at::Tensor f = m.dict->encode(m.dict->prepare_input(raw)).to(at::kFloat).cpu().reshape({T, -1});
  if (m.only_layer) f = f.narrow(1, *m.only_layer * m.dict->d_sae(), m.dict->d_sae());
  SAES_CHECK(f.size(1) == store_.d_sae(), DataError,
             "live inference: the dictionary has {} features, the analysis database {}",
             f.size(1), store_.d_sae());

  analysis::LiveTokens out;
  const auto k = std::min<std::int64_t>(static_cast<std::int64_t>(analysis::kLiveTopK), f.size(1));
  const auto [values, indices] = at::topk(f, k, 1);
  for (std::int64_t t = 0; t < T; ++t) {
    // the analysis database's own token texts (leading spaces kept), as the rest of the viewer
    const std::int64_t id = ids[static_cast<std::size_t>(t)];
    std::string token = store_.token_text(id);
    out.tokens.push_back(token.empty() ? m.lm.tokenizer->decode({id}) : std::move(token));
    std::vector<std::pair<std::int64_t, float>> top;
    for (std::int64_t j = 0; j < k; ++j) {
      const float v = values[t][j].item<float>();
      if (v <= 0.0F) break;
      top.emplace_back(indices[t][j].item<std::int64_t>(), v);
    }
    out.top.push_back(std::move(top));
  }
  if (feature) {
    SAES_CHECK(*feature >= 0 && *feature < f.size(1), DataError, "feature: {} is not an id",
               *feature);
    const at::Tensor col = f.select(1, *feature).contiguous();
    out.feature.assign(col.data_ptr<float>(), col.data_ptr<float>() + T);
  }
  return out;
}

analysis::LiveInference LiveModel::inference() {
  return [this](std::string_view text, std::optional<std::int64_t> feature) {
    return run(text, feature);
  };
}

}  // namespace saes::runners

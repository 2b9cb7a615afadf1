// ModelSet: hook points of one model or of named checkpoints over the same tokens; loading and
// checking the checkpoints of model.checkpoints.
#include "saes/lm/model_set.h"

#include <algorithm>
#include <iterator>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/lm/hf_folder.h"
#include "saes/lm/hooks.h"

namespace saes::lm {
namespace {

namespace fs = std::filesystem;

/// The same file or folder, also when written differently (relative, `..`, a link).
bool same_path(const fs::path& a, const fs::path& b) {
  std::error_code error;
  const bool same = fs::equivalent(a, b, error);
  return !error && same;
}

/// The first field in which `other` differs from `main` among those that decide the hook points,
/// their widths and the meaning of token ids; empty when none does.
std::string first_difference(const TransformerSpec& main, const TransformerSpec& other) {
  if (main.architecture != other.architecture) {
    return fmt::format("architecture {} differs from the main model's {}",
                       architecture_name(other.architecture), architecture_name(main.architecture));
  }
  const auto as_int = [](auto value) { return static_cast<int64_t>(value); };
  const std::vector<std::pair<const char*, std::pair<int64_t, int64_t>>> fields = {
      {"d_model", {main.d_model, other.d_model}},
      {"n_layers", {main.n_layers, other.n_layers}},
      {"n_heads", {main.n_heads, other.n_heads}},
      {"n_kv_heads", {main.n_kv_heads, other.n_kv_heads}},
      {"d_head", {main.d_head, other.d_head}},
      {"d_mlp", {main.d_mlp, other.d_mlp}},
      {"d_vocab (vocabulary size)", {main.d_vocab, other.d_vocab}},
      {"n_ctx", {main.n_ctx, other.n_ctx}},
      {"norm", {as_int(main.norm), as_int(other.norm)}},
      {"act", {as_int(main.act), as_int(other.act)}},
      {"positional", {as_int(main.positional), as_int(other.positional)}},
      {"post_norms", {as_int(main.post_norms), as_int(other.post_norms)}},
      {"bos_token_id", {main.bos_token_id, other.bos_token_id}},
      {"eos_token_id", {main.eos_token_id, other.eos_token_id}},
  };
  for (const auto& [field, values] : fields) {
    if (values.first != values.second) {
      return fmt::format("{} {} differs from the main model's {}", field, values.second,
                         values.first);
    }
  }
  return "";
}

std::string names_of(const CheckpointModels& checkpoints) {
  std::vector<std::string> names;
  for (const auto& [name, model] : checkpoints) names.push_back(name);
  return fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace

CheckpointModels load_checkpoints(const LanguageModelConfig& config, const Transformer& main,
                                  const fs::path& main_path) {
  CheckpointModels out;
  std::vector<std::pair<fs::path, std::shared_ptr<const Transformer>>> loaded;
  for (const auto& [name, path] : config.checkpoints) {
    const std::string key = "model.checkpoints." + name;
    SAES_CHECK(fs::exists(path), IoError, "{}: no such file or folder {}", key, path.string());
    std::shared_ptr<const Transformer> model;
    for (const auto& [seen, shared] : loaded) {
      if (same_path(seen, path)) model = shared;
    }
    if (!model && same_path(main_path, path)) model = std::make_shared<const Transformer>(main);
    if (!model) {
      try {
        model = std::make_shared<const Transformer>(load_model_files(config, path));
      } catch (Error& e) {
        e.add_context(key);
        throw;
      }
      const std::string diff = first_difference(main.spec(), model->spec());
      SAES_CHECK(diff.empty(), ConfigError,
                 "{}: {}: {} ({}); checkpoints must share the architecture and vocabulary of "
                 "model_from_pretrained_path",
                 key, path.string(), diff, main_path.string());
    }
    loaded.emplace_back(path, model);
    out.emplace(name, model);
  }
  return out;
}

ModelSet::ModelSet(const Transformer& model) : single_(&model) {}

ModelSet::ModelSet(CheckpointModels checkpoints) : checkpoints_(std::move(checkpoints)) {
  SAES_ASSERT(!checkpoints_.empty(), "a model set of checkpoints needs at least one");
}

const TransformerSpec& ModelSet::spec() const {
  return single_ != nullptr ? single_->spec() : checkpoints_.begin()->second->spec();
}

c10::Device ModelSet::device() const {
  return single_ != nullptr ? single_->device() : checkpoints_.begin()->second->device();
}

void ModelSet::check_hook(const std::string& name) const {
  const auto parts = split_checkpoint_hook(name);
  if (single_ != nullptr) {
    SAES_CHECK(!parts, ConfigError,
               "hook point \"{}\" names checkpoint \"{}\", but model.checkpoints is not set", name,
               parts ? parts->checkpoint : "");
    hook_stage(single_->spec(), name);
    return;
  }
  SAES_CHECK(parts.has_value(), ConfigError,
             "hook point \"{}\": with model.checkpoints set, hook points are "
             "<checkpoint>{}<hook> (checkpoints: {})",
             name, kCheckpointSeparator, names_of(checkpoints_));
  const auto it = checkpoints_.find(parts->checkpoint);
  SAES_CHECK(it != checkpoints_.end(), ConfigError,
             "hook point \"{}\" names checkpoint \"{}\", which model.checkpoints lacks "
             "(checkpoints: {})",
             name, parts->checkpoint, names_of(checkpoints_));
  try {
    hook_stage(it->second->spec(), parts->hook);
  } catch (Error& e) {
    e.add_context(fmt::format("hook point \"{}\"", name));
    throw;
  }
}

std::map<std::string, at::Tensor> ModelSet::forward(const at::Tensor& tokens,
                                                    const at::Tensor* attention_mask,
                                                    const std::vector<std::string>& hooks,
                                                    GradMode grad_mode) const {
  for (const auto& name : hooks) check_hook(name);
  if (single_ != nullptr) {
    HookSet set;
    for (const auto& name : hooks) set.capture(name);
    return single_->forward(tokens, attention_mask, set, grad_mode);
  }
  // Per model (names sharing one run it once): hook point -> the model's own hook name.
  std::vector<std::pair<const Transformer*, std::vector<std::pair<std::string, std::string>>>> runs;
  for (const auto& [name, model] : checkpoints_) {
    const std::string prefix = name + kCheckpointSeparator;
    for (const auto& hook : hooks) {
      if (hook.rfind(prefix, 0) != 0) continue;
      auto run = std::find_if(runs.begin(), runs.end(),
                              [&](const auto& r) { return r.first == model.get(); });
      if (run == runs.end()) {
        runs.emplace_back(model.get(), std::vector<std::pair<std::string, std::string>>{});
        run = std::prev(runs.end());
      }
      run->second.emplace_back(hook, hook.substr(prefix.size()));
    }
  }
  std::map<std::string, at::Tensor> out;
  for (const auto& [model, names] : runs) {
    HookSet set;
    for (const auto& [point, own] : names) set.capture(own);
    auto acts = model->forward(tokens, attention_mask, set, grad_mode);
    for (const auto& [point, own] : names) out.emplace(point, acts.at(own));
  }
  return out;
}

}  // namespace saes::lm

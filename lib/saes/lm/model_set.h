// ModelSet: the models whose hook points one run reads over one token stream — the language model
// alone (hook names as TransformerLens), or named checkpoints of one architecture
// (`model.checkpoints`, hook names "<checkpoint>:<hook>") run one after the other on the same
// tokens, so their activations are aligned token for token. Loading the checkpoints is here too.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "saes/lm/config.h"
#include "saes/lm/transformer.h"

namespace saes::lm {

/// Loaded checkpoints by name; names whose paths are the same file share one model.
using CheckpointModels = std::map<std::string, std::shared_ptr<const Transformer>>;

/// Loads `config.checkpoints` as load_language_model loads model_from_pretrained_path (llama2.c
/// .bin or HF folder; config's dtype and device), each distinct path once: a path equal to
/// `main_path` shares `main`'s weights (a Transformer copy shares its tensors). Every checkpoint
/// must have `main`'s architecture, sizes and vocabulary: ConfigError "model.checkpoints.<name>:
/// ..." naming the first field that differs. Empty when config.checkpoints is.
CheckpointModels load_checkpoints(const LanguageModelConfig& config, const Transformer& main,
                                  const std::filesystem::path& main_path);

class ModelSet {
 public:
  /// One model (not owned; must outlive the set): hook points are its own names.
  explicit ModelSet(const Transformer& model);
  /// Named checkpoints (non-empty, one architecture): hook points are "<name>:<hook>".
  explicit ModelSet(CheckpointModels checkpoints);

  bool has_checkpoints() const { return !checkpoints_.empty(); }
  /// The architecture every model of the set shares.
  const TransformerSpec& spec() const;
  c10::Device device() const;

  /// Throws ConfigError naming `name` unless a model of the set has it: a bare hook of a set with
  /// checkpoints, a prefixed hook of a set without, an unknown checkpoint (listing the names) or
  /// a hook the model lacks (listing the valid ones).
  void check_hook(const std::string& name) const;

  /// Captures `hooks` (names check_hook accepts) on `tokens` [batch, seq_len] int64 with
  /// `attention_mask` as Transformer::forward: each model that a hook names runs once (in name
  /// order), up to its deepest requested hook. Returns hook point -> [batch, seq_len, ...] in the
  /// models' dtype on device(); names sharing one model share its tensors.
  std::map<std::string, at::Tensor> forward(const at::Tensor& tokens,
                                            const at::Tensor* attention_mask,
                                            const std::vector<std::string>& hooks,
                                            GradMode grad_mode = GradMode::kInference) const;

 private:
  const Transformer* single_ = nullptr;
  CheckpointModels checkpoints_;
};

}  // namespace saes::lm

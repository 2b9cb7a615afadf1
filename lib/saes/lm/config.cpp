// The naming rule of checkpoint hook points (LanguageModelConfig::checkpoints); torch-free, so the
// config layer validates names without the model.
#include "saes/lm/config.h"

namespace saes::lm {

std::optional<CheckpointHook> split_checkpoint_hook(std::string_view name) {
  const std::size_t at = name.find(kCheckpointSeparator);
  if (at == std::string_view::npos) return std::nullopt;
  return CheckpointHook{std::string(name.substr(0, at)), std::string(name.substr(at + 1))};
}

}  // namespace saes::lm

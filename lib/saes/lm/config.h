// LanguageModelConfig: which language model to load and how to tokenize (spec §1.5 and §6.2).
// Field names and defaults follow the original `LanguageModelConfig`; the YAML side is config/.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "saes/core/dtype.h"

namespace saes::lm {

/// Which implementation runs the model; `auto` picks from the model files.
enum class LmBackend { kHuggingFace, kTransformerLens, kTokenizerOnly, kAuto };
inline constexpr std::array<std::string_view, 4> kLmBackendNames = {
    "huggingface", "transformer_lens", "tokenizer_only", "auto"};
constexpr std::span<const std::string_view> enum_names(LmBackend) { return kLmBackendNames; }

/// Separates a checkpoint's name from a hook name in the hook points of a run with
/// `model.checkpoints` ("step1000:blocks.3.hook_resid_post"). No TransformerLens hook name holds
/// it.
inline constexpr char kCheckpointSeparator = ':';

/// A hook point split at kCheckpointSeparator.
struct CheckpointHook {
  std::string checkpoint;  ///< the name under model.checkpoints
  std::string hook;        ///< the model's own hook name
};

/// "<checkpoint>:<hook>" -> its two parts; nullopt when `name` holds no separator.
std::optional<CheckpointHook> split_checkpoint_hook(std::string_view name);

struct LanguageModelConfig {
  std::string model_name = "gpt2";
  std::optional<std::filesystem::path> model_from_pretrained_path;
  std::optional<std::filesystem::path> tokenizer_path;
  std::optional<std::filesystem::path> cache_dir;
  bool local_files_only = false;
  std::int64_t max_length = 2048;
  LmBackend backend = LmBackend::kAuto;
  bool prepend_bos = true;
  std::optional<std::int64_t> bos_token_id;
  std::optional<std::int64_t> eos_token_id;
  std::optional<std::int64_t> pad_token_id;
  std::string device = "cpu";
  DType dtype = DType::kFloat32;
  /// saes addition: name -> weights path of other checkpoints of this model (lm/model_set.h).
  std::map<std::string, std::filesystem::path> checkpoints;

  template <class V>
  void visit_fields(V& v) {
    v("model_name", model_name, "model identifier (HF name); also the tokenizer/architecture name");
    v("model_from_pretrained_path", model_from_pretrained_path,
      "load weights from this local path (e.g. a llama2.c .bin or an HF folder) instead of by "
      "name");
    v("tokenizer_path", tokenizer_path,
      "tokenizer file or folder (null: beside model_from_pretrained_path, else by model_name); "
      "saes addition");
    v("cache_dir", cache_dir, "the original's download cache (not supported: exit 5 when set)");
    v("local_files_only", local_files_only,
      "the original's switch; saes never downloads, so both values read local files only");
    v("max_length", max_length, "tokenizer truncation length");
    v("backend", backend, "model implementation; auto picks from the model files");
    v("prepend_bos", prepend_bos, "prepend BOS to every context (strip it when false)");
    v("bos_token_id", bos_token_id, "override BOS id (null: tokenizer's, falling back to EOS)");
    v("eos_token_id", eos_token_id, "override EOS id (null: tokenizer's)");
    v("pad_token_id", pad_token_id, "override pad id (null: tokenizer's, falling back to EOS)");
    v("device", device, "device the model runs on: cpu, cuda, cuda:N");
    v("dtype", dtype, "model weight/activation dtype");
    v("checkpoints", checkpoints,
      "several checkpoints of this model over one token stream: name -> weights path (a llama2.c "
      ".bin or an HF folder, each with the architecture and vocabulary of "
      "model_from_pretrained_path, which stays the tokenizer and architecture source); when set, "
      "every hook point is written <name>:<hook> (e.g. step1000:blocks.3.hook_resid_post) and "
      "each batch's tokens run through every named checkpoint; saes addition");
  }
  bool operator==(const LanguageModelConfig&) const = default;
};

}  // namespace saes::lm

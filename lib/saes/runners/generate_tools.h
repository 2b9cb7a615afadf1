// The helper subcommands of saes-generate: `tokenize` (how text tokenizes, as JSON lines) and
// `probe` (run the model on one text and save tokens, hooks and logits to a safetensors file).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "saes/lm/config.h"

namespace saes::runners {

struct TokenizeOptions {
  std::filesystem::path tokenizer;             ///< any path load_tokenizer accepts
  std::optional<std::string> text;             ///< one text, or
  std::optional<std::filesystem::path> input;  ///< JSONL, one {"text": ...} per line
  bool pieces = false;                         ///< also print the pieces
};

/// Writes one JSON line `{"ids": [...]}` (+ `"pieces": [...]`) per text to `out` (blank input
/// lines are skipped). Throws ConfigError unless exactly one of text/input is set, DataError
/// naming file:line for a line that is not an object with a string "text".
int run_tokenize(const TokenizeOptions& options, std::ostream& out);

struct ProbeOptions {
  lm::LanguageModelConfig model;            ///< model_from_pretrained_path must be set
                                            ///< (checkpoints: hooks are "<name>:<hook>")
  std::optional<std::string> text;          ///< tokenized with BOS first (when the model has one)
  std::optional<std::vector<int64_t>> ids;  ///< used as given
  std::vector<std::string> hooks;
  bool logits = false;
  std::filesystem::path output;  ///< safetensors file
  /// A trained dictionary (any variant: a saes-train run folder, or a layout saes-convert reads).
  std::optional<std::filesystem::path> dictionary;
};

/// Runs the model on one sequence and saves "tokens" [1, n] int64, each hook [1, n, ...] and
/// "logits" when asked to `output`; prints one line per tensor (name, shape, dtype, L2 norm).
/// With model.checkpoints, hooks are "<checkpoint>:<hook>" and the logits "<checkpoint>:logits".
/// With `dictionary` (named N after its folder), also the hooks it reads and
/// "N.feature_acts" [1, n, ...] (f as the variant shapes it: an SAE [1, n, d_sae], a CLT
/// [1, n, L, d_sae], in the dictionary's training scale) and "N.reconstruction.<hook>" [1, n,
/// d_model] per label hook, in the model's scale.
int run_probe(const ProbeOptions& options, std::ostream& out);

/// "1,2,3" -> {1, 2, 3}; throws ConfigError naming `what` for anything else.
std::vector<int64_t> parse_id_list(std::string_view text, std::string_view what);
/// "NAME=PATH" (probe's --checkpoint) -> {NAME, PATH}; ConfigError for anything else or a NAME
/// holding the checkpoint separator.
std::pair<std::string, std::filesystem::path> parse_checkpoint_option(std::string_view text);
/// "a,b" -> {"a", "b"} (empty items dropped).
std::vector<std::string> split_list(std::string_view text);

}  // namespace saes::runners

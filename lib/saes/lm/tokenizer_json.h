// Reader of Hugging Face `tokenizer.json` files: builds a ByteLevelBpeTokenizer (GPT-2, NeoX,
// Qwen2, Llama 3) or a SentencePieceBpeTokenizer (Llama 2 style) from the file's
// model/normalizer/pre_tokenizer/ decoder sections. post_processor is ignored: encode() never adds
// BOS/EOS.
#pragma once

#include <filesystem>
#include <memory>

#include "saes/lm/tokenizer.h"

namespace saes::lm {

/// Loads `tokenizer_json`, taking special ids from `tokenizer_config.json` or
/// `special_tokens_map.json` beside it when present (see load_tokenizer). Throws DataError naming
/// the file and the JSON problem, UnsupportedError naming a model/normalizer/pre-tokenizer type we
/// do not implement.
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::filesystem::path& tokenizer_json);

}  // namespace saes::lm

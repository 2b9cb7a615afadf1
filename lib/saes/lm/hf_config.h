// Hugging Face config.json -> TransformerSpec (no torch: the fuzz target links it alone).
#pragma once

#include <string>

#include "saes/lm/model_config.h"

namespace saes::lm {

/// Parses config.json text. Supported `architectures[0]`: GPT2LMHeadModel, GPTNeoXForCausalLM,
/// LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, Gemma2ForCausalLM,
/// Gemma3ForCausalLM, Gemma3ForConditionalGeneration (UnsupportedError naming others, and
/// unsupported rope types / layer types / Qwen use_sliding_window: true). Missing required keys: ConfigError naming `where` and
/// key.
TransformerSpec parse_hf_config(const std::string& json_text, const std::string& where);

}  // namespace saes::lm

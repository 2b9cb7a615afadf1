// Hugging Face models for the engine: config.json -> TransformerSpec (hf_config.h) and the
// per-architecture mapping of HF tensor names to engine names (hf_gpt2.cpp, hf_gpt_neox.cpp,
// hf_llama.cpp, hf_gemma.cpp). Reading the safetensors files themselves is io's job (a WeightSource over them).
#pragma once

#include <string>

#include "saes/lm/hf_config.h"
#include "saes/lm/model_config.h"
#include "saes/lm/transformer.h"
#include "saes/lm/weight_source.h"

namespace saes::lm {

/// Engine-named weights (see expected_weights) read from HF-named tensors of spec.architecture.
/// A missing HF tensor or a wrong shape throws DataError naming the HF tensor.
MapWeightSource map_hf_weights(const TransformerSpec& spec, WeightSource& hf);

/// parse_hf_config + map_hf_weights + Transformer construction.
Transformer load_hf_transformer(const std::string& config_json, WeightSource& hf,
                                TransformerOptions options, const std::string& where);

// Per-architecture mappings (one file each), called by map_hf_weights.
/// GPT-2: Conv1D weights [in, out] are transposed; c_attn splits into q, k, v; the `transformer.`
/// prefix is optional (old checkpoints); attn.bias / masked_bias buffers are ignored.
MapWeightSource map_hf_gpt2_weights(const TransformerSpec& spec, WeightSource& hf);
/// GPT-NeoX / Pythia: query_key_value rows grouped per head as (q, k, v).
MapWeightSource map_hf_gpt_neox_weights(const TransformerSpec& spec, WeightSource& hf);
/// Llama, Qwen2 (q/k/v biases), Qwen3 (q_norm / k_norm) and Mistral: one file, the layouts are
/// the same.
MapWeightSource map_hf_llama_weights(const TransformerSpec& spec, WeightSource& hf);
/// One layer's self_attn (q/k/v/o projections with their biases, q_norm / k_norm) and gated MLP
/// (gate/up/down) from HF names under `src` ("model.layers.L.") to engine names under `dst`
/// ("blocks.L."): the part Llama, Qwen, Mistral and Gemma share.
void map_hf_llama_attention_and_mlp(const TransformerSpec& spec, WeightSource& hf,
                                    MapWeightSource& out, const std::string& src,
                                    const std::string& dst);
/// Gemma 2 / 3: four norms per layer (input, post_attention, pre_feedforward, post_feedforward →
/// ln1, ln1_post, ln2, ln2_post), raw w (the engine adds the 1); Gemma 3's q_norm / k_norm. The
/// `model.` prefix, or the multimodal checkpoints' `language_model.model.` /
/// `model.language_model.`.
MapWeightSource map_hf_gemma_weights(const TransformerSpec& spec, WeightSource& hf);

}  // namespace saes::lm

// Loader for llama2.c "v0" checkpoints (karpathy/llama2.c export, e.g. stories260K.bin): header,
// float32 weights in a fixed order, interleaved-pair RoPE. Versioned exports ("ak42") are refused.
#pragma once

#include <filesystem>

#include "saes/lm/model_config.h"
#include "saes/lm/transformer.h"
#include "saes/lm/weight_source.h"

namespace saes::lm {

/// A parsed checkpoint: the spec (architecture kLlama2c, RMSNorm eps 1e-5, SwiGLU, interleaved RoPE
/// θ = 10000, BOS 1, EOS 2) and its weights in engine names (see expected_weights), float32 on CPU.
struct Llama2cCheckpoint {
  TransformerSpec spec;
  MapWeightSource weights;
};

/// Reads and validates `path`: positive header sizes, dim % n_heads == 0, n_heads % n_kv_heads == 0
/// and an exact file size (DataError naming the file, expected vs got bytes). A file starting with
/// the v1/v2 magic "ak42" throws UnsupportedError; a missing file throws IoError.
Llama2cCheckpoint read_llama2c_checkpoint(const std::filesystem::path& path);

/// read_llama2c_checkpoint + Transformer construction.
Transformer load_llama2c(const std::filesystem::path& path, TransformerOptions options = {});

}  // namespace saes::lm

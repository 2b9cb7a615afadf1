// Model-informed initialization (spec §4 steps 5, 7 and 8): initialize_lorsa_with_mhsa,
// initialize_tc_with_mlp and initialize_W_D_with_active_subspace read the language model's layer
// `initializer.model_layer` (attention heads or MLP) and one batch; what each variant does with
// them is its own (SparseDictionary::init_with_attention / init_with_mlp /
// init_decoder_in_active_subspace). docs/train.md "Model-informed initialization".
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "saes/dictionaries/model_init.h"
#include "saes/training/config.h"

namespace at {
class Tensor;
}  // namespace at

namespace saes {
class Logger;
namespace dictionaries {
class SparseDictionary;
struct SparseDictionaryConfig;
}  // namespace dictionaries
namespace lm {
class Transformer;
}  // namespace lm
}  // namespace saes

namespace saes::training {

/// Whether `cfg` has a model-informed step: initialize_lorsa_with_mhsa, initialize_tc_with_mlp,
/// or initialize_W_D_with_active_subspace on a lorsa (which reads the model's W_V / W_O).
bool needs_model(const InitializerConfig& cfg, const dictionaries::SparseDictionaryConfig& sae);

/// Attention layer `layer` of `model` in the space of blocks.`layer`.ln1.hook_normalized: the
/// norm's weight and bias folded into W_Q/W_K/W_V and their biases, K/V repeated per query head,
/// the model's RoPE layout and frequencies. `name` names the model in messages. ConfigError for
/// a layer the model does not have.
dictionaries::AttentionLayer attention_layer(const lm::Transformer& model, std::int64_t layer,
                                             const std::string& name);

/// The MLP of `layer` as a function of blocks.`layer`.ln2.hook_normalized rows (float32, CPU).
dictionaries::MlpFunction mlp_function(const lm::Transformer& model, std::int64_t layer);

/// Spec §4 steps 5, 7, 8 in order, on one RAW batch (hook → activations in the layout
/// initialization_search takes), after initialize_parameters and before initialization_search.
/// Checks that the dictionary's hooks are the ones the step's maths holds for (ConfigError naming
/// the key and the expected hook): blocks.L.ln1.hook_normalized → blocks.L.hook_attn_out for
/// Lorsa, blocks.L.ln2.hook_normalized → blocks.L.hook_mlp_out for initialize_tc_with_mlp.
/// `model` may be null only when needs_model is false.
void initialize_from_model(dictionaries::SparseDictionary& dict, const InitializerConfig& cfg,
                           const lm::Transformer* model, const std::string& model_name,
                           const std::map<std::string, at::Tensor>& raw, Logger& logger);

}  // namespace saes::training

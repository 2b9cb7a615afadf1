// The dispatch from a TransformerSpec's architecture to its Hugging Face weight mapping, and
// load_hf_transformer (config.json + weights -> Transformer).
#include "saes/lm/hf_model.h"

#include "saes/core/error.h"

namespace saes::lm {

MapWeightSource map_hf_weights(const TransformerSpec& spec, WeightSource& hf) {
  switch (spec.architecture) {
    case Architecture::kGpt2:
      return map_hf_gpt2_weights(spec, hf);
    case Architecture::kGptNeoX:
      return map_hf_gpt_neox_weights(spec, hf);
    case Architecture::kLlama:
    case Architecture::kQwen2:
    case Architecture::kQwen3:
    case Architecture::kMistral:
      return map_hf_llama_weights(spec, hf);
    case Architecture::kGemma2:
    case Architecture::kGemma3:
      return map_hf_gemma_weights(spec, hf);
    case Architecture::kLlama2c:
      break;
  }
  SAES_THROW(UnsupportedError, "{}: no Hugging Face layout for architecture {}", hf.describe(),
             architecture_name(spec.architecture));
}

Transformer load_hf_transformer(const std::string& config_json, WeightSource& hf,
                                TransformerOptions options, const std::string& where) {
  const TransformerSpec spec = parse_hf_config(config_json, where);
  MapWeightSource weights = map_hf_weights(spec, hf);
  return Transformer(spec, weights, options);
}

}  // namespace saes::lm

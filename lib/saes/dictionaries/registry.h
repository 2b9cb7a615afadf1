// The dictionary variant table (style §B4: explicit name → factory, no self-registration).
#pragma once

#include <memory>

#include "saes/dictionaries/config.h"

namespace saes::dictionaries {

class SparseDictionary;

/// Constructs the variant named by cfg.sae_type with zero parameters (validated config).
/// Throws UnsupportedError for variants not implemented yet (crosscoder, clt, lorsa, molt).
std::unique_ptr<SparseDictionary> make_dictionary(const SparseDictionaryConfig& cfg);

}  // namespace saes::dictionaries

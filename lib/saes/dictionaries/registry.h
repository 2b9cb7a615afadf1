// The dictionary variant table (style §B4: explicit name → factory, no self-registration).
#pragma once

#include <memory>

#include "saes/dictionaries/config.h"
#include "saes/dictionaries/feature_parallel.h"

namespace saes::dictionaries {

class SparseDictionary;

/// Constructs the variant named by cfg.sae_type with zero parameters (validated config), holding
/// the features of `shard` (all of them by default). Throws UnsupportedError for variants not
/// implemented yet (crosscoder, lorsa, molt).
std::unique_ptr<SparseDictionary> make_dictionary(const SparseDictionaryConfig& cfg,
                                                  FeatureShard shard = {});

}  // namespace saes::dictionaries

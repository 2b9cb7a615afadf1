// Lorsa z-patterns (spec §7.2) of the sampled contexts: a second pass over the contexts.
#include "saes/analysis/source_patterns.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/tensor.h>

#include "saes/core/error.h"

namespace saes::analysis {

std::int64_t add_source_patterns(const dictionaries::SparseDictionary& dict,
                                 std::vector<FeatureStats>& features,
                                 const ContextBatches& batches) {
  SAES_CHECK(!dict.feature_shard().sharded(), UnsupportedError,
             "z-patterns: the dictionary must be whole (unsharded)");
  // context index → the (feature, sample) pairs sampled from it
  std::map<std::int64_t, std::vector<std::pair<std::int64_t, SampledContext*>>> wanted;
  for (std::size_t i = 0; i < features.size(); ++i) {
    for (auto& band : features[i].samples) {
      for (SampledContext& c : band) {
        wanted[c.provenance.context_index].emplace_back(static_cast<std::int64_t>(i), &c);
      }
    }
  }
  if (wanted.empty()) return 0;
  const std::string hook = dict.input_hooks().front();
  const at::NoGradGuard no_grad;
  std::int64_t context = 0, computed = 0;
  while (context <= wanted.rbegin()->first) {
    std::optional<dictionaries::HookActs> raw = batches();
    if (!raw) break;
    const at::Tensor acts = raw->at(hook);
    for (std::int64_t b = 0; b < acts.size(0); ++b, ++context) {
      const auto it = wanted.find(context);
      if (it == wanted.end()) continue;
      std::vector<std::int64_t> ids;
      for (const auto& [feature, sample] : it->second) ids.push_back(feature);
      const at::Tensor x = dict.prepare_input({{hook, acts.narrow(0, b, 1)}});
      // [m, T(q), T(k)] for the m sampled features of this context
      const at::Tensor all =
          dict.source_contributions(x, at::tensor(ids, at::TensorOptions().dtype(at::kLong)))
              .to(at::kCPU)
              .to(at::kFloat)
              .contiguous();
      const std::int64_t T = all.size(1);
      for (std::size_t j = 0; j < it->second.size(); ++j) {
        SampledContext& c = *it->second[j].second;
        const float* p = all.data_ptr<float>() + static_cast<std::int64_t>(j) * T * T;
        const auto n = static_cast<std::int32_t>(c.tokens.size());
        c.source_q.clear();
        c.source_k.clear();
        c.source_values.clear();
        for (std::size_t e = 0; e < c.positions.size(); ++e) {  // queries where it fires
          const std::int32_t q = c.positions[e];
          const float f = c.values[e];
          if (f <= 0 || q < 0 || q >= n || c.offset + q >= T) continue;
          const float* row = p + static_cast<std::int64_t>(c.offset + q) * T;
          for (std::int32_t k = 0; k < n && c.offset + k < T; ++k) {
            const float v = row[c.offset + k];
            if (std::abs(v) < kSourcePatternThreshold * f) continue;
            c.source_q.push_back(q);
            c.source_k.push_back(k);
            c.source_values.push_back(v);
          }
        }
        ++computed;
      }
    }
  }
  return computed;
}

}  // namespace saes::analysis

// ParallelismConfig: the (data, head, model) mesh shape a run asks for (spec §1.6, §9).
// Written flat into the settings YAML (`data_parallel_size`, `head_parallel_size`,
// `model_parallel_size`) as upstream.
#pragma once

#include <cstdint>

namespace saes::distributed {

struct ParallelismConfig {
  std::int64_t data_parallel_size = 1;
  std::int64_t model_parallel_size = 1;
  std::int64_t head_parallel_size = 1;

  template <class V>
  void visit_fields(V& v) {
    v("data_parallel_size", data_parallel_size,
      "data-parallel ranks (each gets batch_size / dp rows)");
    v("model_parallel_size", model_parallel_size,
      "tensor-parallel ranks (d_sae is split across them)");
    v("head_parallel_size", head_parallel_size,
      "crosscoder head-parallel ranks (sae.hook_points are split across them; saes addition: "
      "the original sizes this axis by its list of activation factories)");
  }
  bool operator==(const ParallelismConfig&) const = default;
};

}  // namespace saes::distributed

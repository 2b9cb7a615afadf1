// Greedy decoding: argmax of the last position's logits, appended, repeated.
#include "saes/lm/generate.h"

#include <ATen/ops/from_blob.h>

#include "saes/core/error.h"

namespace saes::lm {

std::vector<int64_t> generate_greedy(const Transformer& model, const std::vector<int64_t>& prompt,
                                     int64_t n_new) {
  SAES_CHECK(!prompt.empty(), ConfigError, "generate_greedy: the prompt is empty");
  const auto total = static_cast<int64_t>(prompt.size()) + n_new;
  SAES_CHECK(n_new >= 0 && total <= model.spec().n_ctx, ConfigError,
             "generate_greedy: prompt ({} tokens) + n_new ({}) exceeds n_ctx = {}", prompt.size(),
             n_new, model.spec().n_ctx);
  std::vector<int64_t> ids = prompt;
  ids.reserve(static_cast<std::size_t>(total));
  for (int64_t step = 0; step < n_new; ++step) {
    const at::Tensor tokens =
        at::from_blob(ids.data(), {1, static_cast<int64_t>(ids.size())}, at::kLong);
    const at::Tensor logits = model.logits(tokens);
    ids.push_back(logits.select(1, logits.size(1) - 1).argmax(-1).item<int64_t>());
  }
  return ids;
}

}  // namespace saes::lm

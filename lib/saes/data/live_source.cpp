// LiveSource: tokenize a model batch, run the model(s) up to the deepest requested hook and turn
// the captured activations into Rows (per sequence, or per kept token).
#include "saes/data/live_source.h"

#include <ATen/ops/flatten.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/ne.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/sum.h>

#include "saes/core/error.h"

namespace saes::data {

LiveSource::LiveSource(std::int64_t index, lm::ModelSet models, TokenBatcher batcher,
                       std::vector<std::string> hooks, ActivationTarget target,
                       std::int64_t model_batch_size)
    : index_(index),
      models_(std::move(models)),
      batcher_(std::move(batcher)),
      hooks_(std::move(hooks)),
      target_(target),
      model_batch_size_(model_batch_size) {
  SAES_CHECK(target != ActivationTarget::kTokens, UnsupportedError,
             "activation stream: target tokens is not an activation stream");
  SAES_CHECK(model_batch_size > 0, ConfigError, "model_batch_size must be > 0, got {}",
             model_batch_size);
  for (const auto& hook : hooks_) models_.check_hook(hook);
}

std::optional<Rows> LiveSource::next_chunk(bool ghost) {
  auto batch = batcher_.next_batch(model_batch_size_);
  if (!batch) return std::nullopt;
  const std::int64_t seq = next_++;
  if (!ghost) return run_model(*batch, seq);
  const std::int64_t n_rows = target_ == ActivationTarget::kActivations2d
                                  ? batch->tokens.size(0)
                                  : at::sum(at::ne(batch->mask, 0)).item<std::int64_t>();
  replayed_.emplace(seq, std::move(*batch));
  Rows rows;
  rows.ids = chunk_ids(index_, seq, n_rows);
  return rows;
}

Rows LiveSource::load_chunk(std::int64_t seq) {
  const auto it = replayed_.find(seq);
  SAES_ASSERT(it != replayed_.end(), "live source: chunk was not kept for resume");
  return run_model(it->second, seq);
}

void LiveSource::retain(const std::set<std::int64_t>& seqs) {
  std::erase_if(replayed_, [&](const auto& entry) { return !seqs.contains(entry.first); });
}

Rows LiveSource::run_model(const TokenBatch& batch, std::int64_t seq) const {
  auto acts = models_.forward(batch.tokens, &batch.attention_mask, hooks_, lm::GradMode::kNoGrad);
  Rows rows;
  if (target_ == ActivationTarget::kActivations2d) {
    rows.ids = chunk_ids(index_, seq, batch.tokens.size(0));
    rows.tokens = batch.tokens;
    rows.mask = at::ne(batch.mask, 0);
    for (const auto& hook : hooks_) rows.acts.emplace(hook, acts.at(hook));
    return rows;
  }
  const at::Tensor kept = at::nonzero(at::flatten(at::ne(batch.mask, 0))).flatten();
  rows.ids = chunk_ids(index_, seq, kept.size(0));
  rows.tokens = at::index_select(at::flatten(batch.tokens), 0, kept);
  for (const auto& hook : hooks_) {
    const at::Tensor& act = acts.at(hook);
    const at::Tensor flat = act.reshape({-1, act.size(-1)});
    rows.acts.emplace(hook, at::index_select(flat, 0, kept.to(act.device())));
  }
  return rows;
}

}  // namespace saes::data

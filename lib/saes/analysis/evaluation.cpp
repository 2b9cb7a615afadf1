// Evaluator: clean forward → reconstruction metrics; spliced / ablated forwards → downstream.
#include "saes/analysis/evaluation.h"

#include <cmath>

#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/lm/transformer.h"

namespace saes::analysis {
namespace {

/// [batch, seq, ...] → [batch·seq, features].
at::Tensor token_rows(const at::Tensor& t) { return t.reshape({t.size(0) * t.size(1), -1}); }

}  // namespace

HookReconstruction reconstruct_hooks(const dictionaries::SparseDictionary& dict,
                                     const dictionaries::HookActs& raw, const at::Tensor& kept) {
  at::NoGradGuard no_grad;
  HookReconstruction r;
  const std::vector<std::string> label_hooks = dict.label_hooks();
  const at::Tensor input = dict.prepare_input(raw);
  r.feature_acts = dict.encode(input);
  const at::Tensor output = dict.reconstruct(input, r.feature_acts);  // a CLT: [L, n, d]; Lorsa [B, T, d]
  r.feature_acts = dict.analysis_features(r.feature_acts);  // a crosscoder: max over its heads
  const bool layered = label_hooks.size() > 1;
  // a sequence dictionary (Lorsa) reads whole [B, T, d] contexts: its rows are then cut to
  // the kept tokens
  const bool sequences = dict.reads_sequences();
  const auto rows = [&](const at::Tensor& t) {
    const at::Tensor flat = t.reshape({-1, t.size(-1)});
    return sequences && kept.defined() ? flat.index_select(0, kept.to(flat.device())) : flat;
  };
  for (std::size_t i = 0; i < label_hooks.size(); ++i) {
    const at::Tensor label =
        sequences ? rows(raw.at(label_hooks[i])) : dictionaries::hook_rows(raw, label_hooks[i]);
    const at::Tensor out = layered ? output[static_cast<std::int64_t>(i)] : output;
    r.labels.push_back(label);
    r.outputs.push_back(
        (sequences ? rows(out) : out).div(dict.normalization_factor(label, label_hooks[i])));
  }
  r.feature_acts = sequences ? rows(r.feature_acts)
                             : r.feature_acts.reshape({r.labels.front().size(0), -1});
  return r;
}

at::Tensor HookReconstruction::label_rows() const {
  return labels.size() == 1 ? labels.front() : at::cat(labels, 1);
}

at::Tensor HookReconstruction::output_rows() const {
  return outputs.size() == 1 ? outputs.front() : at::cat(outputs, 1);
}

Evaluator::Evaluator(const dictionaries::SparseDictionary& dict, const lm::Transformer& model,
                     EvalOptions options)
    : dict_(dict),
      model_(model),
      options_(options),
      reconstruction_(dict.config().d_model * static_cast<std::int64_t>(dict.label_hooks().size()),
                      dict.n_features()) {}

at::Tensor Evaluator::logits_with(const at::Tensor& tokens, const at::Tensor& attention_mask,
                                  const std::map<std::string, at::Tensor>& hook_values) const {
  lm::HookSet hooks;
  for (const auto& [hook, value] : hook_values) {
    hooks.replace(hook, [&value = value](const at::Tensor&) { return value; });
  }
  hooks.capture("logits");
  return model_.forward(tokens, &attention_mask, hooks, lm::GradMode::kNoGrad).at("logits");
}

std::int64_t Evaluator::add(const data::TokenBatch& batch) {
  at::NoGradGuard no_grad;
  const at::Tensor tokens = batch.tokens.to(model_.device());
  const at::Tensor attention = batch.attention_mask.to(model_.device());
  lm::HookSet hooks;
  for (const std::string& hook : dict_.hook_points()) hooks.capture(hook);
  if (options_.downstream) hooks.capture("logits");
  auto acts = model_.forward(tokens, &attention, hooks, lm::GradMode::kNoGrad);
  const at::Tensor kept = batch.mask.reshape({-1}).ne(0).nonzero().squeeze(1).to(model_.device());
  if (kept.numel() == 0) return 0;
  // Every hook's kept rows; a multi-hook dictionary (a CLT) encodes all its input hooks of the
  // clean forward and its outputs replace all its label hooks at once.
  dictionaries::HookActs raw;
  for (const std::string& hook : dict_.hook_points()) {
    raw[hook] = dict_.reads_sequences() ? acts.at(hook)
                                        : token_rows(acts.at(hook)).index_select(0, kept);
  }
  const std::vector<std::string> label_hooks = dict_.label_hooks();
  const HookReconstruction rec = reconstruct_hooks(dict_, raw, kept);
  const std::vector<at::Tensor>& labels = rec.labels;
  const std::vector<at::Tensor>& outputs = rec.outputs;
  reconstruction_.add(rec.label_rows(), rec.output_rows(), rec.feature_acts);
  if (options_.downstream) {
    // Each label hook's clean value with the kept positions replaced by `rows(i)` (BOS/pad keep
    // theirs).
    const auto spliced = [&](const auto& rows) {
      std::map<std::string, at::Tensor> values;
      for (std::size_t i = 0; i < label_hooks.size(); ++i) {
        const at::Tensor& full = acts.at(label_hooks[i]);
        values[label_hooks[i]] =
            token_rows(full)
                .index_copy(0, kept, rows(i).to(full.device(), full.scalar_type()))
                .view(full.sizes());
      }
      return values;
    };
    VariantLogits logits;
    logits.clean = acts.at("logits");
    logits.spliced =
        logits_with(tokens, attention, spliced([&](std::size_t i) { return outputs[i]; }));
    logits.zero_ablated = logits_with(
        tokens, attention, spliced([&](std::size_t i) { return at::zeros_like(labels[i]); }));
    if (options_.mean_ablation) {
      logits.mean_ablated = logits_with(tokens, attention, spliced([&](std::size_t i) {
                                          return labels[i].mean(0, true).expand_as(labels[i]);
                                        }));
    }
    downstream_.add(logits, tokens, scored_positions(batch.mask, batch.attention_mask));
  }
  return kept.numel();
}

void Evaluator::all_reduce(distributed::Communicator& comm) {
  reconstruction_.all_reduce(comm);
  if (options_.downstream) downstream_.all_reduce(comm);
}

std::map<std::string, double> Evaluator::metrics() const {
  std::map<std::string, double> m = reconstruction_.metrics(options_.dense_threshold);
  if (options_.downstream) m.merge(downstream_.metrics());
  return m;
}

data::TokenBatch limit_to_budget(const data::TokenBatch& batch, std::int64_t budget) {
  data::TokenBatch out = batch;
  const at::Tensor used = batch.mask.ne(0);
  const at::Tensor within = used.reshape({-1}).to(at::kLong).cumsum(0).le(budget);
  out.mask = at::logical_and(used, within.view(used.sizes())).to(batch.mask.scalar_type());
  return out;
}

std::map<std::string, double> evaluate_dictionary(
    const dictionaries::SparseDictionary& dict, const lm::Transformer& model,
    const std::function<std::optional<data::TokenBatch>()>& next_batch, std::int64_t total_tokens,
    const EvalOptions& options, distributed::Communicator* comm) {
  Evaluator evaluator(dict, model, options);
  while (evaluator.n_tokens() < total_tokens) {
    std::optional<data::TokenBatch> batch = next_batch();
    if (!batch) break;
    evaluator.add(limit_to_budget(*batch, total_tokens - evaluator.n_tokens()));
  }
  if (comm != nullptr) evaluator.all_reduce(*comm);
  return evaluator.metrics();
}

}  // namespace saes::analysis

// DictionaryModule and StreamBatchSource: the trainer's view of a dictionary and of a stream.
#include "saes/training/dictionary_module.h"

#include <algorithm>

#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>

#include "saes/core/error.h"
#include "saes/data/activation_stream.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/distributed/communicator.h"

namespace saes::training {
namespace {

dictionaries::SparsityPenalty penalty(const std::optional<SparsityLossType>& type) {
  if (!type) return dictionaries::SparsityPenalty::kNone;
  switch (*type) {
    case SparsityLossType::kPower:
      return dictionaries::SparsityPenalty::kPower;
    case SparsityLossType::kTanh:
      return dictionaries::SparsityPenalty::kTanh;
    case SparsityLossType::kTanhQuad:
      return dictionaries::SparsityPenalty::kTanhQuad;
  }
  SAES_ASSERT(false, "unknown sparsity loss type");
  return dictionaries::SparsityPenalty::kNone;
}

const at::Tensor& hook_acts(const TrainBatch& batch, const std::string& hook) {
  const auto it = batch.acts.find(hook);
  SAES_CHECK(it != batch.acts.end(), ConfigError,
             "the activation batch has no hook \"{}\"; add it to activation_factory.hook_points",
             hook);
  return it->second;
}

}  // namespace

DictionaryModule::DictionaryModule(dictionaries::SparseDictionary& dict, TrainerConfig config)
    : dict_(dict), config_(std::move(config)) {
  for (const auto& ref : dict_.parameters()) {
    dictionaries::ParameterRef dims;
    dims.name = ref.name;
    dims.feature_dim = ref.feature_dim;
    dims.head_dim = ref.head_dim;
    layouts_[ref.name] = dims;
  }
}

std::vector<Parameter> DictionaryModule::parameters() {
  std::vector<Parameter> out;
  const dictionaries::FeatureShard& shard = dict_.feature_shard();
  for (auto& ref : dict_.parameters()) {
    const bool jumprelu = ref.group == dictionaries::ParamGroup::kJumpRelu;
    out.push_back(Parameter{
        ref.name, ref.value, ref.grad, jumprelu ? config_.jumprelu_lr_factor : 1.0, ref.clipped,
        shard.sharded() && ref.feature_dim >= 0, shard.heads_sharded() && ref.head_dim >= 0});
  }
  return out;
}

std::int64_t DictionaryModule::n_features() const { return dict_.n_features(); }

std::int64_t DictionaryModule::feature_layers() const { return dict_.feature_layers(); }

std::optional<std::int64_t> DictionaryModule::top_k() const {
  const auto& cfg = dict_.config();
  if (!dictionaries::is_topk_family(cfg.act_fn)) return std::nullopt;
  return cfg.top_k;
}

StepOutput DictionaryModule::forward_backward(const TrainBatch& batch, const StepContext& context) {
  dictionaries::TrainBatch in;
  for (const std::string& hook : dict_.hook_points()) in.acts[hook] = hook_acts(batch, hook);
  const at::Tensor& first = in.acts.begin()->second;
  if (first.dim() > 2) in.context = first.size(1);
  if (batch.mask.defined()) in.mask = batch.mask.flatten();
  if (context.dead.defined()) {  // per layer, as fired below
    in.dead =
        dict_.local_features(context.dead.view({dict_.feature_layers(), -1}), 1).reshape({-1});
  }

  dictionaries::LossSettings s;
  s.sparsity = penalty(config_.sparsity_loss_type);
  s.l1_coefficient = context.l1_coefficient;
  s.p = config_.p;
  s.tanh_stretch_coefficient = config_.tanh_stretch_coefficient;
  s.frequency_scale = config_.frequency_scale;
  s.lp_coefficient = config_.lp_coefficient.value_or(0.0);
  s.auxk_coefficient = config_.auxk_coefficient.value_or(0.0);
  s.k_aux = config_.k_aux;
  s.auxk_detach_residual = config_.auxk_detach_residual;
  s.current_k = context.k;

  const dictionaries::StepResult r = dict_.forward_backward(in, s);
  StepOutput out;
  out.losses = {{"overall_loss", r.loss},
                {"mse_loss", r.l_rec},
                {"sparsity_loss", r.l_sparsity},
                {"lp_loss", r.l_p},
                {"aux_loss", r.l_aux}};
  out.reconstructed = r.reconstructed;
  out.label = r.label;
  out.metrics = r.metrics;
  if (dict_.feature_shard().heads_sharded() && context.need_stats) {  // every head's x̂, label
    out.reconstructed = dict_.gather_heads(r.reconstructed, 0);
    out.label = dict_.gather_heads(r.label, 0);
  }
  // The metrics read f only through per-token sums (with `fired` given): a sparse step hands
  // those over as [n_tokens, 1] instead of expanding f to [n_tokens, d_sae].
  const auto& sp = r.sparse_feature_acts;
  out.feature_acts = r.feature_acts.defined() || !sp.defined()
                         ? r.feature_acts
                         : at::zeros({sp.n_rows}, sp.values.options())
                               .index_add_(0, sp.rows, sp.values)
                               .unsqueeze(1);
  out.mask = in.mask;
  out.fired = r.fired;
  if (dict_.label_hooks().size() > 1) out.layers = out.label.size(0);
  const dictionaries::FeatureShard& shard = dict_.feature_shard();
  if (shard.sharded()) {  // per-token sums and firing counts of the whole dictionary
    at::Tensor token_sums = out.feature_acts.sum(1, true);
    shard.group->all_reduce(token_sums, distributed::ReduceOp::kSum);
    out.feature_acts = token_sums;
    // per layer (features l·d_sae + i, layer-major): gather each layer's shards side by side
    const std::int64_t layers = dict_.feature_layers();
    out.fired = dict_.gather_features(r.fired.view({layers, -1}), 1).reshape({-1});
  }
  return out;
}

std::map<std::string, double> DictionaryModule::statistics() const {
  // the mean over every feature (and every head of a crosscoder: its norms are [H, d_sae], whose
  // blocks over the model and head groups all have one size)
  const at::Tensor norms = dict_.gather_heads(dict_.gather_features(dict_.decoder_norm(), 0), 0);
  return {{"metrics/decoder_norm", norms.mean().item<double>()}};
}

std::map<std::string, double> DictionaryModule::frequency_statistics(const at::Tensor& freq) const {
  return dict_.frequency_metrics(freq);
}

void DictionaryModule::save(const std::filesystem::path& dir, bool write) const {
  dict_.save(dir / kWeightsFileName, write);
}

const dictionaries::ParameterRef* DictionaryModule::layout(const std::string& param,
                                                           const at::Tensor& t) const {
  const auto it = layouts_.find(param);
  if (it == layouts_.end()) return nullptr;
  const int dims = std::max(it->second.feature_dim, it->second.head_dim);
  return dims < t.dim() ? &it->second : nullptr;
}

at::Tensor DictionaryModule::gather_state(const std::string& param, const at::Tensor& t) const {
  const dictionaries::ParameterRef* p = layout(param, t);
  return p ? dict_.gather_parameter(*p, t) : t;
}

at::Tensor DictionaryModule::local_state(const std::string& param, const at::Tensor& t) const {
  const dictionaries::ParameterRef* p = layout(param, t);
  return p ? dict_.local_parameter(*p, t) : t;
}

void DictionaryModule::load(const std::filesystem::path& dir) {
  dict_.load(dir / kWeightsFileName);
}

std::optional<TrainBatch> StreamBatchSource::next() {
  auto batch = stream_.next();
  if (!batch) return std::nullopt;
  TrainBatch out;
  out.acts = std::move(batch->acts);
  out.tokens = std::move(batch->tokens);
  out.mask = std::move(batch->mask);
  out.n_tokens = batch->n_tokens;
  return out;
}

std::string StreamBatchSource::state() const { return stream_.state(); }

void StreamBatchSource::restore(const std::string& state) { stream_.restore(state); }

}  // namespace saes::training

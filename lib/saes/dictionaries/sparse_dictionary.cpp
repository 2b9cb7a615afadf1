// SparseDictionary's shared parts: normalization (spec §2.1), fold state, default init hooks and
// the native safetensors checkpoint (spec §2.1 "Checkpoint format", §15 fixes).
#include "saes/dictionaries/sparse_dictionary.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <type_traits>

#include <ATen/TensorOperators.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/distributed/communicator.h"
#include "saes/io/safetensors.h"

namespace saes::dictionaries {
namespace {

constexpr const char* kNormPrefix = "dataset_average_activation_norm.";

std::string json_escape(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<int>(c));
      continue;
    }
    out += c;
  }
  return out + "\"";
}

template <class T>
std::string json_value(const T& value) {
  if constexpr (std::is_same_v<T, bool>) {
    return value ? "true" : "false";
  } else if constexpr (std::is_integral_v<T>) {
    return fmt::to_string(value);
  } else if constexpr (std::is_floating_point_v<T>) {
    return fmt::format("{}", value);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return json_escape(value);
  } else if constexpr (std::is_same_v<T, std::optional<std::string>>) {
    return value ? json_escape(*value) : "null";
  } else if constexpr (std::is_same_v<T, std::optional<double>>) {
    return value ? fmt::format("{}", *value) : "null";
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::string out = "[";
    for (std::size_t i = 0; i < value.size(); ++i) {
      if (i > 0) out += ',';
      out += json_escape(value[i]);
    }
    out += ']';
    return out;
  } else if constexpr (std::is_same_v<T, std::map<std::string, std::int64_t>>) {
    std::string out = "{";
    for (const auto& [key, count] : value) {
      out += fmt::format("{}{}:{}", out.size() > 1 ? "," : "", json_escape(key), count);
    }
    out += '}';
    return out;
  } else if constexpr (std::is_same_v<T, DType>) {
    return json_escape(std::string(dtype_name(value)));
  } else {
    return json_escape(std::string(enum_names(value)[static_cast<std::size_t>(value)]));
  }
}

/// Writes the config as one JSON object via visit_fields (the config module is above us).
class JsonWriter {
 public:
  template <class T>
  void operator()(std::string_view key, const T& field, std::string_view /*help*/) {
    text_ += fmt::format("{}\"{}\":{}", text_.size() > 1 ? "," : "", key, json_value(field));
  }
  template <class T>
  void required(std::string_view key, const T& field, std::string_view help) {
    (*this)(key, field, help);
  }
  void unsupported(std::string_view /*key*/, std::string_view /*hint*/) {}
  std::string finish() const { return text_ + "}"; }

 private:
  std::string text_ = "{";
};

}  // namespace

SparseDictionary::SparseDictionary(SparseDictionaryConfig cfg, FeatureShard shard)
    : cfg_(std::move(cfg)), shard_(shard) {
  // What every variant needs (each validates its own fields after this).
  SAES_CHECK(cfg_.d_model >= 1, ConfigError, "sae.d_model: expected >= 1, got {}", cfg_.d_model);
  SAES_CHECK(cfg_.d_sae() >= 1, ConfigError,
             "sae.expansion_factor: d_sae = int(d_model * expansion_factor) must be >= 1, got {}",
             cfg_.d_sae());
  folded_ = cfg_.norm_activation == NormActivation::kInference;
  local_d_sae_ = cfg_.d_sae() >= 1 ? shard_.count(cfg_.d_sae()) : cfg_.d_sae();
}

bool SparseDictionary::auto_prefers_dense() const {
  // On an H200 the dense TopK step took 4 ms against 6 ms for the op-based sparse step at d=768,
  // d_sae=24576, 4096 tokens in bf16; in fp32 the sparse step was 2x faster there, as on the CPU.
  const c10::ScalarType type = dtype();
  return device().is_cuda() && (type == at::kHalf || type == at::kBFloat16);
}

at::Tensor SparseDictionary::target_decoder_norms() const {
  return decoder_norm().reshape({-1, 1});
}

std::vector<at::Tensor> SparseDictionary::dla_terms(std::int64_t layer) const {
  const at::Tensor directions = feature_directions();
  const std::int64_t layers = feature_layers();
  SAES_CHECK(layer >= 0 && layer < layers, ConfigError, "dla_terms: layer {} of {}", layer, layers);
  return {directions.view({layers, -1, directions.size(-1)}).select(0, layer)};
}

namespace {

/// The positions, in the rank-major concatenation of every rank's local features, of the
/// whole dictionary's features in global (block-major) order.
std::vector<std::int64_t> block_order(const std::vector<std::int64_t>& blocks, std::int64_t ranks) {
  std::int64_t local = 0;
  for (const std::int64_t b : blocks) local += b / ranks;
  std::vector<std::int64_t> order;
  std::int64_t block_offset = 0;  // within one rank's local features
  for (const std::int64_t b : blocks) {
    const std::int64_t share = b / ranks;
    for (std::int64_t r = 0; r < ranks; ++r) {
      for (std::int64_t i = 0; i < share; ++i) order.push_back(r * local + block_offset + i);
    }
    block_offset += share;
  }
  return order;
}

}  // namespace

at::Tensor SparseDictionary::gather_features(const at::Tensor& local, int dim) const {
  if (!shard_.sharded()) return local;
  // all_gather concatenates along dim 0: move the feature dim there and back.
  const at::Tensor front = local.transpose(0, dim).contiguous();
  at::Tensor whole = shard_.group->all_gather(front);
  const std::vector<std::int64_t> blocks = feature_blocks();
  if (blocks.size() > 1 && local.size(dim) == local_d_sae()) {
    const std::vector<std::int64_t> order = block_order(blocks, shard_.size());
    whole = whole.index_select(
        0, at::tensor(order, at::TensorOptions().dtype(at::kLong)).to(whole.device()));
  }
  return whole.transpose(0, dim).contiguous();
}

at::Tensor SparseDictionary::local_features(const at::Tensor& full, int dim) const {
  if (!shard_.sharded()) return full;
  const std::vector<std::int64_t> blocks = feature_blocks();
  if (blocks.size() > 1 && full.size(dim) == d_sae()) {
    std::vector<at::Tensor> parts;
    std::int64_t offset = 0;
    for (const std::int64_t b : blocks) {
      const std::int64_t share = b / shard_.size();
      parts.push_back(full.narrow(dim, offset + share * shard_.rank(), share));
      offset += b;
    }
    return at::cat(parts, dim);
  }
  // the rank's equal share of that axis: its features, or its QK heads for a Lorsa's W_Q
  const std::int64_t share = full.size(dim) / shard_.size();
  return full.narrow(dim, share * shard_.rank(), share);
}

at::Tensor SparseDictionary::gather_heads(const at::Tensor& local, int dim) const {
  if (!shard_.heads_sharded()) return local;
  const at::Tensor front = local.transpose(0, dim).contiguous();
  return shard_.head_group->all_gather(front).transpose(0, dim).contiguous();
}

at::Tensor SparseDictionary::local_heads(const at::Tensor& full, int dim) const {
  if (!shard_.heads_sharded()) return full;
  const std::int64_t share = full.size(dim) / shard_.head_size();
  return full.narrow(dim, share * shard_.head_rank(), share);
}

at::Tensor SparseDictionary::gather_parameter(const ParameterRef& p,
                                              const at::Tensor& local) const {
  const at::Tensor features = p.feature_dim >= 0 ? gather_features(local, p.feature_dim) : local;
  return p.head_dim >= 0 ? gather_heads(features, p.head_dim) : features;
}

at::Tensor SparseDictionary::local_parameter(const ParameterRef& p, const at::Tensor& full) const {
  const at::Tensor heads = p.head_dim >= 0 ? local_heads(full, p.head_dim) : full;
  return p.feature_dim >= 0 ? local_features(heads, p.feature_dim) : heads;
}

at::Tensor SparseDictionary::encoder_vectors(std::int64_t /*layer*/,
                                             const at::Tensor& /*indices*/) const {
  SAES_THROW(UnsupportedError, "circuit tracing: {} dictionaries cannot replace an MLP in the "
             "attribution (use transcoders or a clt)",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
}

at::Tensor SparseDictionary::decoder_vectors(std::int64_t layer, std::int64_t /*target*/,
                                             const at::Tensor& indices) const {
  return encoder_vectors(layer, indices);  // the same refusal
}

at::Tensor SparseDictionary::token_mixing(const at::Tensor& x_normalized, std::int64_t position,
                                          const at::Tensor& indices) const {
  SAES_CHECK(x_normalized.dim() == 3 && position >= 0 && position < x_normalized.size(1),
             DataError, "token_mixing: position {} outside the context of [{}]", position,
             fmt::join(x_normalized.sizes(), ", "));
  at::Tensor w = at::zeros({indices.numel(), x_normalized.size(1)}, at::kFloat);
  w.select(1, position).fill_(1.0);
  return w;
}

SparseDictionary::ScoreSide SparseDictionary::attention_score_side(std::int64_t /*index*/,
                                                                   std::int64_t /*position*/,
                                                                   bool /*query*/) const {
  SAES_THROW(UnsupportedError,
             "QK tracing: {} features have no attention pattern (only lorsa features do)",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
}

at::Tensor SparseDictionary::reconstruct(const at::Tensor& /*x*/, const at::Tensor& f) const {
  return decode(f);
}

std::map<std::string, double> SparseDictionary::frequency_metrics(
    const at::Tensor& /*freq*/) const {
  return {};
}

void SparseDictionary::sum_over_features(at::Tensor& t) const {
  if (shard_.sharded()) shard_.group->all_reduce(t, distributed::ReduceOp::kSum);
}

std::vector<double> SparseDictionary::sum_over_features(std::vector<double> values) const {
  if (!shard_.sharded() || values.empty()) return values;
  at::Tensor t = at::empty({static_cast<std::int64_t>(values.size())}, at::kDouble);
  std::copy(values.begin(), values.end(), t.data_ptr<double>());
  shard_.group->all_reduce(t, distributed::ReduceOp::kSum);
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), values.begin());
  return values;
}

c10::ScalarType SparseDictionary::dtype() const { return to_torch(cfg_.dtype); }
c10::Device SparseDictionary::device() const { return parse_device(cfg_.device); }

void SparseDictionary::init_encoder_with_decoder_transpose(double /*factor*/) {
  SAES_THROW(UnsupportedError,
             "initializer.init_encoder_with_decoder_transpose: {} dictionaries do not support "
             "W_E = factor * W_D^T (set it false)",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
}
void SparseDictionary::set_decoder_to_fixed_norm(double /*value*/, bool /*exact*/) {
  SAES_THROW(UnsupportedError, "{} dictionaries do not support fixed decoder norms",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
}
void SparseDictionary::init_decoder_bias_with_mean(const at::Tensor& /*label*/) {
  SAES_THROW(UnsupportedError, "{} dictionaries do not support decoder-bias init",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
}
void SparseDictionary::init_encoder_bias_with_mean_hidden_pre(const at::Tensor& /*x*/) {
  SAES_THROW(UnsupportedError, "{} dictionaries do not support encoder-bias init",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
}

at::Tensor SparseDictionary::source_contributions(const at::Tensor& /*x*/,
                                                  const at::Tensor& /*features*/) const {
  SAES_THROW(UnsupportedError, "{} features read one token each: they have no z-pattern",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
}

void SparseDictionary::init_with_attention(const AttentionLayer& /*attention*/) {
  SAES_THROW(UnsupportedError,
             "initializer.initialize_lorsa_with_mhsa: {} dictionaries have no attention to copy "
             "(lorsa only)",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
}
void SparseDictionary::init_with_mlp(const MlpFunction& /*mlp*/, const at::Tensor& /*x_raw*/) {
  SAES_THROW(UnsupportedError,
             "initializer.initialize_tc_with_mlp: not supported for {} dictionaries (sae "
             "transcoders only)",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
}
void SparseDictionary::init_decoder_in_active_subspace(const at::Tensor& /*x*/,
                                                       const at::Tensor& /*label*/,
                                                       std::int64_t /*d_active*/,
                                                       const AttentionLayer* /*attention*/) {
  SAES_THROW(UnsupportedError,
             "initializer.initialize_W_D_with_active_subspace: not supported for {} dictionaries "
             "(sae and lorsa)",
             kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
}

void SparseDictionary::fill_uniform(const at::Tensor& p, int feature_dim, double bound,
                                    at::Generator& gen) const {
  // Drawn on the generator's device (the trainer's CPU generator for CUDA parameters) for the
  // whole tensor, then this rank's features are copied over: the same dictionary for a seed on
  // every device and every mesh.
  std::vector<std::int64_t> whole = p.sizes().vec();
  whole[static_cast<std::size_t>(feature_dim)] *= shard_.sharded() ? shard_.size() : 1;
  if (p.device() == gen.device() && !shard_.sharded()) {
    p.uniform_(-bound, bound, gen);
    return;
  }
  const at::Tensor drawn =
      at::empty(whole, at::TensorOptions().dtype(p.scalar_type()).device(gen.device()))
          .uniform_(-bound, bound, gen);
  p.copy_(local_features(drawn, feature_dim));
}

void SparseDictionary::fill_log_threshold(const at::Tensor& log_threshold, const RandomInit& init) {
  if (!log_threshold.defined()) return;
  SAES_CHECK(init.log_jumprelu_threshold.has_value(), ConfigError,
             "initializer.init_log_jumprelu_threshold_value: required for act_fn jumprelu "
             "(e.g. -2.302585 = log 0.1)");
  log_threshold.fill_(*init.log_jumprelu_threshold);
}

double SparseDictionary::reconstruction_loss(const at::Tensor& x, const at::Tensor& label,
                                             std::int64_t k) const {
  const at::Tensor r = reconstruct(x, encode(x, k)) - label;
  // rows: tokens (× label hooks for a multi-hook dictionary)
  return at::sum(r * r).item<double>() / static_cast<double>(r.numel() / r.size(-1));
}

at::Tensor hook_rows(const HookActs& acts, const std::string& hook) {
  const auto it = acts.find(hook);
  if (it == acts.end()) {
    std::vector<std::string> present;
    for (const auto& [name, t] : acts) present.push_back(name);
    SAES_THROW(DataError, "the activation batch has no hook \"{}\" (it has: {})", hook,
               present.empty() ? std::string("none") : fmt::format("{}", fmt::join(present, ", ")));
  }
  return it->second.dim() > 2 ? it->second.flatten(0, -2) : it->second;
}

TrainBatch single_hook_batch(const SparseDictionaryConfig& cfg, const at::Tensor& x,
                             const at::Tensor& label, const at::Tensor& mask) {
  TrainBatch batch;
  batch.acts.emplace(cfg.hook_point_in, x);
  batch.acts.emplace(cfg.hook_point_out, label);
  batch.mask = mask;
  return batch;
}

std::vector<std::string> SparseDictionary::hook_points() const {
  std::vector<std::string> out;
  for (const auto& list : {input_hooks(), label_hooks()}) {
    for (const auto& h : list) {
      if (std::find(out.begin(), out.end(), h) == out.end()) out.push_back(h);
    }
  }
  return out;
}

namespace {
std::string single_hook(const std::vector<std::string>& hooks, SaeType type, const char* side,
                        std::string_view what) {
  SAES_CHECK(hooks.size() == 1, UnsupportedError,
             "{}: sae_type {} has {} {} hooks; only single-hook dictionaries (sae) are supported "
             "there yet",
             what, kSaeTypeNames[static_cast<std::size_t>(type)], hooks.size(), side);
  return hooks.front();
}
}  // namespace

std::string SparseDictionary::input_hook_point(std::string_view what) const {
  return single_hook(input_hooks(), cfg_.sae_type, "input", what);
}

std::string SparseDictionary::label_hook_point(std::string_view what) const {
  return single_hook(label_hooks(), cfg_.sae_type, "label", what);
}

at::Tensor SparseDictionary::prepare_input(const HookActs& raw) const {
  const std::string hook = input_hook_point("prepare_input");
  return normalize(hook_rows(raw, hook), hook);
}

at::Tensor SparseDictionary::prepare_label(const HookActs& raw) const {
  const std::string hook = label_hook_point("prepare_label");
  return normalize(hook_rows(raw, hook), hook);
}

void SparseDictionary::set_dataset_norm(const std::string& hook_point, double norm) {
  const auto hooks = hook_points();
  SAES_CHECK(std::find(hooks.begin(), hooks.end(), hook_point) != hooks.end(), ConfigError,
             "dataset norm for hook '{}': the dictionary reads only {}", hook_point,
             fmt::join(hooks, ", "));
  SAES_CHECK(std::isfinite(norm) && norm > 0, DataError,
             "dataset norm for hook '{}': expected a finite value > 0, got {}", hook_point, norm);
  dataset_norms_[hook_point] = norm;
}

std::optional<double> SparseDictionary::dataset_norm(const std::string& hook_point) const {
  const auto it = dataset_norms_.find(hook_point);
  if (it == dataset_norms_.end()) return std::nullopt;
  return it->second;
}

double SparseDictionary::dataset_scale(const std::string& hook_point) const {
  if (cfg_.norm_activation != NormActivation::kDatasetWise) return 1.0;
  const auto norm = dataset_norm(hook_point);
  SAES_CHECK(norm.has_value(), ConfigError,
             "norm_activation dataset-wise: no dataset norm recorded for hook '{}' (compute it "
             "from the first {} batches and call set_dataset_norm)",
             hook_point, kDatasetNormBatches);
  return std::sqrt(static_cast<double>(cfg_.d_model)) / *norm;
}

at::Tensor SparseDictionary::normalize(const at::Tensor& x, const std::string& hook_point) const {
  const at::Tensor xs = x.to(device(), dtype());
  const double sqrt_d = std::sqrt(static_cast<double>(cfg_.d_model));
  switch (cfg_.norm_activation) {
    case NormActivation::kTokenWise:
      return xs * (sqrt_d / at::linalg_vector_norm(xs, 2, {-1}, true));
    case NormActivation::kBatchWise:
      return xs * (sqrt_d / at::mean(at::linalg_vector_norm(xs, 2, {-1}, true), {-2}, true));
    case NormActivation::kDatasetWise:
      return xs * dataset_scale(hook_point);
    case NormActivation::kInference:
      return xs;
  }
  SAES_ASSERT(false, "unknown norm_activation");
}

at::Tensor SparseDictionary::normalization_factor(const at::Tensor& x,
                                                  const std::string& hook_point) const {
  const double sqrt_d = std::sqrt(static_cast<double>(cfg_.d_model));
  const at::Tensor y = x.to(device(), dtype());
  switch (cfg_.norm_activation) {
    case NormActivation::kTokenWise:
      return at::linalg_vector_norm(y, 2, {-1}, true).clamp_min(1e-12).reciprocal().mul(sqrt_d);
    case NormActivation::kBatchWise:
      return at::linalg_vector_norm(y, 2, {-1}, true)
          .mean()
          .clamp_min(1e-12)
          .reciprocal()
          .mul(sqrt_d);
    case NormActivation::kDatasetWise:
    case NormActivation::kInference:
      return at::scalar_tensor(dataset_scale(hook_point), y.options());
  }
  SAES_ASSERT(false, "unknown norm_activation");
}

void SparseDictionary::fold_activation_scale() {
  if (folded_) return;
  SAES_CHECK(cfg_.norm_activation == NormActivation::kDatasetWise, UnsupportedError,
             "fold_activation_scale: only dataset-wise normalization can be folded, got {}",
             kNormActivationNames[static_cast<std::size_t>(cfg_.norm_activation)]);
  rescale_for_fold(true);
  cfg_.norm_activation = NormActivation::kInference;
  folded_ = true;
}

void SparseDictionary::unfold_activation_scale() {
  if (!folded_) return;
  cfg_.norm_activation = NormActivation::kDatasetWise;
  rescale_for_fold(false);
  folded_ = false;
}

void SparseDictionary::save(const std::filesystem::path& path, bool write) const {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& p : const_cast<SparseDictionary*>(this)->parameters()) {
    tensors.emplace_back(p.name, gather_parameter(p, p.value));
  }
  if (!write) return;
  for (auto& b : buffers()) tensors.push_back(std::move(b));
  // Fix (spec §2.1 [BUG?]): only recorded norms are written, never uninitialized scalars.
  for (const auto& [hook, norm] : dataset_norms_) {
    tensors.emplace_back(kNormPrefix + hook,
                         at::scalar_tensor(norm, at::TensorOptions().dtype(dtype())));
  }
  SparseDictionaryConfig cfg = cfg_;
  JsonWriter writer;
  cfg.visit_fields(writer);
  io::save_safetensors(path, tensors,
                       {{"version", "saes-0.1.0"},
                        {"saes_folded", folded_ ? "true" : "false"},
                        {"saes_config", writer.finish()}});
}

void SparseDictionary::load(const std::filesystem::path& path) {
  const auto file = io::SafetensorsFile::open(path);
  std::set<std::string> expected;
  // Buffers (Lorsa's mask and rotary tables) follow from the config: accepted, not read.
  for (const auto& [name, tensor] : buffers()) expected.insert(name);
  for (auto& p : parameters()) {
    expected.insert(p.name);
    if (!file.contains(p.name)) {
      SAES_CHECK(!cfg_.strict_loading, DataError, "{}: tensor '{}' is missing", path.string(),
                 p.name);
      continue;
    }
    const at::Tensor t = file.tensor(p.name);
    std::vector<std::int64_t> whole = p.value.sizes().vec();
    if (p.feature_dim >= 0 && shard_.sharded()) {
      whole[static_cast<std::size_t>(p.feature_dim)] *= shard_.size();
    }
    if (p.head_dim >= 0 && shard_.heads_sharded()) {
      whole[static_cast<std::size_t>(p.head_dim)] *= shard_.head_size();
    }
    SAES_CHECK(t.sizes() == at::IntArrayRef(whole), DataError,
               "{}: tensor '{}' has shape {}, expected {}", path.string(), p.name,
               fmt::join(t.sizes(), "x"), fmt::join(whole, "x"));
    p.value.copy_(local_parameter(p, t));
  }
  for (const auto& name : file.names()) {
    if (name.rfind(kNormPrefix, 0) == 0) {
      set_dataset_norm(name.substr(std::string(kNormPrefix).size()),
                       file.tensor(name).item<double>());
      continue;
    }
    SAES_CHECK(expected.count(name) != 0 || !cfg_.strict_loading, DataError,
               "{}: unexpected tensor '{}' for this {} configuration", path.string(), name,
               kSaeTypeNames[static_cast<std::size_t>(cfg_.sae_type)]);
  }
  // The file's gating flag wins: a folded CLT is stored ungated (rescale_for_fold).
  const auto cfg_it = file.metadata().find("saes_config");
  if (cfg_it != file.metadata().end()) {
    const auto json = nlohmann::json::parse(cfg_it->second, nullptr, false);
    if (json.is_object() && json.contains("sparsity_include_decoder_norm") &&
        json["sparsity_include_decoder_norm"].is_boolean()) {
      cfg_.sparsity_include_decoder_norm = json["sparsity_include_decoder_norm"].get<bool>();
    }
  }
  const auto it = file.metadata().find("saes_folded");
  if (it != file.metadata().end()) {
    folded_ = it->second == "true";
    if (folded_) cfg_.norm_activation = NormActivation::kInference;
  } else {
    folded_ = cfg_.norm_activation == NormActivation::kInference;
  }
}

double average_activation_norm(const std::vector<at::Tensor>& batches) {
  double total = 0.0;
  std::int64_t rows = 0;
  for (const auto& b : batches) {
    SAES_CHECK(b.dim() == 2, DataError,
               "average_activation_norm: expected [n_tokens, d_model] batches, got {} dims",
               b.dim());
    total += at::sum(at::linalg_vector_norm(b.to(at::kDouble), 2, {-1}, false)).item<double>();
    rows += b.size(0);
  }
  SAES_CHECK(rows > 0, DataError, "average_activation_norm: no tokens in {} batches",
             batches.size());
  return total / static_cast<double>(rows);
}

}  // namespace saes::dictionaries

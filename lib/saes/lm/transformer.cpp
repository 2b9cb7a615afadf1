// The engine's forward pass: embeddings, pre-norm blocks (sequential or parallel residual), hand-
// written attention (causal + key-padding mask, GQA, rotary), final norm and unembedding, with a
// hook point at every TransformerLens name. Attention avoids SDPA so LibTorch 1.13 and 2.x both
// work.
#include "saes/lm/transformer.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/triu.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/lm/transformer_attention.h"
#include "saes/lm/transformer_rotary.h"

namespace saes::lm {

/// State of one forward call: hook dispatch, positions, masks.
struct Transformer::Run {
  explicit Run(const HookSet& hook_set) : hooks(hook_set) {}

  const HookSet& hooks;
  FrozenState* frozen = nullptr;  ///< record into / run with (see FrozenState)
  int64_t stop_stage = -1;
  std::map<std::string, at::Tensor> captured;
  at::Tensor tokens;     ///< [batch, seq] int64 on device
  at::Tensor positions;  ///< [batch, seq] int64
  at::Tensor blocked;    ///< [batch or 1, 1, seq, seq] bool, true = may not attend
  at::Tensor blocked_sliding;  ///< the same within the sliding window (sliding models)
  at::Tensor cos, sin;   ///< [batch, seq, 1, rotary_dim/2] in model dtype (rotary models)
  at::Tensor cos_local, sin_local;  ///< the same for sliding layers with their own RoPE

  /// Applies replacements registered for `name`, records a capture, returns the value flowing on.
  at::Tensor point(const std::string& name, at::Tensor value) {
    auto it = hooks.replacements().find(name);
    if (it != hooks.replacements().end()) {
      for (const HookFn& fn : it->second) {
        at::Tensor replaced = fn(value);
        SAES_CHECK(
            replaced.defined() && replaced.sizes() == value.sizes(), ConfigError,
            "hook '{}': replacement returned shape [{}], expected [{}]", name,
            replaced.defined() ? fmt::format("{}", fmt::join(replaced.sizes(), ", ")) : "undefined",
            fmt::join(value.sizes(), ", "));
        value = replaced.to(value.device(), value.scalar_type());
      }
    }
    if (hooks.captures().count(name) > 0) captured[name] = value;
    return value;
  }

  /// Whether a hook captures or replaces `name`.
  bool touches(const std::string& name) const {
    return hooks.captures().count(name) > 0 || hooks.replacements().count(name) > 0;
  }

  /// Records `value` under `key` (record mode) or returns the recorded one, expanded to
  /// `batch` rows (use mode; DataError when it is missing or of another sequence length).
  at::Tensor frozen_value(const std::string& key, const at::Tensor& value, int64_t batch) {
    if (frozen->record) {
      frozen->values[key] = value.detach().clone();
      return value;
    }
    const auto it = frozen->values.find(key);
    SAES_CHECK(it != frozen->values.end(), DataError,
               "frozen forward: no recorded '{}' (record the state with this model first)", key);
    const at::Tensor& v = it->second;
    SAES_CHECK(v.dim() >= 2 && v.size(-2) == value.size(-2), DataError,
               "frozen forward: '{}' was recorded for {} positions, this forward has {}", key,
               v.dim() >= 2 ? v.size(-2) : 0, value.size(-2));
    if (v.size(0) == batch) return v;
    SAES_CHECK(v.size(0) == 1, DataError,
               "frozen forward: '{}' was recorded for a batch of {}, this forward has {}", key,
               v.size(0), batch);
    std::vector<int64_t> shape = v.sizes().vec();
    shape[0] = batch;
    return v.expand(shape);
  }
};

namespace {

bool is_half(DType dtype) { return dtype == DType::kFloat16 || dtype == DType::kBFloat16; }

std::string block_name(int64_t layer, const char* suffix) {
  return fmt::format("blocks.{}.{}", layer, suffix);
}

/// x / sqrt(mean(x²) + eps) over the last dim.
at::Tensor rms_normalized(const at::Tensor& x, double eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, true) + eps);
}

at::Tensor activate(Activation act, const at::Tensor& x) {
  switch (act) {
    case Activation::kGeluNew:
    case Activation::kGeluNewGated:
      return at::gelu(x, "tanh");
    case Activation::kGelu:
    case Activation::kGeluGated:
      return at::gelu(x);
    case Activation::kRelu:
      return at::relu(x);
    case Activation::kSiluGated:
      return at::silu(x);
  }
  SAES_ASSERT(false, "unhandled activation {}", static_cast<int>(act));
}

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> expected_weights(
    const TransformerSpec& spec) {
  const int64_t d = spec.d_model;
  const int64_t d_q = spec.n_heads * spec.d_head;
  const int64_t d_kv = spec.n_kv_heads * spec.d_head;
  const bool layer_norm = spec.norm == NormType::kLayerNorm;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  const auto add = [&](std::string name, std::vector<int64_t> shape) {
    out.emplace_back(std::move(name), std::move(shape));
  };
  const auto add_norm = [&](const std::string& prefix) {
    add(prefix + ".w", {d});
    if (layer_norm) add(prefix + ".b", {d});
  };
  add("embed.W_E", {spec.d_vocab, d});
  if (spec.positional == Positional::kLearned) add("pos_embed.W_pos", {spec.n_ctx, d});
  for (int64_t l = 0; l < spec.n_layers; ++l) {
    const std::string p = fmt::format("blocks.{}.", l);
    add_norm(p + "ln1");
    add(p + "attn.W_Q", {d_q, d});
    add(p + "attn.W_K", {d_kv, d});
    add(p + "attn.W_V", {d_kv, d});
    if (spec.qkv_bias) {
      add(p + "attn.b_Q", {d_q});
      add(p + "attn.b_K", {d_kv});
      add(p + "attn.b_V", {d_kv});
    }
    if (spec.qk_norm) {
      add(p + "attn.q_norm.w", {spec.d_head});
      add(p + "attn.k_norm.w", {spec.d_head});
    }
    add(p + "attn.W_O", {d, d_q});
    if (spec.attn_out_bias) add(p + "attn.b_O", {d});
    if (spec.post_norms) add_norm(p + "ln1_post");
    add_norm(p + "ln2");
    add(p + "mlp.W_in", {spec.d_mlp, d});
    if (is_gated(spec.act)) add(p + "mlp.W_gate", {spec.d_mlp, d});
    add(p + "mlp.W_out", {d, spec.d_mlp});
    if (spec.mlp_bias) {
      add(p + "mlp.b_in", {spec.d_mlp});
      if (is_gated(spec.act)) add(p + "mlp.b_gate", {spec.d_mlp});
      add(p + "mlp.b_out", {d});
    }
    if (spec.post_norms) add_norm(p + "ln2_post");
  }
  add_norm("ln_final");
  if (!spec.tied_embeddings) add("unembed.W_U", {spec.d_vocab, d});
  if (spec.unembed_bias) add("unembed.b_U", {spec.d_vocab});
  return out;
}

Transformer::Transformer(TransformerSpec spec, WeightSource& source, TransformerOptions options)
    : spec_(std::move(spec)), options_(options) {
  validate_spec(spec_, fmt::format("{} model", architecture_name(spec_.architecture)));
  SAES_CHECK(dtype_is_floating(options_.dtype) && options_.dtype != DType::kFloat64, ConfigError,
             "model dtype: expected float32, float16 or bfloat16, got {}",
             dtype_name(options_.dtype));
  const c10::ScalarType type = to_torch(options_.dtype);
  for (const auto& [name, shape] : expected_weights(spec_)) {
    const at::Tensor w = get_checked(source, name, shape);
    const bool norm_weight = name.size() > 2 && name.compare(name.size() - 2, 2, ".w") == 0;
    if (norm_weight && spec_.norm_weight_offset != 0.0) {
      // (offset + w) in float32, as Gemma's RMSNorm computes it whatever the dtype
      weights_[name] = (w.to(at::kFloat) + spec_.norm_weight_offset).to(options_.device).contiguous();
    } else {
      weights_[name] = w.to(options_.device, type).contiguous();
    }
  }
  if (spec_.positional == Positional::kRotary) {
    const auto frequencies = [&](const RopeParameters& rope) {
      const std::vector<double> wide = rotary_inverse_frequencies_f64(spec_.rotary_dim, rope);
      std::vector<float> inv_freq(wide.begin(), wide.end());
      return at::from_blob(inv_freq.data(), {static_cast<int64_t>(inv_freq.size())},
                           at::TensorOptions().dtype(at::kFloat))
          .to(options_.device, /*non_blocking=*/false, /*copy=*/true);
    };
    inv_freq_ = frequencies(global_rope(spec_));
    if (spec_.local_rope) inv_freq_local_ = frequencies(spec_.rope_local);
  }
  // HF multiplies by the scale as a tensor of the hidden dtype: the scale rounded to it
  embed_scale_ = at::scalar_tensor(spec_.embed_scale, at::kDouble).to(type).item<double>();
}

const at::Tensor& Transformer::weight(const std::string& name) const {
  auto it = weights_.find(name);
  SAES_CHECK(it != weights_.end(), ConfigError, "{} model has no weight '{}'",
             architecture_name(spec_.architecture), name);
  return it->second;
}

at::Tensor Transformer::optional_weight(const std::string& name) const {
  auto it = weights_.find(name);
  return it == weights_.end() ? at::Tensor() : it->second;
}

std::map<std::string, at::Tensor> Transformer::forward(const at::Tensor& tokens,
                                                       const at::Tensor* attention_mask,
                                                       const HookSet& hooks,
                                                       GradMode grad_mode,
                                                       FrozenState* frozen) const {
  Run run(hooks);
  run.frozen = frozen;
  for (const std::string& name : hooks.all_names()) {
    const int64_t stage = hook_stage(spec_, name);
    if (hooks.captures().count(name) > 0) run.stop_stage = std::max(run.stop_stage, stage);
  }
  SAES_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong && tokens.numel() > 0,
             DataError, "tokens: expected a non-empty [batch, seq_len] int64 tensor, got {}-d {}",
             tokens.dim(), c10::toString(tokens.scalar_type()));
  if (attention_mask != nullptr) {
    SAES_CHECK(attention_mask->sizes() == tokens.sizes(), DataError,
               "attention_mask: expected shape [{}] like tokens, got [{}]",
               fmt::join(tokens.sizes(), ", "), fmt::join(attention_mask->sizes(), ", "));
  }
  if (run.stop_stage < 0) return {};
  const int64_t min_id = tokens.min().item<int64_t>();
  const int64_t max_id = tokens.max().item<int64_t>();
  SAES_CHECK(min_id >= 0 && max_id < spec_.d_vocab, DataError,
             "tokens: ids must be in [0, {}), got range [{}, {}]", spec_.d_vocab, min_id, max_id);

  std::optional<c10::InferenceMode> inference;
  std::optional<at::NoGradGuard> no_grad;
  if (grad_mode == GradMode::kInference) inference.emplace();
  if (grad_mode == GradMode::kNoGrad) no_grad.emplace();

  const int64_t seq = tokens.size(1);
  run.tokens = tokens.to(options_.device);
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(options_.device);
  at::Tensor causal = at::triu(at::ones({seq, seq}, long_opts.dtype(at::kBool)), 1);
  if (attention_mask == nullptr) {
    run.positions = at::arange(seq, long_opts).unsqueeze(0).expand({tokens.size(0), seq});
    run.blocked = causal.view({1, 1, seq, seq});
  } else {
    at::Tensor mask = attention_mask->to(options_.device).to(at::kLong);
    run.positions = (at::cumsum(mask, 1) - 1).clamp_min(0);
    at::Tensor key_pad = mask.eq(0).view({tokens.size(0), 1, 1, seq});
    run.blocked = causal.view({1, 1, seq, seq}).logical_or(key_pad);
  }
  if (spec_.sliding_window > 0) {  // key j is outside the window of query i when i - j >= window
    const at::Tensor index = at::arange(seq, long_opts);
    const at::Tensor far = (index.unsqueeze(1) - index.unsqueeze(0)).ge(spec_.sliding_window);
    run.blocked_sliding = run.blocked.logical_or(far.view({1, 1, seq, seq}));
  }
  if (spec_.positional == Positional::kLearned) {
    const int64_t max_pos = run.positions.max().item<int64_t>();
    SAES_CHECK(max_pos < spec_.n_ctx, DataError,
               "tokens: sequence needs position {} but the model has n_ctx = {}", max_pos,
               spec_.n_ctx);
  } else {
    const c10::ScalarType type = to_torch(options_.dtype);
    const at::Tensor positions = run.positions.to(at::kFloat).unsqueeze(-1);
    at::Tensor angles = positions * inv_freq_;
    run.cos = at::cos(angles).to(type).unsqueeze(2);
    run.sin = at::sin(angles).to(type).unsqueeze(2);
    if (inv_freq_local_.defined()) {
      angles = positions * inv_freq_local_;
      run.cos_local = at::cos(angles).to(type).unsqueeze(2);
      run.sin_local = at::sin(angles).to(type).unsqueeze(2);
    }
  }
  run_forward(run);
  return std::move(run.captured);
}

at::Tensor Transformer::logits(const at::Tensor& tokens, const at::Tensor* attention_mask) const {
  HookSet hooks;
  hooks.capture("logits");
  return forward(tokens, attention_mask, hooks).at("logits");
}

void Transformer::run_forward(Run& run) const {
  at::Tensor embedded = at::embedding(weights_.at("embed.W_E"), run.tokens);
  if (embed_scale_ != 1.0) embedded = embedded * embed_scale_;
  at::Tensor x = run.point("hook_embed", embedded);
  if (spec_.positional == Positional::kLearned) {
    x = x +
        run.point("hook_pos_embed", at::embedding(weights_.at("pos_embed.W_pos"), run.positions));
  }
  if (run.stop_stage <= 0) return;
  for (int64_t layer = 0; layer < spec_.n_layers; ++layer) {
    const at::Tensor resid_pre = run.point(block_name(layer, "hook_resid_pre"), x);
    const std::string attn_name = block_name(layer, "hook_attn_out");
    const at::Tensor attn_input = normalize(run, block_name(layer, "ln1"), resid_pre);
    // an attention whose output a replace_output replaces is skipped unless a hook inside it
    // is used (the replacement's value stands in; resid_pre only gives its shape and type)
    bool skip_attn = run.hooks.output_replacements().count(attn_name) > 0;
    for (const char* inner : {"attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z",
                              "ln1_post.hook_normalized"}) {
      skip_attn = skip_attn && !run.touches(block_name(layer, inner));
    }
    at::Tensor attn_out = resid_pre;
    if (!skip_attn) {
      attn_out = attention(run, layer, attn_input);
      if (spec_.post_norms) attn_out = normalize(run, block_name(layer, "ln1_post"), attn_out);
    }
    attn_out = run.point(attn_name, attn_out);
    at::Tensor mlp_in = resid_pre;
    if (!spec_.parallel_attn_mlp) {
      mlp_in = run.point(block_name(layer, "hook_resid_mid"), resid_pre + attn_out);
    }
    if (run.stop_stage <= 2 * layer + 1) return;
    const std::string mlp_name = block_name(layer, "hook_mlp_out");
    const at::Tensor mlp_input = normalize(run, block_name(layer, "ln2"), mlp_in);
    // an MLP whose output a replace_output replaces is skipped unless a hook inside it is used
    const bool skip_mlp = run.hooks.output_replacements().count(mlp_name) > 0 &&
                          !run.touches(block_name(layer, "mlp.hook_post")) &&
                          !run.touches(block_name(layer, "ln2_post.hook_normalized"));
    const at::Tensor mlp_out =
        run.point(mlp_name, skip_mlp ? mlp_in : mlp(run, layer, mlp_input));
    x = spec_.parallel_attn_mlp ? resid_pre + attn_out + mlp_out : mlp_in + mlp_out;
    x = run.point(block_name(layer, "hook_resid_post"), x);
    if (run.stop_stage <= 2 * layer + 2) return;
  }
  const at::Tensor final_normalized = normalize(run, "ln_final", x);
  if (run.stop_stage <= 2 * spec_.n_layers + 1) return;
  run.point("logits", unembed(final_normalized));
}

at::Tensor Transformer::unembed(const at::Tensor& final_normalized, bool softcap) const {
  const at::Tensor& w_u =
      spec_.tied_embeddings ? weights_.at("embed.W_E") : weights_.at("unembed.W_U");
  at::Tensor logits = at::linear(final_normalized, w_u, optional_weight("unembed.b_U"));
  if (softcap && spec_.final_softcap > 0) {
    logits = at::tanh(logits / spec_.final_softcap) * spec_.final_softcap;
  }
  return logits;
}

at::Tensor Transformer::logits_of_residual(const at::Tensor& residual) const {
  const HookSet none;
  Run run(none);
  const at::Tensor x = residual.to(options_.device, to_torch(options_.dtype));
  return unembed(normalize(run, "ln_final", x), /*softcap=*/false);
}

at::Tensor Transformer::normalize(Run& run, const std::string& prefix, const at::Tensor& x) const {
  const at::Tensor xf = is_half(options_.dtype) ? x.to(at::kFloat) : x;
  at::Tensor normalized;
  if (run.frozen != nullptr) {  // the scale as a factor of its own, recorded or replayed
    const bool layer_norm = spec_.norm == NormType::kLayerNorm;
    const at::Tensor centred = layer_norm ? xf - xf.mean(-1, true) : xf;
    at::Tensor scale = at::rsqrt(centred.pow(2).mean(-1, true) + spec_.norm_eps).to(at::kFloat);
    scale = run.frozen_value(prefix + ".scale", scale, x.size(0));
    normalized = centred * scale.to(centred.scalar_type());
  } else if (spec_.norm == NormType::kLayerNorm) {
    normalized = at::layer_norm(xf, {x.size(-1)}, {}, {}, spec_.norm_eps);
  } else {
    normalized = rms_normalized(xf, spec_.norm_eps);
  }
  normalized = run.point(prefix + ".hook_normalized", normalized.to(x.scalar_type()));
  return apply_norm_weight(prefix, normalized);
}

at::Tensor Transformer::apply_norm_weight(const std::string& prefix,
                                          const at::Tensor& normalized) const {
  const at::Tensor& w = weights_.at(prefix + ".w");
  if (w.scalar_type() != normalized.scalar_type()) {  // float32 (offset + w): Gemma in half
    return (normalized.to(at::kFloat) * w).to(normalized.scalar_type());
  }
  at::Tensor out = normalized * w;
  if (spec_.norm == NormType::kLayerNorm) out = out + weights_.at(prefix + ".b");
  return out;
}

at::Tensor Transformer::head_norm(const std::string& name, const at::Tensor& x) const {
  const at::Tensor xf = is_half(options_.dtype) ? x.to(at::kFloat) : x;
  const at::Tensor normalized = rms_normalized(xf, spec_.norm_eps);
  const at::Tensor& w = weights_.at(name);
  if (w.scalar_type() != x.scalar_type()) return (normalized * w).to(x.scalar_type());
  return normalized.to(x.scalar_type()) * w;
}

at::Tensor Transformer::attention(Run& run, int64_t layer, const at::Tensor& normalized) const {
  const std::string p = fmt::format("blocks.{}.attn.", layer);
  const int64_t batch = normalized.size(0);
  const int64_t seq = normalized.size(1);
  const int64_t h = spec_.n_heads;
  const int64_t h_kv = spec_.n_kv_heads;
  const int64_t d_head = spec_.d_head;
  const auto project = [&](const char* w, const char* b, int64_t heads) {
    return at::linear(normalized, weights_.at(p + w), optional_weight(p + b))
        .view({batch, seq, heads, d_head});
  };
  // A replayed frozen forward takes its pattern from the state: q and k are only computed when a
  // hook reads or replaces them.
  const bool replay = run.frozen != nullptr && !run.frozen->record;
  const bool need_qk = !replay || run.touches(p + "hook_q") || run.touches(p + "hook_k");
  at::Tensor q, k;
  at::Tensor v = project("W_V", "b_V", h_kv);
  const bool sliding = is_sliding_layer(spec_, layer);
  if (need_qk) {
    q = project("W_Q", "b_Q", h);
    k = project("W_K", "b_K", h_kv);
    if (spec_.qk_norm) {
      q = head_norm(p + "q_norm.w", q);
      k = head_norm(p + "k_norm.w", k);
    }
    if (spec_.positional == Positional::kRotary) {
      const bool local = sliding && run.cos_local.defined();
      const at::Tensor& cos = local ? run.cos_local : run.cos;
      const at::Tensor& sin = local ? run.sin_local : run.sin;
      q = apply_rotary(q, cos, sin, spec_.rotary_dim, spec_.rope_style);
      k = apply_rotary(k, cos, sin, spec_.rotary_dim, spec_.rope_style);
    }
    q = run.point(p + "hook_q", q).transpose(1, 2);  // [batch, heads, seq, d_head]
    k = run.point(p + "hook_k", k).transpose(1, 2);
  }
  v = run.point(p + "hook_v", v).transpose(1, 2);
  if (h_kv != h) {  // GQA: query head i uses kv head i / (h / h_kv)
    const std::vector<int64_t> expanded = {batch, h_kv, h / h_kv, seq, d_head};
    if (k.defined()) k = k.unsqueeze(2).expand(expanded).reshape({batch, h, seq, d_head});
    v = v.unsqueeze(2).expand(expanded).reshape({batch, h, seq, d_head});
  }
  const double scale = 1.0 / std::sqrt(spec_.attn_scale_base > 0
                                           ? spec_.attn_scale_base
                                           : static_cast<double>(d_head));
  const at::Tensor& blocked = sliding ? run.blocked_sliding : run.blocked;
  at::Tensor z;
  if (run.frozen != nullptr) {  // the pattern recorded or replayed (a prompt: no slicing needed)
    at::Tensor pattern;
    if (run.frozen->record) pattern = attention_pattern(q * scale, k, blocked, spec_.attn_softcap);
    pattern = run.frozen_value(p + "pattern", pattern.defined() ? pattern : v, batch);
    z = at::matmul(pattern.to(v.scalar_type()), v).transpose(1, 2).contiguous();
  } else {  // [batch, seq, heads, d_head]
    z = attend((q * scale).contiguous(), k.contiguous(), v.contiguous(), blocked, 0,
               spec_.attn_softcap)
            .transpose(1, 2)
            .contiguous();
  }
  z = run.point(p + "hook_z", z);
  return at::linear(z.view({batch, seq, h * d_head}), weights_.at(p + "W_O"),
                    optional_weight(p + "b_O"));
}

at::Tensor Transformer::mlp_of_normalized(int64_t layer, const at::Tensor& normalized) const {
  SAES_CHECK(layer >= 0 && layer < spec_.n_layers, ConfigError,
             "layer {} is not a layer of this model (it has {})", layer, spec_.n_layers);
  const HookSet none;
  Run run(none);
  const at::Tensor x = normalized.to(options_.device, to_torch(options_.dtype));
  return mlp(run, layer, apply_norm_weight(fmt::format("blocks.{}.ln2", layer), x));
}

at::Tensor Transformer::mlp(Run& run, int64_t layer, const at::Tensor& normalized) const {
  const at::Tensor out = mlp_core(run, layer, normalized);
  return spec_.post_norms ? normalize(run, block_name(layer, "ln2_post"), out) : out;
}

at::Tensor Transformer::mlp_core(Run& run, int64_t layer, const at::Tensor& normalized) const {
  const std::string p = fmt::format("blocks.{}.mlp.", layer);
  at::Tensor hidden = at::linear(normalized, weights_.at(p + "W_in"), optional_weight(p + "b_in"));
  if (is_gated(spec_.act)) {
    hidden = activate(spec_.act, at::linear(normalized, weights_.at(p + "W_gate"),
                                            optional_weight(p + "b_gate"))) *
             hidden;
  } else {
    hidden = activate(spec_.act, hidden);
  }
  hidden = run.point(p + "hook_post", hidden);
  return at::linear(hidden, weights_.at(p + "W_out"), optional_weight(p + "b_out"));
}

}  // namespace saes::lm

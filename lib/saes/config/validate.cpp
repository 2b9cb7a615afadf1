// Semantic validation of saes-train's settings (the dictionary, initializer, trainer and
// parallelism checks); the shared checks and the other tools' settings are validate_common.cpp's.
// Every problem is collected, none thrown here.
#include "saes/config/validate.h"
#include "saes/config/validate_checks.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "saes/config/field_traits.h"
#include "saes/config/yaml_writer.h"
#include "saes/core/error.h"


namespace saes::config::detail {
namespace {


using data::ActivationTarget;
using data::SourceType;
using dictionaries::ActFn;

void check_head_parallelism(Problems& p, const TrainSettings& s) {
  const auto hp = s.parallelism.head_parallel_size;
  if (hp <= 1) return;
  const bool crosscoder = s.sae.sae_type == dictionaries::SaeType::kCrosscoder;
  const auto heads = static_cast<std::int64_t>(s.sae.hook_points.size());
  p.check(crosscoder, "head_parallel_size",
          fmt::format("splits a crosscoder's heads (sae.hook_points); sae_type {} has none: set it "
                      "to 1, got {}",
                      dictionaries::kSaeTypeNames[static_cast<std::size_t>(s.sae.sae_type)], hp));
  p.check(!crosscoder || heads % hp == 0, "head_parallel_size",
          fmt::format("must divide the {} sae.hook_points (each head rank holds whole heads), got {}",
                      heads, hp));
}

void check_sae_hooks(Problems& p, const dictionaries::SparseDictionaryConfig& sae) {
  if (sae.sae_type == dictionaries::SaeType::kCrosscoder) {
    p.check(sae.hook_point_in.empty() && sae.hook_point_out.empty() &&
                sae.hook_points_in.empty() && sae.hook_points_out.empty(),
            "sae.hook_point_in",
            "a crosscoder reads and reconstructs sae.hook_points (one per head); remove "
            "hook_point_in/hook_point_out/hook_points_in/hook_points_out");
    p.check(!sae.hook_points.empty(), "sae.hook_points",
            "required for a crosscoder: its hook points, one per head");
    for (std::size_t i = 0; i < sae.hook_points.size(); ++i) {
      check_not_empty(p, fmt::format("sae.hook_points[{}]", i), sae.hook_points[i]);
    }
    p.check(std::set<std::string>(sae.hook_points.begin(), sae.hook_points.end()).size() ==
                sae.hook_points.size(),
            "sae.hook_points", "lists a hook point twice");
    return;
  }
  p.check(sae.hook_points.empty(), "sae.hook_points", "is for sae_type crosscoder only");
  if (sae.sae_type != dictionaries::SaeType::kClt) {
    check_not_empty(p, "sae.hook_point_in", sae.hook_point_in);
    check_not_empty(p, "sae.hook_point_out", sae.hook_point_out);
    p.check(sae.hook_points_in.empty() && sae.hook_points_out.empty(), "sae.hook_points_in",
            "hook_points_in/hook_points_out are for sae_type clt; an sae reads hook_point_in and "
            "hook_point_out");
    return;
  }
  p.check(sae.hook_point_in.empty() && sae.hook_point_out.empty(), "sae.hook_point_in",
          "a clt reads hook_points_in and hook_points_out (one hook per layer); remove "
          "hook_point_in/hook_point_out");
  p.check(!sae.hook_points_in.empty(), "sae.hook_points_in", "a clt needs at least one layer");
  p.check(sae.hook_points_out.size() == sae.hook_points_in.size(), "sae.hook_points_out",
          fmt::format("expected {} hooks (one per hook_points_in entry), got {}",
                      sae.hook_points_in.size(), sae.hook_points_out.size()));
  for (const auto* list : {&sae.hook_points_in, &sae.hook_points_out}) {
    const std::string name =
        list == &sae.hook_points_in ? "sae.hook_points_in" : "sae.hook_points_out";
    for (std::size_t i = 0; i < list->size(); ++i) {
      check_not_empty(p, fmt::format("{}[{}]", name, i), (*list)[i]);
    }
    p.check(std::set<std::string>(list->begin(), list->end()).size() == list->size(), name,
            "lists a hook point twice");
  }
}

/// Lorsa's own keys (spec §2.6): required sizes for a lorsa, defaults for every other variant.
/// A visited field's key, help and value as YAML text.
struct FieldText {
  std::string key, help, value;
};

/// Visitor collecting every field of a config struct as FieldText, in visit order.
struct FieldTexts {
  std::vector<FieldText> fields;
  template <class T>
  void operator()(std::string_view key, const T& field, std::string_view help) {
    YAML::Emitter out;
    detail::emit_value(out, field);
    fields.push_back({std::string(key), std::string(help), out.c_str()});
  }
  template <class T>
  void required(std::string_view key, const T& field, std::string_view help) {
    (*this)(key, field, help);
  }
  void unsupported(std::string_view /*key*/, std::string_view /*hint*/) {}
  template <class F>
  void variant(bool active, std::string_view /*when*/, F&& fields_of) {
    if (active) fields_of();
  }
};

void check_lorsa(Problems& p, const dictionaries::SparseDictionaryConfig& sae) {
  if (sae.sae_type != dictionaries::SaeType::kLorsa) {
    // every key documented "lorsa: ..." (SparseDictionaryConfig::visit_fields) left at its default
    dictionaries::SparseDictionaryConfig set = sae, defaults;
    FieldTexts mine, standard;
    set.visit_fields(mine);
    defaults.visit_fields(standard);
    std::map<std::string, std::string> default_values;
    for (const FieldText& f : standard.fields) default_values[f.key] = f.value;
    for (const FieldText& f : mine.fields) {
      if (f.help.rfind("lorsa:", 0) != 0) continue;
      p.check(f.value == default_values[f.key], fmt::format("sae.{}", f.key),
              "is for sae_type lorsa only");
    }
    return;
  }
  p.check(sae.n_qk_heads >= 1, "sae.n_qk_heads", "required for lorsa (>= 1)");
  p.check(sae.d_qk_head >= 1, "sae.d_qk_head", "required for lorsa (>= 1)");
  p.check(sae.n_ctx >= 1, "sae.n_ctx", "required for lorsa: the longest context (>= 1)");
  if (sae.n_qk_heads >= 1 && sae.d_sae() >= 1) {
    p.check(sae.d_sae() % sae.n_qk_heads == 0, "sae.n_qk_heads",
            fmt::format("d_sae {} must be divisible by n_qk_heads {} (each QK head serves "
                        "d_sae / n_qk_heads OV heads)",
                        sae.d_sae(), sae.n_qk_heads));
  }
  p.check(sae.positional_embedding_type == "rotary" || sae.positional_embedding_type == "none",
          "sae.positional_embedding_type",
          fmt::format("expected rotary or none, got \"{}\"", sae.positional_embedding_type));
  if (sae.positional_embedding_type == "rotary") {
    p.check(sae.rotary_dim >= 2 && sae.rotary_dim % 2 == 0 && sae.rotary_dim <= sae.d_qk_head,
            "sae.rotary_dim",
            fmt::format("required with rotary: an even number in [2, d_qk_head {}], got {}",
                        sae.d_qk_head, sae.rotary_dim));
    check_positive(p, "sae.rotary_base", sae.rotary_base);
  }
  if (sae.use_NTK_by_parts_rope) {
    check_positive(p, "sae.NTK_by_parts_factor", sae.NTK_by_parts_factor);
    check_positive(p, "sae.old_context_len", static_cast<double>(sae.old_context_len));
    p.check(sae.NTK_by_parts_high_freq_factor > sae.NTK_by_parts_low_freq_factor &&
                sae.NTK_by_parts_low_freq_factor > 0,
            "sae.NTK_by_parts_high_freq_factor",
            "must be greater than NTK_by_parts_low_freq_factor > 0");
  }
  if (sae.attn_scale) check_positive(p, "sae.attn_scale", *sae.attn_scale);
  check_positive(p, "sae.eps", sae.eps);
  p.check(!sae.hook_point_in.empty() && sae.hook_point_in != sae.hook_point_out,
          "sae.hook_point_out",
          "a lorsa reconstructs another hook than it reads (e.g. blocks.L.ln1.hook_normalized -> "
          "blocks.L.hook_attn_out)");
  p.check(!sae.use_glu_encoder, "sae.use_glu_encoder", "is not defined for a lorsa");
}

/// A MoLT's rank_counts (spec §2.5): positive integer ranks up to d_model, positive counts,
/// expansion_factor within 0.1 of Σ counts / d_model; empty for every other variant.
void check_molt(Problems& p, const dictionaries::SparseDictionaryConfig& sae) {
  if (sae.sae_type != dictionaries::SaeType::kMolt) {
    p.check(sae.rank_counts.empty(), "sae.rank_counts", "is for sae_type molt only");
    return;
  }
  p.check(!sae.rank_counts.empty(), "sae.rank_counts",
          "required for molt: transforms per rank, e.g. {1: 512, 4: 128}");
  for (const auto& [rank, count] : sae.rank_counts) {
    const bool digits = !rank.empty() && rank.size() < 10 &&
                        std::all_of(rank.begin(), rank.end(), [](char c) { return c >= '0' && c <= '9'; });
    const long long r = digits ? std::stoll(rank) : 0;
    p.check(digits && r >= 1 && (sae.d_model <= 0 || r <= sae.d_model),
            fmt::format("sae.rank_counts.{}", rank),
            fmt::format("a rank is an integer in [1, d_model {}]", sae.d_model));
    p.check(count >= 1, fmt::format("sae.rank_counts.{}", rank),
            fmt::format("expected a positive count, got {}", count));
  }
  if (sae.d_model > 0 && !sae.rank_counts.empty()) {
    const double ratio = static_cast<double>(sae.d_sae()) / static_cast<double>(sae.d_model);
    p.check(std::abs(sae.expansion_factor - ratio) <= 0.1, "sae.expansion_factor",
            fmt::format("must be within 0.1 of d_sae / d_model = {} / {} = {:.4g} (d_sae = the "
                        "sum of rank_counts), got {}",
                        sae.d_sae(), sae.d_model, ratio, sae.expansion_factor));
  }
  p.check(!sae.use_glu_encoder, "sae.use_glu_encoder", "is not defined for a molt");
}

void check_sae(Problems& p, const dictionaries::SparseDictionaryConfig& sae) {
  check_lorsa(p, sae);
  if (sae.sae_type == dictionaries::SaeType::kCrosscoder) {
    p.check(sae.sparsity_include_decoder_norm, "sae.sparsity_include_decoder_norm",
            "a crosscoder gates each head by its decoder norms (mandatory): set it to true");
    p.check(sae.use_decoder_bias, "sae.use_decoder_bias",
            "a crosscoder needs its per-head decoder bias: set it to true");
    p.check(!sae.use_glu_encoder, "sae.use_glu_encoder", "is not defined for a crosscoder");
  }
  check_molt(p, sae);
  const bool clt = sae.sae_type == dictionaries::SaeType::kClt;
  check_positive(p, "sae.d_model", static_cast<double>(sae.d_model));
  check_positive(p, "sae.expansion_factor", sae.expansion_factor);
  if (sae.d_model > 0 && sae.expansion_factor > 0) {
    p.check(sae.d_sae() >= 1, "sae.expansion_factor",
            fmt::format("d_sae = int(d_model * expansion_factor) is {}", sae.d_sae()));
  }
  const bool layer_act = sae.act_fn == ActFn::kBatchLayerTopK || sae.act_fn == ActFn::kLayerTopK;
  p.check(
      clt || !layer_act, "sae.act_fn",
      fmt::format("{} is for cross-layer transcoders (sae_type clt) only", enum_name(sae.act_fn)));
  if (dictionaries::is_topk_family(sae.act_fn) && sae.d_sae() >= 1) {
    const std::int64_t max_k =
        sae.d_sae() * (layer_act ? static_cast<std::int64_t>(sae.hook_points_in.size()) : 1);
    p.check(sae.top_k >= 1 && sae.top_k <= max_k, "sae.top_k",
            fmt::format("expected 1 <= top_k <= {} ({}), got {}",
                        layer_act ? "d_sae * layers" : "d_sae", max_k, sae.top_k));
  }
  check_positive(p, "sae.jumprelu_threshold_window", sae.jumprelu_threshold_window);
  check_sae_hooks(p, sae);
  if (!clt) {
    p.check(!sae.init_cross_layer_decoder_all_zero, "sae.init_cross_layer_decoder_all_zero",
            "is for sae_type clt only");
    p.check(!sae.decode_with_csr, "sae.decode_with_csr",
            "is for sae_type clt only (an sae uses sae.sparse_kernels)");
  } else {
    p.check(!sae.use_glu_encoder, "sae.use_glu_encoder", "is not defined for a clt");
    p.check(!sae.decode_with_csr || sae.sparse_kernels != dictionaries::SparseKernels::kOff,
            "sae.decode_with_csr", "true contradicts sae.sparse_kernels: off (set one of them)");
    p.check(sae.sparsity_threshold_for_csr > 0 && sae.sparsity_threshold_for_csr <= 1,
            "sae.sparsity_threshold_for_csr",
            fmt::format("expected in (0, 1], got {}", sae.sparsity_threshold_for_csr));
  }
  check_device(p, "sae.device", sae.device);
  check_floating(p, "sae.dtype", sae.dtype);
}

void check_initializer(Problems& p, const training::InitializerConfig& init,
                       const dictionaries::SparseDictionaryConfig& sae) {
  check_positive(p, "initializer.decoder_uniform_bound", init.decoder_uniform_bound);
  check_positive(p, "initializer.encoder_uniform_bound", init.encoder_uniform_bound);
  if (sae.act_fn == ActFn::kJumpRelu) {
    p.check(init.init_log_jumprelu_threshold_value.has_value(),
            "initializer.init_log_jumprelu_threshold_value",
            "required for act_fn jumprelu (e.g. -2.302585 = log 0.1)");
  }
  const bool lorsa = sae.sae_type == dictionaries::SaeType::kLorsa;
  if (init.initialize_W_D_with_active_subspace) {
    p.check(lorsa || sae.sae_type == dictionaries::SaeType::kSae,
            "initializer.initialize_W_D_with_active_subspace", "implemented for sae and lorsa");
    p.check(lorsa || init.d_active_subspace.has_value(), "initializer.d_active_subspace",
            "required with initialize_W_D_with_active_subspace");
  }
  if (init.initialize_lorsa_with_mhsa.value_or(false)) {
    p.check(lorsa, "initializer.initialize_lorsa_with_mhsa", "only for sae_type lorsa");
  }
  if (init.initialize_tc_with_mlp.value_or(false)) {
    p.check(sae.sae_type == dictionaries::SaeType::kSae && sae.hook_point_in != sae.hook_point_out,
            "initializer.initialize_tc_with_mlp",
            "only for a transcoder (sae_type sae with hook_point_in != hook_point_out)");
  }
  if (init.d_active_subspace) {
    p.check(*init.d_active_subspace >= 1 && *init.d_active_subspace <= sae.d_model,
            "initializer.d_active_subspace",
            fmt::format("expected 1 <= d_active_subspace <= d_model ({}), got {}", sae.d_model,
                        *init.d_active_subspace));
  }
  if (sae.sae_type == dictionaries::SaeType::kLorsa) {
    p.check(!init.init_encoder_with_decoder_transpose,
            "initializer.init_encoder_with_decoder_transpose",
            "W_E = W_D^T is not defined for a lorsa (its encoder is attention): set it to false");
  }
  if (sae.sae_type == dictionaries::SaeType::kMolt) {
    p.check(!init.init_encoder_with_decoder_transpose,
            "initializer.init_encoder_with_decoder_transpose",
            "W_E = W_D^T is not defined for a molt (its decoders are low-rank transforms): set it "
            "to false");
  }
  if (sae.sae_type == dictionaries::SaeType::kClt) {
    p.check(!init.init_encoder_with_decoder_transpose,
            "initializer.init_encoder_with_decoder_transpose",
            "W_E = W_D^T is not defined for a clt (W_D has a block per target layer): set it to "
            "false");
    p.check(!init.grid_search_init_norm, "initializer.grid_search_init_norm",
            "the decoder-norm grid search is not defined for a clt (as upstream): set it to false");
  }
  if (init.initialize_lorsa_with_mhsa.value_or(false) ||
      init.initialize_tc_with_mlp.value_or(false) ||
      (lorsa && init.initialize_W_D_with_active_subspace)) {
    p.check(init.model_layer.has_value(), "initializer.model_layer",
            "required with initialize_lorsa_with_mhsa, initialize_tc_with_mlp and a lorsa's "
            "initialize_W_D_with_active_subspace");
  }
}

void check_trainer(Problems& p, const training::TrainerConfig& t,
                   const dictionaries::SparseDictionaryConfig& sae) {
  const std::string path = "trainer";
  check_positive(p, at(path, "lr"), t.lr);
  for (std::size_t i = 0; i < t.betas.size(); ++i) {
    p.check(t.betas[i] >= 0 && t.betas[i] < 1, fmt::format("trainer.betas[{}]", i),
            fmt::format("expected 0 <= beta < 1, got {}", t.betas[i]));
  }
  if (t.l1_coefficient) check_non_negative(p, at(path, "l1_coefficient"), *t.l1_coefficient);
  if (t.lp_coefficient) check_non_negative(p, at(path, "lp_coefficient"), *t.lp_coefficient);
  if (t.auxk_coefficient) check_non_negative(p, at(path, "auxk_coefficient"), *t.auxk_coefficient);
  if (sae.sae_type == dictionaries::SaeType::kCrosscoder) {
    p.check(t.auxk_coefficient.value_or(0.0) == 0.0, at(path, "auxk_coefficient"),
            "Aux-K is not defined for a crosscoder: set it to null");
  }
  if (sae.sae_type == dictionaries::SaeType::kClt) {
    p.check(t.lp_coefficient.value_or(0.0) == 0.0, at(path, "lp_coefficient"),
            "the JumpReLU L_p loss is not defined for a clt (as upstream): set it to null");
    p.check(t.auxk_coefficient.value_or(0.0) == 0.0, at(path, "auxk_coefficient"),
            "Aux-K is not defined for a clt (as upstream): set it to null");
  }
  if (t.amp_dtype) check_floating(p, at(path, "amp_dtype"), *t.amp_dtype);
  check_positive(p, at(path, "tanh_stretch_coefficient"), t.tanh_stretch_coefficient);
  check_positive(p, at(path, "frequency_scale"), t.frequency_scale);
  check_positive(p, at(path, "p"), static_cast<double>(t.p));
  check_steps(p, at(path, "l1_coefficient_warmup_steps"), t.l1_coefficient_warmup_steps);
  check_steps(p, at(path, "k_warmup_steps"), t.k_warmup_steps);
  check_steps(p, at(path, "k_cold_booting_steps"), t.k_cold_booting_steps);
  check_steps(p, at(path, "lr_warm_up_steps"), t.lr_warm_up_steps);
  check_steps(p, at(path, "lr_cool_down_steps"), t.lr_cool_down_steps);
  if (t.initial_k && dictionaries::is_topk_family(sae.act_fn)) {
    p.check(
        *t.initial_k >= sae.top_k, at(path, "initial_k"),
        fmt::format(
            "k annealing starts at initial_k and ends at sae.top_k ({}): expected >= {}, got {}",
            sae.top_k, sae.top_k, *t.initial_k));
  }
  check_positive(p, at(path, "k_exponential_factor"), t.k_exponential_factor);
  check_positive(p, at(path, "k_aux"), static_cast<double>(t.k_aux));
  check_positive(p, at(path, "dead_threshold"), static_cast<double>(t.dead_threshold));
  p.check(t.lr_end_ratio >= 0 && t.lr_end_ratio <= 1, at(path, "lr_end_ratio"),
          fmt::format("expected in [0, 1], got {}", t.lr_end_ratio));
  check_positive(p, at(path, "jumprelu_lr_factor"), t.jumprelu_lr_factor);
  check_non_negative(p, at(path, "clip_grad_norm"), t.clip_grad_norm);
  check_positive(p, at(path, "total_training_tokens"),
                 static_cast<double>(t.total_training_tokens));
  check_positive(p, at(path, "log_frequency"), static_cast<double>(t.log_frequency));
  check_positive(p, at(path, "eval_frequency"), static_cast<double>(t.eval_frequency));
  check_non_negative(p, at(path, "n_checkpoints"), static_cast<double>(t.n_checkpoints));
  check_not_empty(p, at(path, "exp_result_path"), t.exp_result_path.string());
}

}  // namespace

std::vector<Problem> find_problems(const TrainSettings& s) {
  Problems p;
  check_not_empty(p, "sae_name", s.sae_name);
  check_not_empty(p, "sae_series", s.sae_series);
  check_sae(p, s.sae);
  if (s.initializer) check_initializer(p, *s.initializer, s.sae);
  check_trainer(p, s.trainer, s.sae);
  check_factory(p, "activation_factory", s.activation_factory, s.model.has_value(), s.datasets);
  const auto& hooks = s.activation_factory.hook_points;
  std::vector<const std::string*> needed = {&s.sae.hook_point_in, &s.sae.hook_point_out};
  for (const auto* list : {&s.sae.hook_points, &s.sae.hook_points_in, &s.sae.hook_points_out}) {
    for (const std::string& hook : *list) needed.push_back(&hook);
  }
  std::set<std::string> seen;  // hook_point_in == hook_point_out: one message, not two
  for (const std::string* hook : needed) {
    if (!seen.insert(*hook).second) continue;
    p.check(hook->empty() || std::find(hooks.begin(), hooks.end(), *hook) != hooks.end(),
            "activation_factory.hook_points",
            fmt::format("must include the sae's hook point \"{}\"", *hook));
  }
  if (s.sae.sae_type == dictionaries::SaeType::kLorsa) {
    p.check(s.activation_factory.target == ActivationTarget::kActivations2d,
            "activation_factory.target",
            "a lorsa trains on sequences (attention over the context): expected activations-2d");
    const auto context = s.activation_factory.context_size;
    p.check(s.sae.n_ctx < 1 || !context || *context <= s.sae.n_ctx,
            "activation_factory.context_size",
            fmt::format("must be at most sae.n_ctx ({}), got {}", s.sae.n_ctx, context.value_or(0)));
  }
  check_parallelism(p, s.parallelism);
  if (s.parallelism.data_parallel_size > 0) {
    p.check(s.activation_factory.batch_size % s.parallelism.data_parallel_size == 0,
            "activation_factory.batch_size",
            fmt::format("must be divisible by data_parallel_size ({}), got {}",
                        s.parallelism.data_parallel_size, s.activation_factory.batch_size));
  }
  if (s.parallelism.model_parallel_size > 0 && s.sae.d_sae() > 0) {
    p.check(s.sae.d_sae() % s.parallelism.model_parallel_size == 0, "model_parallel_size",
            fmt::format("must divide d_sae ({}), got {}", s.sae.d_sae(),
                        s.parallelism.model_parallel_size));
    if (s.sae.sae_type == dictionaries::SaeType::kMolt) {
      for (const auto& [rank, count] : s.sae.rank_counts) {
        p.check(count % s.parallelism.model_parallel_size == 0, "model_parallel_size",
                fmt::format("must divide every count of sae.rank_counts (each model rank holds "
                            "its share of every rank group): rank {} has {}, got {}",
                            rank, count, s.parallelism.model_parallel_size));
      }
    }
    if (s.sae.sae_type == dictionaries::SaeType::kLorsa && s.sae.n_qk_heads > 0) {
      p.check(s.sae.n_qk_heads % s.parallelism.model_parallel_size == 0, "model_parallel_size",
              fmt::format("must divide sae.n_qk_heads ({}): each model rank holds whole QK heads "
                          "with their OV heads, got {}",
                          s.sae.n_qk_heads, s.parallelism.model_parallel_size));
    }
  }
  check_head_parallelism(p, s);
  if (s.model) {
    check_lm(p, "model", *s.model);
    check_checkpoints(p, "model", *s.model, "activation_factory.hook_points",
                      s.activation_factory.hook_points, has_dataset_source(s.activation_factory));
  }
  check_device_type(p, s.device_type);
  check_run(p, s.threads, s.logging);
  return p.take();
}

}  // namespace saes::config::detail

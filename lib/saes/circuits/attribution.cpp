// ReplacementModel: the prompt's frozen forward, the dictionaries' features, and the error and
// constant nodes of every replaced output (MLP outputs; attention outputs with a Lorsa). The
// backward passes that give the adjacency rows are attribution_rows.cpp's.
#include "saes/circuits/attribution.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/format.h>

#include "saes/circuits/attribution_state.h"
#include "saes/core/error.h"

namespace saes::circuits {
namespace detail {
namespace {

std::string block_hook(std::int64_t layer, const char* suffix) {
  return fmt::format("blocks.{}.{}", layer, suffix);
}

constexpr const char* kFinalHook = "ln_final.hook_normalized";

}  // namespace

at::Tensor Target::read(const at::Tensor& acts) const {
  const at::Tensor a = acts.to(at::kDouble);
  if (!weights.defined()) return at::sum(a[position] * vector);
  return at::sum(at::mv(a, vector) * weights);
}

dictionaries::HookActs State::inputs(std::size_t k,
                                     const std::map<std::string, at::Tensor>& live) const {
  dictionaries::HookActs raw;
  for (const auto& h : dicts[k].in_hooks) {
    const auto it = live.find(h);
    const at::Tensor& v = it != live.end() ? it->second : captured.at(h);  // [1, T, d]
    raw[h] = dicts[k].sequence ? v : v[0];
  }
  return raw;
}

std::pair<at::Tensor, at::Tensor> State::encode(std::size_t k,
                                                const dictionaries::HookActs& raw) const {
  const auto* dict = dicts[k].d;
  const at::Tensor f = dict->encode(dict->prepare_input(raw)).contiguous();
  const at::Tensor f3 = f.view({T, static_cast<std::int64_t>(dicts[k].in_hooks.size()), -1});
  if (zero_first) f3.select(0, 0).zero_();  // a view: f is zeroed too
  return {f, f3};
}

at::Tensor State::reconstruct(std::size_t k, const dictionaries::HookActs& raw,
                              const at::Tensor& f) const {
  const auto* dict = dicts[k].d;
  return dict->reconstruct(dict->prepare_input(raw), f)
      .reshape({static_cast<std::int64_t>(dicts[k].out_hooks.size()), T, d});
}

at::Tensor State::logit_vector(std::int64_t v) const {
  const auto& spec = model.spec();
  const at::Tensor& w_u =
      model.weight(spec.tied_embeddings ? std::string("embed.W_E") : std::string("unembed.W_U"));
  if (!unembed_mean.defined()) unembed_mean = at::mean(w_u.to(at::kDouble), {0});  // once
  const at::Tensor u = w_u[v].to(at::kDouble) - unembed_mean;
  return u * model.weight("ln_final.w").to(at::kDouble);
}

const FeatureRef& State::feature_of(const Graph& graph, std::int64_t i) const {
  const Node& node = graph.nodes[static_cast<std::size_t>(i)];
  const auto matches = [&](const FeatureRef& f) {
    return f.layer == node.layer && f.position == node.position && f.index == node.index &&
           f.attention == node.attention && dicts[f.dict].name == node.dictionary;
  };
  if (i < static_cast<std::int64_t>(features.size()) &&
      matches(features[static_cast<std::size_t>(i)])) {
    return features[static_cast<std::size_t>(i)];
  }
  for (const FeatureRef& f : features)
    if (matches(f)) return f;
  SAES_THROW(DataError, "feature node {}/{}/{} is not active on this prompt", node.layer,
             node.position, node.index);
}

at::Tensor State::mixing_of(const FeatureRef& f) const {
  const auto key = std::make_pair(f.dict, f.position);
  auto it = mixing_.find(key);
  if (it == mixing_.end()) {
    const Dict& k = dicts[f.dict];
    const at::Tensor all = at::arange(k.d->d_sae(), at::kLong);
    it = mixing_.emplace(key, k.d->token_mixing(k.input, f.position, all).to(at::kDouble)).first;
  }
  return it->second[f.index];
}

Target State::target_of(const Graph& graph, std::int64_t i) const {
  const Node& node = graph.nodes[static_cast<std::size_t>(i)];
  if (node.kind == NodeKind::kLogit) return {kFinalHook, T - 1, logit_vector(node.index), {}};
  SAES_ASSERT(node.kind == NodeKind::kFeature, "only logits and features are targets");
  const FeatureRef& f = feature_of(graph, i);
  const Dict& k = dicts[f.dict];
  const at::Tensor idx = at::tensor(std::vector<std::int64_t>{f.index}, at::kLong);
  Target t{k.in_hooks[static_cast<std::size_t>(f.source)], f.position,
           k.d->encoder_vectors(f.source, idx)[0].to(at::kDouble).cpu(), {}};
  if (k.sequence) t.weights = mixing_of(f);
  return t;
}

std::map<std::string, at::Tensor> State::frozen_forward(const at::Tensor& embed_in,
                                                        const std::vector<at::Tensor>& site_in,
                                                        const std::set<std::string>& hooks,
                                                        lm::GradMode mode) const {
  lm::HookSet hs;
  hs.replace("hook_embed", [&](const at::Tensor&) { return embed_in; });
  for (std::size_t s = 0; s < sites.size(); ++s) {
    hs.replace_output(sites[s].hook, [&, s](const at::Tensor&) { return site_in[s]; });
  }
  for (const auto& h : hooks) hs.capture(h);
  const at::Tensor toks = token_tensor.expand({embed_in.size(0), T});
  return model.forward(toks, nullptr, hs, mode, &frozen);
}

}  // namespace detail

using detail::Dict;
using detail::FeatureRef;
using detail::Site;
using detail::State;

ReplacementModel::ReplacementModel(const lm::Transformer& model, std::vector<std::int64_t> tokens,
                                   std::vector<ReplacementDictionary> dictionaries,
                                   bool zero_first_position)
    : state_(std::make_unique<State>(model)) {
  State& s = *state_;
  const auto& spec = model.spec();
  s.tokens = std::move(tokens);
  s.zero_first = zero_first_position;
  s.n_layers = spec.n_layers;
  s.T = static_cast<std::int64_t>(s.tokens.size());
  s.d = spec.d_model;
  SAES_CHECK(s.T >= 1, ConfigError, "prompt: needs at least one token");
  s.token_tensor = at::tensor(s.tokens, at::kLong).view({1, s.T});
  for (std::int64_t l = 0; l < s.n_layers; ++l) {
    s.sites.push_back({detail::block_hook(l, "hook_mlp_out"), l, false, {}, {}, {}, -1, 0});
  }

  lm::HookSet hooks;
  hooks.capture("hook_embed").capture(detail::kFinalHook).capture("logits");
  const auto layer_of = [&](const std::string& hook) {
    return (lm::hook_stage(spec, hook) - 1) / 2;  // stages 2L+1, 2L+2 belong to block L
  };
  // which site a label hook is, adding attention sites as dictionaries write them
  const auto site_of = [&](const std::string& name, const std::string& hook,
                           const std::string& in) -> std::size_t {
    const std::int64_t layer = layer_of(hook);
    if (hook == detail::block_hook(layer, "hook_mlp_out")) {
      SAES_CHECK(layer_of(in) == layer && lm::hook_stage(spec, in) <= 2 * layer + 2 && in != hook,
                 ConfigError,
                 "dictionary {}: reads {} for {}; it must read that layer's MLP input "
                 "(blocks.{}.hook_resid_mid or blocks.{}.ln2.hook_normalized)",
                 name, in, hook, layer, layer);
      return static_cast<std::size_t>(layer);
    }
    SAES_CHECK(hook == detail::block_hook(layer, "hook_attn_out"), ConfigError,
               "dictionary {}: writes {}, but a replacement dictionary writes MLP outputs "
               "(blocks.L.hook_mlp_out) or attention outputs (blocks.L.hook_attn_out)",
               name, hook);
    SAES_CHECK(in == detail::block_hook(layer, "hook_resid_pre") ||
                   in == detail::block_hook(layer, "ln1.hook_normalized"),
               ConfigError,
               "dictionary {}: reads {} for {}; it must read that layer's attention input "
               "(blocks.{}.hook_resid_pre or blocks.{}.ln1.hook_normalized)",
               name, in, hook, layer, layer);
    for (std::size_t i = static_cast<std::size_t>(s.n_layers); i < s.sites.size(); ++i)
      if (s.sites[i].hook == hook) return i;
    s.sites.push_back({hook, layer, true, {}, {}, {}, -1, 0});
    return s.sites.size() - 1;
  };
  for (const ReplacementDictionary& rd : dictionaries) {
    SAES_CHECK(rd.dictionary != nullptr, ConfigError, "dictionary {}: not loaded", rd.name);
    const auto& cfg = rd.dictionary->config();
    Dict k;
    k.d = rd.dictionary;
    k.name = rd.name;
    k.in_hooks = rd.dictionary->input_hooks();
    k.out_hooks = rd.dictionary->label_hooks();
    k.sequence = rd.dictionary->reads_sequences();
    SAES_CHECK(cfg.d_model == s.d, ConfigError,
               "dictionary {}: d_model {} does not match the model's {}", rd.name, cfg.d_model,
               s.d);
    SAES_CHECK(!rd.dictionary->feature_shard().sharded(), ConfigError,
               "dictionary {}: circuit tracing needs the whole dictionary in one process", rd.name);
    SAES_CHECK(k.in_hooks.size() == k.out_hooks.size(), ConfigError,
               "dictionary {}: reads {} hooks and writes {}; a replacement writes one output per "
               "input it reads",
               rd.name, k.in_hooks.size(), k.out_hooks.size());
    for (std::size_t t = 0; t < k.out_hooks.size(); ++t) {
      const std::size_t site = site_of(rd.name, k.out_hooks[t], k.in_hooks[t]);
      Site& w = s.sites[site];
      SAES_CHECK(w.dict < 0, ConfigError, "dictionaries {} and {} both write {}",
                 w.dict >= 0 ? s.dicts[static_cast<std::size_t>(w.dict)].name : rd.name, rd.name,
                 w.hook);
      w.dict = static_cast<int>(s.dicts.size());
      w.label = static_cast<std::int64_t>(t);
      k.attention = w.attention;
      k.source_layer.push_back(w.layer);
      k.target_site.push_back(site);
      hooks.capture(k.in_hooks[t]);
    }
    s.dicts.push_back(std::move(k));
  }
  std::stable_sort(s.sites.begin() + s.n_layers, s.sites.end(),
                   [](const Site& a, const Site& b) { return a.layer < b.layer; });
  for (std::size_t i = 0; i < s.sites.size(); ++i) {  // the sort moved attention sites
    if (s.sites[i].dict >= 0) {
      s.dicts[static_cast<std::size_t>(s.sites[i].dict)]
          .target_site[static_cast<std::size_t>(s.sites[i].label)] = i;
    }
    hooks.capture(s.sites[i].hook);
  }

  s.frozen.record = true;
  auto out = model.forward(s.token_tensor, nullptr, hooks, lm::GradMode::kNoGrad, &s.frozen);
  s.frozen.record = false;
  for (auto& [name, t] : out) s.captured[name] = t.to(at::kFloat);
  s.embed = s.captured.at("hook_embed")[0];
  s.logits = s.captured.at("logits")[0];  // captured with the batch dimension: [1, T, d_vocab]
  for (Site& site : s.sites) site.out = s.captured.at(site.hook)[0];

  // features, reconstructions, errors and constants per site
  const at::NoGradGuard no_grad;
  std::vector<at::Tensor> recon(s.sites.size()), bias(s.sites.size());
  for (std::size_t k = 0; k < s.dicts.size(); ++k) {
    const dictionaries::HookActs raw = s.inputs(k);
    if (s.dicts[k].sequence) s.dicts[k].input = s.dicts[k].d->prepare_input(raw);
    auto [f, f3] = s.encode(k, raw);
    s.dicts[k].features = f3.to(at::kFloat).cpu();
    const at::Tensor r = s.reconstruct(k, raw, f).to(at::kFloat);
    const at::Tensor r0 = s.reconstruct(k, raw, at::zeros_like(f)).to(at::kFloat);
    for (std::size_t t = 0; t < s.dicts[k].out_hooks.size(); ++t) {
      const std::size_t site = s.dicts[k].target_site[t];
      recon[site] = r[static_cast<std::int64_t>(t)];
      bias[site] = r0[static_cast<std::int64_t>(t)];
    }
  }
  for (std::size_t i = 0; i < s.sites.size(); ++i) {
    Site& site = s.sites[i];
    const bool replaced = recon[i].defined();
    site.error = replaced ? site.out - recon[i] : site.out.clone();
    site.constant = replaced ? bias[i].clone() : at::zeros_like(site.out);
    if (s.zero_first) {  // position 0: a constant, neither features nor error
      site.error.select(0, 0).zero_();
      site.constant.select(0, 0).copy_(site.out.select(0, 0));
    }
  }
  for (std::size_t k = 0; k < s.dicts.size(); ++k) {
    const at::Tensor& f3 = s.dicts[k].features;
    // [n, 3]: position, source, index; LibTorch 1.13's CPU nonzero is column-major (strides
    // (1, n)), so it is made contiguous before its rows are read through the data pointer
    const at::Tensor nz = at::nonzero(f3).contiguous();
    const auto* p = nz.data_ptr<std::int64_t>();
    for (std::int64_t e = 0; e < nz.size(0); ++e) {
      const std::int64_t pos = p[3 * e], src = p[3 * e + 1], idx = p[3 * e + 2];
      s.features.push_back({k, src, s.dicts[k].source_layer[static_cast<std::size_t>(src)],
                            s.dicts[k].attention, pos, idx, f3[pos][src][idx].item<double>()});
    }
  }
  std::sort(s.features.begin(), s.features.end(), [](const FeatureRef& a, const FeatureRef& b) {
    return std::make_tuple(a.layer, !a.attention, a.position, a.index, a.dict) <
           std::make_tuple(b.layer, !b.attention, b.position, b.index, b.dict);
  });
}

ReplacementModel::~ReplacementModel() = default;

const at::Tensor& ReplacementModel::logits() const { return state_->logits; }

at::Tensor ReplacementModel::replacement_logits() const {
  const State& s = *state_;
  const at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> live;  // this forward's dictionary inputs, [1, T, d]
  lm::HookSet hs;
  for (const Dict& k : s.dicts) {
    for (const auto& h : k.in_hooks) {
      hs.replace(h, [&live, h](const at::Tensor& v) {
        live[h] = v.to(at::kFloat);
        return v;
      });
    }
  }
  for (const Site& site : s.sites) {
    hs.replace(site.hook, [&s, &live, &site](const at::Tensor& v) {
      if (site.dict < 0) return (site.error + site.constant).unsqueeze(0).to(v.scalar_type());
      const auto k = static_cast<std::size_t>(site.dict);
      const dictionaries::HookActs raw = s.inputs(k, live);  // layers not reached: the prompt's
      const at::Tensor f = s.encode(k, raw).first;
      at::Tensor out = s.reconstruct(k, raw, f)[site.label].to(at::kFloat) + site.error;
      if (s.zero_first) out.select(0, 0).copy_(site.constant.select(0, 0));
      return out.unsqueeze(0).to(v.scalar_type());
    });
  }
  hs.capture("logits");
  return s.model.forward(s.token_tensor, nullptr, hs, lm::GradMode::kNoGrad, &s.frozen)
      .at("logits")[0]
      .to(at::kFloat);
}

at::Tensor ReplacementModel::target_values(const Graph& graph) const {
  const State& s = *state_;
  at::Tensor out = at::zeros({graph.n_nodes()}, at::kDouble);
  for (std::int64_t i = 0; i < graph.n_nodes(); ++i) {
    const Node& n = graph.nodes[static_cast<std::size_t>(i)];
    if (n.kind != NodeKind::kLogit && n.kind != NodeKind::kFeature) continue;
    const detail::Target t = s.target_of(graph, i);
    out[i] = t.read(s.captured.at(t.hook)[0]);
  }
  return out;
}

at::Tensor ReplacementModel::target_constants(const Graph& graph) const {
  const State& s = *state_;
  const at::NoGradGuard no_grad;
  std::set<std::string> hooks;
  std::vector<std::pair<std::int64_t, detail::Target>> targets;
  for (std::int64_t i = 0; i < graph.n_nodes(); ++i) {
    const Node& n = graph.nodes[static_cast<std::size_t>(i)];
    if (n.kind != NodeKind::kLogit && n.kind != NodeKind::kFeature) continue;
    targets.emplace_back(i, s.target_of(graph, i));
    hooks.insert(targets.back().second.hook);
  }
  std::vector<at::Tensor> m;
  for (const Site& site : s.sites) m.push_back(site.constant.unsqueeze(0));
  const auto acts =
      s.frozen_forward(at::zeros_like(s.embed).unsqueeze(0), m, hooks, lm::GradMode::kNoGrad);
  at::Tensor out = at::zeros({graph.n_nodes()}, at::kDouble);
  for (const auto& [i, t] : targets) out[i] = t.read(acts.at(t.hook)[0]);
  return out;
}

}  // namespace saes::circuits

// ReplacementModel: the prompt's frozen forward, the dictionaries' features, error and constant
// nodes per (layer, position), and the batched backward passes that give the adjacency rows.
#include "saes/circuits/attribution.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>
#include <utility>

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/format.h>

#include "saes/circuits/pruning.h"
#include "saes/core/error.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/lm/hooks.h"
#include "saes/lm/transformer.h"

namespace saes::circuits {
namespace {

std::string mlp_out_hook(std::int64_t layer) {
  return fmt::format("blocks.{}.hook_mlp_out", layer);
}

constexpr const char* kFinalHook = "ln_final.hook_normalized";

/// One dictionary with its hooks mapped to model layers and its features on the prompt.
struct Dict {
  const dictionaries::SparseDictionary* d = nullptr;
  std::string name;
  std::vector<std::string> in_hooks, out_hooks;
  std::vector<std::int64_t> source_layer;  ///< model layer of in_hooks[l]
  std::vector<std::int64_t> target_layer;  ///< model layer of out_hooks[t]
  at::Tensor features;                     ///< [T, source layers, d_sae] float32
};

/// A feature node of the graph and where its activation lives.
struct FeatureRef {
  std::size_t dict = 0;
  std::int64_t source = 0;  ///< index into Dict::in_hooks
  std::int64_t layer = 0;   ///< model layer
  std::int64_t position = 0;
  std::int64_t index = 0;
  double activation = 0.0;
};

Node make_node(NodeKind kind, std::int64_t layer, std::int64_t position, std::int64_t index) {
  Node n;
  n.kind = kind;
  n.layer = layer;
  n.position = position;
  n.index = index;
  return n;
}

/// What one target row reads: a captured hook at a position, contracted with `vector`.
struct Target {
  std::string hook;
  std::int64_t position = 0;
  at::Tensor vector;  ///< [d_model] float64
};

}  // namespace

struct ReplacementModel::State {
  const lm::Transformer& model;
  std::vector<std::int64_t> tokens;
  at::Tensor token_tensor;  ///< [1, T]
  bool zero_first = true;
  mutable lm::FrozenState frozen;
  std::int64_t n_layers = 0, T = 0, d = 0;
  std::map<std::string, at::Tensor> captured;        ///< the recording forward's hooks, [T, ...]
  at::Tensor embed;                                  ///< [T, d]
  at::Tensor logits;                                 ///< [T, d_vocab]: the recording forward's
  std::vector<at::Tensor> mlp_out, error, constant;  ///< per model layer [T, d]
  std::vector<std::pair<int, std::int64_t>> writer;  ///< per layer: (dict, label index) or -1
  std::vector<Dict> dicts;
  std::vector<FeatureRef> features;  ///< sorted by (layer, position, index)

  explicit State(const lm::Transformer& m) : model(m) {}

  /// The features of dictionary `k` on per-hook rows `raw` (position 0 zeroed when asked):
  /// the dictionary's own layout and [T, source layers, d_sae].
  std::pair<at::Tensor, at::Tensor> encode(std::size_t k, const dictionaries::HookActs& raw) const {
    const auto* dict = dicts[k].d;
    at::Tensor f = dict->encode(dict->prepare_input(raw));
    if (zero_first) f.select(0, 0).zero_();
    return {f, f.view({T, static_cast<std::int64_t>(dicts[k].in_hooks.size()), -1})};
  }

  /// The reconstruction of every label hook of dictionary `k` from its features f: [targets, T, d].
  at::Tensor reconstruct(std::size_t k, const dictionaries::HookActs& raw,
                         const at::Tensor& f) const {
    const auto* dict = dicts[k].d;
    at::Tensor out = dict->reconstruct(dict->prepare_input(raw), f);
    return dicts[k].out_hooks.size() == 1 ? out.unsqueeze(0) : out;
  }

  dictionaries::HookActs raw_inputs() const {
    dictionaries::HookActs raw;
    for (const Dict& k : dicts) {
      for (const auto& h : k.in_hooks) raw[h] = captured.at(h)[0];
    }
    return raw;
  }

  /// The demeaned unembedding direction of token v read at ln_final.hook_normalized: the norm's
  /// weight times (W_U[v] − mean_u W_U[u]); the logit target is its dot with the normalized row.
  at::Tensor logit_vector(std::int64_t v) const {
    const auto& spec = model.spec();
    const at::Tensor& w_u =
        model.weight(spec.tied_embeddings ? std::string("embed.W_E") : std::string("unembed.W_U"));
    if (!unembed_mean.defined()) unembed_mean = at::mean(w_u.to(at::kDouble), {0});  // once
    const at::Tensor u = w_u[v].to(at::kDouble) - unembed_mean;
    return u * model.weight("ln_final.w").to(at::kDouble);
  }
  mutable at::Tensor unembed_mean;  ///< mean over the vocabulary of the unembedding rows

  /// The target of node `i` of `graph`: a graph from attribute() has feature i at node i, so
  /// that is tried first; any other graph's feature nodes are looked up.
  Target target_of(const Graph& graph, std::int64_t i) const {
    const Node& node = graph.nodes[static_cast<std::size_t>(i)];
    if (node.kind == NodeKind::kLogit) return {kFinalHook, T - 1, logit_vector(node.index)};
    SAES_ASSERT(node.kind == NodeKind::kFeature, "only logits and features are targets");
    const auto matches = [&](const FeatureRef& f) {
      return f.layer == node.layer && f.position == node.position && f.index == node.index &&
             dicts[f.dict].name == node.dictionary;
    };
    const FeatureRef* found = nullptr;
    if (i < static_cast<std::int64_t>(features.size()) &&
        matches(features[static_cast<std::size_t>(i)])) {
      found = &features[static_cast<std::size_t>(i)];
    }
    for (std::size_t c = 0; found == nullptr && c < features.size(); ++c) {
      if (matches(features[c])) found = &features[c];
    }
    SAES_CHECK(found != nullptr, DataError, "feature node {}/{}/{} is not active on this prompt",
               node.layer, node.position, node.index);
    const Dict& k = dicts[found->dict];
    const at::Tensor idx = at::tensor(std::vector<std::int64_t>{found->index}, at::kLong);
    return {k.in_hooks[static_cast<std::size_t>(found->source)], found->position,
            k.d->encoder_vectors(found->source, idx)[0].to(at::kDouble).cpu()};
  }

  /// Frozen forward over `rows` copies of the prompt with the embedding and the MLP outputs
  /// replaced by `embed_in` / `mlp_in` ([rows, T, d] each), capturing `hooks`.
  std::map<std::string, at::Tensor> frozen_forward(const at::Tensor& embed_in,
                                                   const std::vector<at::Tensor>& mlp_in,
                                                   const std::set<std::string>& hooks,
                                                   lm::GradMode mode) const {
    lm::HookSet hs;
    hs.replace("hook_embed", [&](const at::Tensor&) { return embed_in; });
    for (std::int64_t l = 0; l < n_layers; ++l) {
      hs.replace_output(mlp_out_hook(l), [&, l](const at::Tensor&) { return mlp_in[l]; });
    }
    for (const auto& h : hooks) hs.capture(h);
    const at::Tensor toks = token_tensor.expand({embed_in.size(0), T});
    return model.forward(toks, nullptr, hs, mode, &frozen);
  }

  /// Adjacency rows [targets.size(), n_nodes] of `targets` (one backward per batch of rows).
  at::Tensor rows(const std::vector<Target>& targets, std::int64_t n_nodes,
                  std::int64_t batch_size) const;
  mutable std::int64_t backward_passes = 0;  ///< counted by rows()

  /// The feature columns grouped per (dictionary, source, target layer): the rows() contraction
  /// operands, built once per prompt.
  struct SourceGroup {
    std::int64_t layer;
    at::Tensor columns, positions, decoders;  // [n], [n], [n, d] float64 (scaled by activation)
  };
  const std::vector<SourceGroup>& source_groups() const;
  mutable std::vector<SourceGroup> groups_;
};

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
  s.writer.assign(static_cast<std::size_t>(s.n_layers), {-1, 0});

  lm::HookSet hooks;
  hooks.capture("hook_embed").capture(kFinalHook).capture("logits");
  for (std::int64_t l = 0; l < s.n_layers; ++l) hooks.capture(mlp_out_hook(l));
  const auto layer_of = [&](const std::string& hook) {
    return (lm::hook_stage(spec, hook) - 1) / 2;  // stages 2L+1, 2L+2 belong to block L
  };
  for (const ReplacementDictionary& rd : dictionaries) {
    SAES_CHECK(rd.dictionary != nullptr, ConfigError, "dictionary {}: not loaded", rd.name);
    const auto& cfg = rd.dictionary->config();
    Dict k;
    k.d = rd.dictionary;
    k.name = rd.name;
    k.in_hooks = rd.dictionary->input_hooks();
    k.out_hooks = rd.dictionary->label_hooks();
    SAES_CHECK(cfg.d_model == s.d, ConfigError,
               "dictionary {}: d_model {} does not match the model's {}", rd.name, cfg.d_model,
               s.d);
    SAES_CHECK(!rd.dictionary->feature_shard().sharded(), ConfigError,
               "dictionary {}: circuit tracing needs the whole dictionary in one process", rd.name);
    SAES_CHECK(k.in_hooks.size() == k.out_hooks.size(), ConfigError,
               "dictionary {}: reads {} hooks and writes {}; a replacement writes one MLP output "
               "per input it reads",
               rd.name, k.in_hooks.size(), k.out_hooks.size());
    for (std::size_t t = 0; t < k.out_hooks.size(); ++t) {
      const std::int64_t layer = layer_of(k.out_hooks[t]);
      SAES_CHECK(k.out_hooks[t] == mlp_out_hook(layer), ConfigError,
                 "dictionary {}: writes {}, but a replacement dictionary writes MLP outputs "
                 "(blocks.L.hook_mlp_out)",
                 rd.name, k.out_hooks[t]);
      SAES_CHECK(layer_of(k.in_hooks[t]) == layer &&
                     lm::hook_stage(spec, k.in_hooks[t]) <= 2 * layer + 2 &&
                     k.in_hooks[t] != mlp_out_hook(layer),
                 ConfigError,
                 "dictionary {}: reads {} for {}; it must read that layer's MLP input "
                 "(blocks.{}.hook_resid_mid or blocks.{}.ln2.hook_normalized)",
                 rd.name, k.in_hooks[t], k.out_hooks[t], layer, layer);
      auto& w = s.writer[static_cast<std::size_t>(layer)];
      SAES_CHECK(w.first<0, ConfigError, "dictionaries {} and {} both replace layer {}'s MLP",
                         s.dicts.size()> static_cast<std::size_t>(std::max(w.first, 0))
                     ? s.dicts[static_cast<std::size_t>(std::max(w.first, 0))].name
                     : rd.name,
                 rd.name, layer);
      w = {static_cast<int>(s.dicts.size()), static_cast<std::int64_t>(t)};
      k.source_layer.push_back(layer);
      k.target_layer.push_back(layer);
      hooks.capture(k.in_hooks[t]);
    }
    s.dicts.push_back(std::move(k));
  }

  s.frozen.record = true;
  auto out = model.forward(s.token_tensor, nullptr, hooks, lm::GradMode::kNoGrad, &s.frozen);
  s.frozen.record = false;
  for (auto& [name, t] : out) s.captured[name] = t.to(at::kFloat);
  s.embed = s.captured.at("hook_embed")[0];
  s.logits = s.captured.at("logits")[0];  // captured with the batch dimension: [1, T, d_vocab]
  for (std::int64_t l = 0; l < s.n_layers; ++l) {
    s.mlp_out.push_back(s.captured.at(mlp_out_hook(l))[0]);
  }

  // features, reconstructions, errors and constants per layer
  const at::NoGradGuard no_grad;
  const dictionaries::HookActs raw = s.raw_inputs();
  std::vector<at::Tensor> recon(static_cast<std::size_t>(s.n_layers)),
      bias(static_cast<std::size_t>(s.n_layers));
  for (std::size_t k = 0; k < s.dicts.size(); ++k) {
    auto [f, f3] = s.encode(k, raw);
    s.dicts[k].features = f3.to(at::kFloat).cpu();
    const at::Tensor r = s.reconstruct(k, raw, f).to(at::kFloat);
    const at::Tensor r0 = s.reconstruct(k, raw, at::zeros_like(f)).to(at::kFloat);
    for (std::size_t t = 0; t < s.dicts[k].out_hooks.size(); ++t) {
      const std::int64_t layer = s.dicts[k].target_layer[t];
      recon[static_cast<std::size_t>(layer)] = r[static_cast<std::int64_t>(t)];
      bias[static_cast<std::size_t>(layer)] = r0[static_cast<std::int64_t>(t)];
    }
  }
  for (std::int64_t l = 0; l < s.n_layers; ++l) {
    const at::Tensor& m = s.mlp_out[static_cast<std::size_t>(l)];
    const bool replaced = recon[static_cast<std::size_t>(l)].defined();
    at::Tensor err = replaced ? m - recon[static_cast<std::size_t>(l)] : m.clone();
    at::Tensor con = replaced ? bias[static_cast<std::size_t>(l)].clone() : at::zeros_like(m);
    if (s.zero_first) {  // position 0: a constant, neither features nor error
      err.select(0, 0).zero_();
      con.select(0, 0).copy_(m.select(0, 0));
    }
    s.error.push_back(err);
    s.constant.push_back(con);
  }
  for (std::size_t k = 0; k < s.dicts.size(); ++k) {
    const at::Tensor& f3 = s.dicts[k].features;
    // [n, 3]: position, source, index; LibTorch 1.13's CPU nonzero is column-major (strides
    // (1, n)), so it is made contiguous before its rows are read through the data pointer
    const at::Tensor nz = at::nonzero(f3).contiguous();
    const auto* p = nz.data_ptr<std::int64_t>();
    for (std::int64_t e = 0; e < nz.size(0); ++e) {
      const std::int64_t pos = p[3 * e], src = p[3 * e + 1], idx = p[3 * e + 2];
      s.features.push_back({k, src, s.dicts[k].source_layer[static_cast<std::size_t>(src)], pos,
                            idx, f3[pos][src][idx].item<double>()});
    }
  }
  std::sort(s.features.begin(), s.features.end(), [](const FeatureRef& a, const FeatureRef& b) {
    return std::tie(a.layer, a.position, a.index, a.dict) <
           std::tie(b.layer, b.position, b.index, b.dict);
  });
}

ReplacementModel::~ReplacementModel() = default;

const at::Tensor& ReplacementModel::logits() const { return state_->logits; }

at::Tensor ReplacementModel::replacement_logits() const {
  const State& s = *state_;
  const at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> live;  // this forward's MLP inputs, [T, d]
  lm::HookSet hs;
  for (const Dict& k : s.dicts) {
    for (const auto& h : k.in_hooks) {
      hs.replace(h, [&live, h](const at::Tensor& v) {
        live[h] = v[0].to(at::kFloat);
        return v;
      });
    }
  }
  for (std::int64_t l = 0; l < s.n_layers; ++l) {
    hs.replace(mlp_out_hook(l), [&s, &live, l](const at::Tensor& v) {
      const auto [k, t] = s.writer[static_cast<std::size_t>(l)];
      if (k < 0) return (s.error[l] + s.constant[l]).unsqueeze(0).to(v.scalar_type());
      dictionaries::HookActs raw = s.raw_inputs();  // layers not reached yet: the prompt's
      for (const auto& [h, x] : live) raw[h] = x;
      const auto ku = static_cast<std::size_t>(k);
      const at::Tensor f = s.encode(ku, raw).first;
      at::Tensor out = s.reconstruct(ku, raw, f)[t].to(at::kFloat) + s.error[l];
      if (s.zero_first) out.select(0, 0).copy_(s.constant[l].select(0, 0));
      return out.unsqueeze(0).to(v.scalar_type());
    });
  }
  hs.capture("logits");
  return s.model.forward(s.token_tensor, nullptr, hs, lm::GradMode::kNoGrad, &s.frozen)
      .at("logits")[0]
      .to(at::kFloat);
}

const std::vector<ReplacementModel::State::SourceGroup>& ReplacementModel::State::source_groups()
    const {
  if (!groups_.empty() || features.empty()) return groups_;
  const auto n_features = static_cast<std::int64_t>(features.size());
  std::vector<SourceGroup>& groups = groups_;
  for (std::size_t k = 0; k < dicts.size(); ++k) {
    for (std::size_t src = 0; src < dicts[k].in_hooks.size(); ++src) {
      std::vector<std::int64_t> cols, pos, idx;
      std::vector<double> act;
      for (std::int64_t c = 0; c < n_features; ++c) {
        const FeatureRef& f = features[static_cast<std::size_t>(c)];
        if (f.dict != k || f.source != static_cast<std::int64_t>(src)) continue;
        cols.push_back(c);
        pos.push_back(f.position);
        idx.push_back(f.index);
        act.push_back(f.activation);
      }
      if (cols.empty()) continue;
      const at::Tensor idx_t = at::tensor(idx, at::kLong);
      const at::Tensor a = at::tensor(act, at::kDouble).unsqueeze(1);
      for (std::size_t t = src; t < dicts[k].out_hooks.size(); ++t) {
        const at::Tensor dec = dicts[k]
                                   .d
                                   ->decoder_vectors(static_cast<std::int64_t>(src),
                                                     static_cast<std::int64_t>(t), idx_t)
                                   .to(at::kDouble)
                                   .cpu();
        groups.push_back({dicts[k].target_layer[t], at::tensor(cols, at::kLong),
                          at::tensor(pos, at::kLong), dec * a});
      }
    }
  }
  return groups_;
}

at::Tensor ReplacementModel::State::rows(const std::vector<Target>& targets, std::int64_t n_nodes,
                                         std::int64_t batch_size) const {
  const auto n_targets = static_cast<std::int64_t>(targets.size());
  at::Tensor out = at::zeros({n_targets, n_nodes}, at::kFloat);
  const auto n_features = static_cast<std::int64_t>(features.size());
  const std::int64_t error_col = n_features, embed_col = n_features + n_layers * T;
  const std::vector<SourceGroup>& groups = source_groups();
  for (std::int64_t b0 = 0; b0 < n_targets; b0 += batch_size) {
    const std::int64_t nb = std::min(batch_size, n_targets - b0);
    const at::Tensor e = embed.unsqueeze(0).expand({nb, T, d}).clone().requires_grad_(true);
    std::vector<at::Tensor> m;
    for (std::int64_t l = 0; l < n_layers; ++l) {
      m.push_back(mlp_out[static_cast<std::size_t>(l)]
                      .unsqueeze(0)
                      .expand({nb, T, d})
                      .clone()
                      .requires_grad_(true));
    }
    std::set<std::string> hooks;
    for (std::int64_t b = 0; b < nb; ++b) hooks.insert(targets[b0 + b].hook);
    const at::AutoGradMode grad(true);
    const auto acts = frozen_forward(e, m, hooks, lm::GradMode::kEnabled);
    at::Tensor objective = at::zeros({}, at::kDouble);
    for (std::int64_t b = 0; b < nb; ++b) {
      const Target& tg = targets[b0 + b];
      objective = objective + at::sum(acts.at(tg.hook)[b][tg.position].to(at::kDouble) * tg.vector);
    }
    objective.backward();
    ++backward_passes;
    const at::Tensor ge = e.grad().to(at::kDouble);  // [nb, T, d]
    at::Tensor block = out.narrow(0, b0, nb);
    block.narrow(1, embed_col, T).copy_(at::sum(ge * embed.to(at::kDouble).unsqueeze(0), {2}));
    std::vector<at::Tensor> gm(static_cast<std::size_t>(n_layers));
    for (std::int64_t l = 0; l < n_layers; ++l) {
      const at::Tensor& g = m[static_cast<std::size_t>(l)].grad();
      if (!g.defined()) continue;  // the targets read this layer's MLP input or earlier
      gm[static_cast<std::size_t>(l)] = g.to(at::kDouble);
      block.narrow(1, error_col + l * T, T)
          .copy_(at::sum(gm[l] * error[l].to(at::kDouble).unsqueeze(0), {2}));
    }
    for (const SourceGroup& grp : groups) {
      const at::Tensor& gl = gm[static_cast<std::size_t>(grp.layer)];
      if (!gl.defined()) continue;
      const at::Tensor contrib =
          at::sum(gl.index_select(1, grp.positions) * grp.decoders.unsqueeze(0), {2});  // [nb, n]
      block.index_add_(1, grp.columns, contrib.to(at::kFloat));
    }
  }
  return out;
}

Graph ReplacementModel::attribute(const AttributionOptions& options) const {
  const State& s = *state_;
  SAES_CHECK(options.batch_size >= 1, ConfigError, "batch_size: expected >= 1, got {}",
             options.batch_size);
  SAES_CHECK(options.max_feature_nodes >= 0, ConfigError,
             "max_feature_nodes: expected >= 0 (0: every active feature), got {}",
             options.max_feature_nodes);
  Graph g;
  g.tokens = s.tokens;
  g.n_layers = s.n_layers;
  g.desired_logit_prob = options.desired_logit_prob;
  g.max_n_logits = options.max_n_logits;
  g.max_feature_nodes = options.max_feature_nodes;
  g.batch_size = options.batch_size;
  for (const FeatureRef& f : s.features) {
    Node n;
    n.kind = NodeKind::kFeature;
    n.layer = f.layer;
    n.position = f.position;
    n.index = f.index;
    n.activation = f.activation;
    n.dictionary = s.dicts[f.dict].name;
    g.nodes.push_back(n);
  }
  for (std::int64_t l = 0; l < s.n_layers; ++l) {
    for (std::int64_t p = 0; p < s.T; ++p) g.nodes.push_back(make_node(NodeKind::kError, l, p, -1));
  }
  for (std::int64_t p = 0; p < s.T; ++p) {
    g.nodes.push_back(
        make_node(NodeKind::kEmbedding, -1, p, s.tokens[static_cast<std::size_t>(p)]));
  }
  // logit targets: the named tokens, or the most probable ones up to the probability mass
  const at::Tensor probs = at::softmax(logits()[s.T - 1].to(at::kDouble), 0);
  std::vector<std::int64_t> ids = options.target_tokens;
  if (ids.empty()) {
    SAES_CHECK(options.desired_logit_prob > 0 && options.desired_logit_prob <= 1, ConfigError,
               "desired_logit_prob: expected in (0, 1], got {}", options.desired_logit_prob);
    SAES_CHECK(options.max_n_logits >= 1, ConfigError, "max_n_logits: expected >= 1, got {}",
               options.max_n_logits);
    const auto [top_p, top_i] = at::topk(probs, std::min(options.max_n_logits, probs.size(0)));
    const at::Tensor cum = at::cumsum(top_p, 0);
    for (std::int64_t i = 0; i < top_i.size(0); ++i) {
      ids.push_back(top_i[i].item<std::int64_t>());
      if (cum[i].item<double>() >= options.desired_logit_prob) break;
    }
  }
  for (const std::int64_t v : ids) {
    SAES_CHECK(v >= 0 && v < probs.size(0), ConfigError,
               "targets: token id {} is outside the vocabulary (0..{})", v, probs.size(0) - 1);
    Node n = make_node(NodeKind::kLogit, -1, s.T - 1, v);
    n.probability = probs[v].item<double>();
    g.nodes.push_back(n);
  }
  const std::int64_t N = g.n_nodes();
  const auto n_features = static_cast<std::int64_t>(s.features.size());
  const std::int64_t first_logit = N - static_cast<std::int64_t>(ids.size());
  g.adjacency = at::zeros({N, N}, at::kFloat);
  const std::int64_t passes_before = s.backward_passes;

  std::vector<Target> logit_targets;
  for (std::int64_t i = first_logit; i < N; ++i) logit_targets.push_back(s.target_of(g, i));
  g.adjacency.narrow(0, first_logit, N - first_logit)
      .copy_(s.rows(logit_targets, N, options.batch_size));

  // feature rows: all of them, or greedily by influence through the rows computed so far
  const std::int64_t budget =
      options.max_feature_nodes == 0 ? n_features : std::min(options.max_feature_nodes, n_features);
  std::vector<bool> visited(static_cast<std::size_t>(n_features), false);
  std::int64_t n_visited = 0;
  while (n_visited < budget) {
    std::vector<std::int64_t> pick;
    if (budget == n_features) {
      for (std::int64_t c = n_visited; c < std::min(n_features, n_visited + options.batch_size);
           ++c) {
        pick.push_back(c);
      }
    } else {
      const at::Tensor infl = node_influence(g.adjacency, g.logit_weights());
      std::vector<std::int64_t> order(static_cast<std::size_t>(n_features));
      std::iota(order.begin(), order.end(), 0);
      const double* iv = infl.data_ptr<double>();
      std::stable_sort(order.begin(), order.end(),
                       [&](std::int64_t a, std::int64_t b) { return iv[a] > iv[b]; });
      for (const std::int64_t c : order) {
        if (static_cast<std::int64_t>(pick.size()) >=
            std::min(options.batch_size, budget - n_visited)) {
          break;
        }
        if (!visited[static_cast<std::size_t>(c)]) pick.push_back(c);
      }
    }
    std::vector<Target> targets;
    for (const std::int64_t c : pick) {
      targets.push_back(s.target_of(g, c));
      visited[static_cast<std::size_t>(c)] = true;
    }
    const at::Tensor r = s.rows(targets, N, options.batch_size);
    for (std::size_t i = 0; i < pick.size(); ++i) {
      g.adjacency[pick[i]].copy_(r[static_cast<std::int64_t>(i)]);
    }
    n_visited += static_cast<std::int64_t>(pick.size());
  }
  g.backward_passes = s.backward_passes - passes_before;
  return g;
}

at::Tensor ReplacementModel::target_values(const Graph& graph) const {
  const State& s = *state_;
  at::Tensor out = at::zeros({graph.n_nodes()}, at::kDouble);
  for (std::int64_t i = 0; i < graph.n_nodes(); ++i) {
    const Node& n = graph.nodes[static_cast<std::size_t>(i)];
    if (n.kind != NodeKind::kLogit && n.kind != NodeKind::kFeature) continue;
    const Target t = s.target_of(graph, i);
    out[i] = at::sum(s.captured.at(t.hook)[0][t.position].to(at::kDouble) * t.vector);
  }
  return out;
}

at::Tensor ReplacementModel::target_constants(const Graph& graph) const {
  const State& s = *state_;
  const at::NoGradGuard no_grad;
  std::set<std::string> hooks;
  std::vector<std::pair<std::int64_t, Target>> targets;
  for (std::int64_t i = 0; i < graph.n_nodes(); ++i) {
    const Node& n = graph.nodes[static_cast<std::size_t>(i)];
    if (n.kind != NodeKind::kLogit && n.kind != NodeKind::kFeature) continue;
    targets.emplace_back(i, s.target_of(graph, i));
    hooks.insert(targets.back().second.hook);
  }
  std::vector<at::Tensor> m;
  for (const at::Tensor& c : s.constant) m.push_back(c.unsqueeze(0));
  const auto acts =
      s.frozen_forward(at::zeros_like(s.embed).unsqueeze(0), m, hooks, lm::GradMode::kNoGrad);
  at::Tensor out = at::zeros({graph.n_nodes()}, at::kDouble);
  for (const auto& [i, t] : targets) {
    out[i] = at::sum(acts.at(t.hook)[0][t.position].to(at::kDouble) * t.vector);
  }
  return out;
}

}  // namespace saes::circuits

// The attribution itself: batched backward passes through the frozen replacement model give the
// adjacency rows of the targets (logits, chosen features) and of the selected features.
#include <algorithm>
#include <numeric>

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>

#include "saes/circuits/attribution.h"
#include "saes/circuits/attribution_state.h"
#include "saes/circuits/pruning.h"
#include "saes/core/error.h"

namespace saes::circuits {
namespace detail {

const std::vector<State::SourceGroup>& State::source_groups() const {
  if (!groups_.empty() || features.empty()) return groups_;
  const auto n_features = static_cast<std::int64_t>(features.size());
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
        groups_.push_back({dicts[k].target_site[t], at::tensor(cols, at::kLong),
                           at::tensor(pos, at::kLong), dec * a});
      }
    }
  }
  return groups_;
}

at::Tensor State::rows(const std::vector<Target>& targets, std::int64_t n_nodes,
                       std::int64_t batch_size) const {
  const auto n_targets = static_cast<std::int64_t>(targets.size());
  at::Tensor out = at::zeros({n_targets, n_nodes}, at::kFloat);
  const std::vector<SourceGroup>& groups = source_groups();
  for (std::int64_t b0 = 0; b0 < n_targets; b0 += batch_size) {
    const std::int64_t nb = std::min(batch_size, n_targets - b0);
    const at::Tensor e = embed.unsqueeze(0).expand({nb, T, d}).clone().requires_grad_(true);
    std::vector<at::Tensor> m;
    for (const Site& site : sites) {
      m.push_back(site.out.unsqueeze(0).expand({nb, T, d}).clone().requires_grad_(true));
    }
    std::set<std::string> hooks;
    for (std::int64_t b = 0; b < nb; ++b) hooks.insert(targets[b0 + b].hook);
    const at::AutoGradMode grad(true);
    const auto acts = frozen_forward(e, m, hooks, lm::GradMode::kEnabled);
    at::Tensor objective = at::zeros({}, at::kDouble);
    for (std::int64_t b = 0; b < nb; ++b) {
      const Target& tg = targets[b0 + b];
      objective = objective + tg.read(acts.at(tg.hook)[b]);
    }
    objective.backward();
    ++backward_passes;
    const at::Tensor ge = e.grad().to(at::kDouble);  // [nb, T, d]
    at::Tensor block = out.narrow(0, b0, nb);
    block.narrow(1, embed_column(), T)
        .copy_(at::sum(ge * embed.to(at::kDouble).unsqueeze(0), {2}));
    std::vector<at::Tensor> gm(sites.size());
    for (std::size_t s = 0; s < sites.size(); ++s) {
      const at::Tensor& g = m[s].grad();
      if (!g.defined()) continue;  // the targets read this output's input or earlier
      gm[s] = g.to(at::kDouble);
      block.narrow(1, error_column(s), T)
          .copy_(at::sum(gm[s] * sites[s].error.to(at::kDouble).unsqueeze(0), {2}));
    }
    for (const SourceGroup& grp : groups) {
      const at::Tensor& gl = gm[grp.site];
      if (!gl.defined()) continue;
      const at::Tensor contrib =
          at::sum(gl.index_select(1, grp.positions) * grp.decoders.unsqueeze(0), {2});  // [nb, n]
      block.index_add_(1, grp.columns, contrib.to(at::kFloat));
    }
  }
  return out;
}

namespace {

/// The feature column of each chosen target (ConfigError naming target_features[i] for one that
/// is not active on the prompt or is ambiguous).
std::vector<std::int64_t> resolve_targets(const State& s,
                                          const std::vector<AttributionOptions::FeatureTarget>& ts) {
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const auto& t = ts[i];
    const std::int64_t pos = t.position < 0 ? s.T + t.position : t.position;
    SAES_CHECK(pos >= 0 && pos < s.T, ConfigError,
               "target_features[{}]: position {} is outside the prompt's {} tokens", i,
               t.position, s.T);
    std::int64_t found = -1;
    for (std::size_t c = 0; c < s.features.size(); ++c) {
      const FeatureRef& f = s.features[c];
      if (f.layer != t.layer || f.position != pos || f.index != t.index) continue;
      if (!t.dictionary.empty() && s.dicts[f.dict].name != t.dictionary) continue;
      SAES_CHECK(found < 0, ConfigError,
                 "target_features[{}]: layer {} feature {} is in more than one dictionary; name "
                 "one with `dictionary`",
                 i, t.layer, t.index);
      found = static_cast<std::int64_t>(c);
    }
    SAES_CHECK(found >= 0, ConfigError,
               "target_features[{}]: {}layer {} feature {} is not active at position {} of the "
               "prompt (a target must be a node of the graph)",
               i, t.dictionary.empty() ? std::string() : t.dictionary + " ", t.layer, t.index,
               pos);
    if (std::find(out.begin(), out.end(), found) == out.end()) out.push_back(found);
  }
  return out;
}

}  // namespace
}  // namespace detail

Graph ReplacementModel::attribute(const AttributionOptions& options) const {
  using detail::FeatureRef;
  using detail::Target;
  const detail::State& s = *state_;
  SAES_CHECK(options.batch_size >= 1, ConfigError, "batch_size: expected >= 1, got {}",
             options.batch_size);
  SAES_CHECK(options.max_feature_nodes >= 0, ConfigError,
             "max_feature_nodes: expected >= 0 (0: every active feature), got {}",
             options.max_feature_nodes);
  SAES_CHECK(options.update_interval >= 1, ConfigError, "update_interval: expected >= 1, got {}",
             options.update_interval);
  Graph g;
  g.tokens = s.tokens;
  g.n_layers = s.n_layers;
  g.desired_logit_prob = options.desired_logit_prob;
  g.max_n_logits = options.max_n_logits;
  g.max_feature_nodes = options.max_feature_nodes;
  g.batch_size = options.batch_size;
  g.interleaved = s.sites.size() > static_cast<std::size_t>(s.n_layers);
  for (const FeatureRef& f : s.features) {
    Node n = make_node(NodeKind::kFeature, f.layer, f.position, f.index);
    n.activation = f.activation;
    n.dictionary = s.dicts[f.dict].name;
    n.attention = f.attention;
    if (s.dicts[f.dict].sequence) {
      const at::Tensor w = s.mixing_of(f).contiguous();
      n.pattern.assign(w.data_ptr<double>(), w.data_ptr<double>() + w.numel());
    }
    g.nodes.push_back(n);
  }
  for (const detail::Site& site : s.sites) {
    for (std::int64_t p = 0; p < s.T; ++p) {
      g.nodes.push_back(make_node(NodeKind::kError, site.layer, p, -1));
      g.nodes.back().attention = site.attention;
    }
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
  const std::vector<std::int64_t> chosen = detail::resolve_targets(s, options.target_features);
  for (const std::int64_t c : chosen) g.nodes[static_cast<std::size_t>(c)].target = true;

  const std::int64_t N = g.n_nodes();
  const auto n_features = static_cast<std::int64_t>(s.features.size());
  const std::int64_t first_logit = N - static_cast<std::int64_t>(ids.size());
  g.adjacency = at::zeros({N, N}, at::kFloat);
  const std::int64_t passes_before = s.backward_passes;

  std::vector<bool> visited(static_cast<std::size_t>(n_features), false);
  std::vector<std::int64_t> computed;  // the rows with edges so far
  const auto compute = [&](const std::vector<std::int64_t>& nodes) {
    std::vector<Target> targets;
    for (const std::int64_t c : nodes) {
      targets.push_back(s.target_of(g, c));
      if (c < n_features) visited[static_cast<std::size_t>(c)] = true;
      computed.push_back(c);
    }
    const at::Tensor r = s.rows(targets, N, options.batch_size);
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      g.adjacency[nodes[i]].copy_(r[static_cast<std::int64_t>(i)]);
    }
  };
  std::vector<std::int64_t> first(chosen);
  for (std::int64_t i = first_logit; i < N; ++i) first.push_back(i);
  compute(first);

  // feature rows: all of them, or greedily by influence on the targets through the rows so far
  std::int64_t n_visited = static_cast<std::int64_t>(chosen.size());
  const std::int64_t budget =
      options.max_feature_nodes == 0
          ? n_features
          : std::min(std::max(options.max_feature_nodes, n_visited), n_features);
  const at::Tensor weights = g.target_weights();
  std::int64_t cursor = 0;  // every feature: in node order
  std::vector<std::int64_t> order;  // a budget: the last ranking, most influential first
  std::int64_t batches = 0;
  while (n_visited < budget) {
    std::vector<std::int64_t> pick;
    const std::int64_t want = std::min(options.batch_size, budget - n_visited);
    if (budget == n_features) {
      for (; cursor < n_features && static_cast<std::int64_t>(pick.size()) < want; ++cursor) {
        if (!visited[static_cast<std::size_t>(cursor)]) pick.push_back(cursor);
      }
    } else {
      if (batches % options.update_interval == 0) {  // re-rank through the rows so far
        const at::Tensor infl = row_influence(g.adjacency, computed, weights);
        order.resize(static_cast<std::size_t>(n_features));
        std::iota(order.begin(), order.end(), 0);
        const double* iv = infl.data_ptr<double>();
        std::stable_sort(order.begin(), order.end(),
                         [&](std::int64_t a, std::int64_t b) { return iv[a] > iv[b]; });
      }
      ++batches;
      for (const std::int64_t c : order) {
        if (static_cast<std::int64_t>(pick.size()) >= want) break;
        if (!visited[static_cast<std::size_t>(c)]) pick.push_back(c);
      }
    }
    compute(pick);
    n_visited += static_cast<std::int64_t>(pick.size());
  }
  g.backward_passes = s.backward_passes - passes_before;
  return g;
}

}  // namespace saes::circuits

// QK tracing (OpenMOSS's compute_attn_scores_attribution; docs/circuits.md "QK tracing"): why an
// attention feature's QK head attends where it does. Its query at the feature's position q and
// its key at the position k it attends to most are affine maps of the head's input there
// (SparseDictionary::attention_score_side); the input is the sum of every graph node's direct
// contribution through the frozen model plus a constant, so each component of Q(q) and K(k) is a
// target row of the same backward passes as the attribution, and the score Q·K splits into node
// pairs and marginals.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <string>

#include <ATen/TensorOperators.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/dot.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros_like.h>

#include "saes/circuits/attribution.h"
#include "saes/circuits/attribution_state.h"
#include "saes/circuits/pruning.h"
#include "saes/core/error.h"

namespace saes::circuits {
namespace {

/// The `topk` largest entries of a float64 vector, largest first (ties: lower index first).
std::vector<std::pair<std::int64_t, double>> top_entries(const at::Tensor& v, std::int64_t topk) {
  const at::Tensor c = v.contiguous();
  const double* p = c.data_ptr<double>();
  std::vector<std::int64_t> order(static_cast<std::size_t>(c.numel()));
  std::iota(order.begin(), order.end(), 0);
  const auto n = std::min<std::int64_t>(topk, c.numel());
  std::partial_sort(order.begin(), order.begin() + n, order.end(), [&](std::int64_t a,
                                                                       std::int64_t b) {
    return p[a] > p[b] || (p[a] == p[b] && a < b);
  });
  std::vector<std::pair<std::int64_t, double>> out;
  for (std::int64_t i = 0; i < n; ++i) out.emplace_back(order[i], p[order[i]]);
  return out;
}

}  // namespace

std::vector<std::int64_t> qk_tracing_nodes(const Graph& graph, const PruneResult& pruned,
                                           double fraction) {
  SAES_CHECK(fraction > 0 && fraction <= 1, ConfigError,
             "qk_top_fraction: expected in (0, 1], got {}", fraction);
  const bool* kept = pruned.node_mask.data_ptr<bool>();
  const double* inf = pruned.node_influence.data_ptr<double>();
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < graph.n_nodes(); ++i) {
    const Node& n = graph.nodes[static_cast<std::size_t>(i)];
    if (kept[i] && n.kind == NodeKind::kFeature && n.attention) out.push_back(i);
  }
  std::stable_sort(out.begin(), out.end(),
                   [&](std::int64_t a, std::int64_t b) { return inf[a] > inf[b]; });
  const auto n = static_cast<std::int64_t>(out.size());
  const std::int64_t take =
      n == 0 ? 0 : std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(n * fraction)));
  out.resize(static_cast<std::size_t>(take));
  return out;
}

void ReplacementModel::trace_qk(Graph& graph, const std::vector<std::int64_t>& nodes,
                                std::int64_t topk, std::int64_t batch_size) const {
  const detail::State& s = *state_;
  SAES_CHECK(topk >= 1, ConfigError, "qk_topk: expected >= 1, got {}", topk);
  SAES_CHECK(batch_size >= 1, ConfigError, "batch_size: expected >= 1, got {}", batch_size);
  struct Side {
    std::string hook;
    std::int64_t position = 0;
    at::Tensor map, bias;  // U [D, d], c [D] float64
  };
  struct Job {
    std::int64_t node, key;
    Side q, k;
  };
  std::vector<Job> jobs;
  std::vector<detail::Target> targets;
  std::set<std::string> hooks;
  for (const std::int64_t i : nodes) {
    SAES_CHECK(i >= 0 && i < graph.n_nodes(), ConfigError,
               "QK tracing: node {} is not in the {}-node graph", i, graph.n_nodes());
    const Node& node = graph.nodes[static_cast<std::size_t>(i)];
    SAES_CHECK(node.kind == NodeKind::kFeature && node.attention, ConfigError,
               "QK tracing: node {} is not an attention feature", i);
    const detail::FeatureRef& f = s.feature_of(graph, i);
    const detail::Dict& k = s.dicts[f.dict];
    SAES_CHECK(k.sequence, UnsupportedError,
               "QK tracing: dictionary {} has no attention pattern of its own", k.name);
    const std::int64_t key = s.mixing_of(f).argmax().item<std::int64_t>();
    const std::string& hook = k.in_hooks[static_cast<std::size_t>(f.source)];
    hooks.insert(hook);
    Job job{i, key, {}, {}};
    for (const bool query : {true, false}) {
      const std::int64_t pos = query ? f.position : key;
      const auto side = k.d->attention_score_side(f.index, pos, query);
      Side& out = query ? job.q : job.k;
      out = {hook, pos, side.map.to(at::kDouble).cpu(), side.bias.to(at::kDouble).cpu()};
      for (std::int64_t j = 0; j < out.map.size(0); ++j)
        targets.push_back({hook, pos, out.map[j], {}});
    }
    jobs.push_back(std::move(job));
  }
  if (jobs.empty()) return;
  // the head inputs as the prompt gave them, and with only the constants (no node) in place
  std::map<std::string, at::Tensor> constant_acts;
  {
    const at::NoGradGuard no_grad;
    std::vector<at::Tensor> m;
    for (const detail::Site& site : s.sites) m.push_back(site.constant.unsqueeze(0));
    constant_acts = s.frozen_forward(at::zeros_like(s.embed).unsqueeze(0), m, hooks,
                                     lm::GradMode::kNoGrad);
  }
  const auto value = [&](const Side& side, bool constant) {
    const at::Tensor& acts = constant ? constant_acts.at(side.hook) : s.captured.at(side.hook);
    return at::mv(side.map, acts[0][side.position].to(at::kDouble)) + side.bias;
  };
  const std::int64_t passes_before = s.backward_passes;
  const at::Tensor r = s.rows(targets, graph.n_nodes(), batch_size).to(at::kDouble);
  graph.backward_passes += s.backward_passes - passes_before;
  std::int64_t row = 0;
  for (const Job& job : jobs) {
    const at::Tensor Q = value(job.q, false), K = value(job.k, false);
    const at::Tensor Q0 = value(job.q, true), K0 = value(job.k, true);
    const std::int64_t D = Q.size(0);
    const at::Tensor cq = r.narrow(0, row, D), ck = r.narrow(0, row + D, D);  // [D, N]
    row += 2 * D;
    QkTrace t;
    t.node = job.node;
    t.key_position = job.key;
    t.score = at::dot(Q, K).item<double>();
    t.constant = at::dot(Q0, K0).item<double>();
    t.query_constant = at::dot(Q0, K).item<double>();
    t.key_constant = at::dot(Q, K0).item<double>();
    const at::Tensor pairs = at::matmul(cq.t(), ck);  // [N(q side), N(k side)]
    const std::int64_t N = pairs.size(1);
    for (const auto& [flat, v] : top_entries(pairs.reshape({-1}), topk)) {
      t.pairs.push_back({flat / N, flat % N, v});
    }
    for (const auto& [n, v] : top_entries(at::mv(cq.t(), K), topk)) t.query.push_back({n, v});
    for (const auto& [n, v] : top_entries(at::mv(ck.t(), Q), topk)) t.key.push_back({n, v});
    graph.qk_traces.push_back(std::move(t));
  }
}

}  // namespace saes::circuits

// Benchmark: circuit tracing of one 16-token prompt (issue #19's figure): ReplacementModel
// construction + attribute() with random TopK transcoders on every layer, side by side with the
// same computation in PyTorch eager (bench/reference/attribution.py, /usr/bin/python3, same
// threads), with both sides' backward passes and node counts.
// Usage: bench_attribution [threads [reps [workloads [stories260K.bin]]]]; workloads
// "model:seq:expansion:k:batch:budget,..." with model stories260K (the real model, needs
// $SAES_TEST_ASSETS or the path) or gpt2-small (random weights), budget = max_feature_nodes
// (0: every active feature). Default: stories260K:16:8:16:32:0,gpt2-small:16:8:32:64:1024.
#include "saes/circuits/attribution.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <sys/resource.h>

#include "saes/core/threads.h"
#include "saes/dictionaries/registry.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/lm/llama2c_loader.h"
#include "saes/lm/transformer.h"

#include "random_gpt2.h"
#include "timing.h"

namespace sc = saes::circuits;
namespace sd = saes::dictionaries;

namespace {

struct Workload {
  std::string model;
  long seq = 0, expansion = 0, k = 0, batch = 0, budget = 0;
  std::string key() const {
    return fmt::format("{}:{}:{}:{}:{}:{}", model, seq, expansion, k, batch, budget);
  }
};

std::vector<Workload> parse(const std::string& spec) {
  std::vector<Workload> out;
  std::stringstream all(spec);
  for (std::string item; std::getline(all, item, ',');) {
    Workload w;
    const auto c = item.find(':');
    w.model = item.substr(0, c);
    char sep = 0;
    std::stringstream rest(item.substr(c + 1));
    rest >> w.seq >> sep >> w.expansion >> sep >> w.k >> sep >> w.batch >> sep >> w.budget;
    out.push_back(w);
  }
  return out;
}

/// BOS + fixed ids (the reference uses the same): stories260K's tok512 ids of " Once upon a
/// time, Tim had a big day. Tim was a little"; for GPT-2 <|endoftext|> and arbitrary ids.
std::vector<std::int64_t> prompt(const Workload& w) {
  std::vector<std::int64_t> ids =
      w.model == "stories260K"
          ? std::vector<std::int64_t>{1,   403, 407, 261, 378, 432, 326, 381,
                                      261, 370, 328, 426, 326, 286, 261, 376}
          : std::vector<std::int64_t>{50256, 464,  2068, 7586, 21831, 18045, 625, 262,
                                      16931, 3290, 13,   383,  1334,  318,   257, 1110};
  while (static_cast<long>(ids.size()) > w.seq) ids.pop_back();
  while (static_cast<long>(ids.size()) < w.seq) ids.push_back(ids[ids.size() % 15 + 1]);
  return ids;
}

/// One random TopK transcoder per layer: ln2.hook_normalized → hook_mlp_out, raw activations in
/// and out (inference norms), uniform weights of bound 1/√d_model.
std::vector<std::unique_ptr<sd::SparseDictionary>> transcoders(const saes::lm::Transformer& model,
                                                               const Workload& w) {
  std::vector<std::unique_ptr<sd::SparseDictionary>> out;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const double bound = 1.0 / std::sqrt(static_cast<double>(model.spec().d_model));
  for (std::int64_t l = 0; l < model.spec().n_layers; ++l) {
    sd::SparseDictionaryConfig cfg;
    cfg.d_model = model.spec().d_model;
    cfg.expansion_factor = static_cast<double>(w.expansion);
    cfg.act_fn = sd::ActFn::kTopK;
    cfg.top_k = w.k;
    cfg.norm_activation = sd::NormActivation::kInference;
    cfg.hook_point_in = fmt::format("blocks.{}.ln2.hook_normalized", l);
    cfg.hook_point_out = fmt::format("blocks.{}.hook_mlp_out", l);
    out.push_back(sd::make_dictionary(cfg));
    out.back()->init_parameters({bound, bound, {}}, gen);
  }
  return out;
}

struct Result {
  double seconds = 0, construction_s = 0;
  long passes = 0, nodes = 0, features = 0, logits = 0;
  double peak_rss_mb = 0;
};

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
}

Result run_saes(const Workload& w, const std::string& stories_path, int reps) {
  at::Generator gen = at::detail::createCPUGenerator(0);
  const saes::lm::Transformer model = w.model == "stories260K"
                                          ? saes::lm::load_llama2c(stories_path)
                                          : saes::bench::random_gpt2_small(gen);
  const auto owned = transcoders(model, w);
  std::vector<sc::ReplacementDictionary> dicts;
  for (std::size_t l = 0; l < owned.size(); ++l) {
    dicts.push_back({owned[l].get(), fmt::format("tc{}", l)});
  }
  const std::vector<std::int64_t> tokens = prompt(w);
  sc::AttributionOptions opts;
  opts.batch_size = w.batch;
  opts.max_feature_nodes = w.budget;
  Result r;
  r.construction_s =
      saes::bench::best_seconds([&] { const sc::ReplacementModel rm(model, tokens, dicts); }, reps);
  r.seconds = saes::bench::best_seconds(
      [&] {
        const sc::ReplacementModel rm(model, tokens, dicts);
        const sc::Graph g = rm.attribute(opts);
        r.passes = g.backward_passes;
        r.nodes = g.n_nodes();
        r.features = g.count(sc::NodeKind::kFeature);
        r.logits = g.count(sc::NodeKind::kLogit);
      },
      reps);
  r.peak_rss_mb = peak_rss_mb();
  return r;
}

std::string value_or_dash(const std::map<std::string, double>& m, const std::string& key,
                          const char* format) {
  const auto it = m.find(key);
  return it == m.end() ? std::string("—") : fmt::format(fmt::runtime(format), it->second);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::string spec =
      argc > 3 ? argv[3] : "stories260K:16:8:16:32:0,gpt2-small:16:8:32:64:1024";
  std::string stories;
  if (argc > 4) {
    stories = argv[4];
  } else if (const char* assets = std::getenv("SAES_TEST_ASSETS")) {
    stories = std::string(assets) + "/llama2c-stories260K/stories260K.bin";
  }
  const std::vector<Workload> workloads = parse(spec);
  for (const Workload& w : workloads) {
    if (w.model != "stories260K" && w.model != "gpt2-small") {
      std::fprintf(stderr, "unknown model '%s' (stories260K or gpt2-small)\n", w.model.c_str());
      return 2;
    }
    if (w.model == "stories260K" && stories.empty()) {
      std::fprintf(stderr, "stories260K needs $SAES_TEST_ASSETS or the .bin path (argument 4)\n");
      return 2;
    }
  }
  saes::keep_freed_memory();  // as saes-analyze does (apps/common/cli.cpp)
  at::set_num_threads(threads);
  // the reference reads the model from here (reference_seconds passes only the protocol flags)
  setenv("SAES_BENCH_STORIES260K", stories.c_str(), 1);
  const auto ref =
      saes::bench::reference_seconds(SAES_SOURCE_DIR, "attribution.py", threads, reps, spec);
  fmt::print(
      "circuit tracing of one prompt: ReplacementModel + attribute(), fp32, CPU, {} threads, "
      "best of {}\n",
      threads, reps);
  fmt::print(
      "| workload (model:seq:expansion:k:batch:budget) | saes (s) | of which construction "
      "(s) | PyTorch eager (s) | ratio | backward passes saes / eager | nodes saes / eager "
      "| features | logit targets saes / eager | peak RSS saes / eager (MB) |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Workload& w : workloads) {
    const Result r = run_saes(w, stories, reps);
    const std::string key = w.key();
    const auto it = ref.find(key);
    const double theirs = it != ref.end() ? it->second : NAN;
    fmt::print(
        "| {} | {:.3f} | {:.3f} | {:.3f} | {:.2f}x | {} / {} | {} / {} | {} | {} / {} | "
        "{:.0f} / {} |\n",
        key, r.seconds, r.construction_s, theirs, theirs / r.seconds, r.passes,
        value_or_dash(ref, key + ":passes", "{:.0f}"), r.nodes,
        value_or_dash(ref, key + ":nodes", "{:.0f}"), r.features, r.logits,
        value_or_dash(ref, key + ":logits", "{:.0f}"), r.peak_rss_mb,
        value_or_dash(ref, key + ":rss_mb", "{:.0f}"));
    std::fflush(stdout);
  }
  return 0;
}

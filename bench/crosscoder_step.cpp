// Benchmark: one crosscoder training step (forward, manual backward, the trainer's Adam) side by
// side with PyTorch eager autograd + torch.optim.Adam of the same math
// (bench/reference/crosscoder_step.py, /usr/bin/python3, same threads, fp32, TopK per head).
// Usage: bench_crosscoder_step [threads [reps [workloads]]], workloads "H:d:d_sae:batch:k,...".
// Default: the two shapes, stories260K's 3 residual hooks (d=64, d_sae=512, the example
// config) over 4096 tokens, and 3 hooks of d=768 with d_sae=8192 over 1024 tokens.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/ops/randn.h>
#include <fmt/format.h>

#include "saes/core/threads.h"
#include "saes/dictionaries/crosscoder.h"
#include "saes/training/optimizer.h"

#include "timing.h"

namespace sd = saes::dictionaries;
namespace st = saes::training;

namespace {

struct Workload {
  long H = 0, d = 0, s = 0, n = 0, k = 0;
  std::string key() const { return fmt::format("{}:{}:{}:{}:{}", H, d, s, n, k); }
};

std::vector<Workload> parse(const std::string& spec) {
  std::vector<Workload> out;
  std::stringstream all(spec);
  for (std::string item; std::getline(all, item, ',');) {
    Workload w;
    char sep = 0;
    std::stringstream rest(item);
    rest >> w.H >> sep >> w.d >> sep >> w.s >> sep >> w.n >> sep >> w.k;
    out.push_back(w);
  }
  return out;
}

double saes_step(const Workload& w, int reps) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kCrosscoder;
  cfg.d_model = w.d;
  cfg.expansion_factor = static_cast<double>(w.s) / static_cast<double>(w.d);
  cfg.act_fn = sd::ActFn::kTopK;
  cfg.top_k = w.k;
  cfg.norm_activation = sd::NormActivation::kInference;
  for (long h = 0; h < w.H; ++h) cfg.hook_points.push_back(fmt::format("blocks.{}.hook_resid_post", h));
  sd::CrossCoder cc(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  cc.init_parameters({0.1, 0.1, {}}, gen);
  sd::TrainBatch batch;
  for (const auto& h : cfg.hook_points) batch.acts[h] = at::randn({w.n, w.d}, gen);
  std::vector<st::Parameter> params;
  for (auto& p : cc.parameters()) params.push_back({p.name, p.value, p.grad, 1.0, p.clipped});
  st::Optimizer adam(st::OptimizerClass::kAdam, 1e-4, {0.9, 0.999});
  return saes::bench::best_seconds(
      [&] {
        cc.forward_backward(batch, {});
        adam.step(params);
      },
      reps);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::string spec = argc > 3 ? argv[3]
                                    : "3:64:512:4096:16,3:768:8192:1024:32";
  saes::keep_freed_memory();
  at::set_num_threads(threads);
  const auto ref =
      saes::bench::reference_seconds(SAES_SOURCE_DIR, "crosscoder_step.py", threads, reps, spec);
  std::printf(
      "| workload (H:d:d_sae:batch:k) | saes step (ms) | PyTorch eager (ms) | ratio | saes "
      "tokens/s |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const Workload& w : parse(spec)) {
    const double ours = saes_step(w, reps);
    const auto it = ref.find(w.key());
    const double theirs = it != ref.end() ? it->second : NAN;
    std::printf("| %s | %.1f | %.1f | %.2fx | %.0f |\n", w.key().c_str(), ours * 1e3,
                theirs * 1e3, theirs / ours, static_cast<double>(w.n) / ours);
    std::fflush(stdout);
  }
  return 0;
}

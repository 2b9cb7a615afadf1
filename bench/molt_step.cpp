// Benchmark: one MoLT training step (forward, manual backward, the trainer's Adam) side by side
// with PyTorch eager autograd + torch.optim.Adam of the same math (bench/reference/molt_step.py,
// /usr/bin/python3, same threads, fp32, TopK with decoder-norm gating by ‖U_i V_i‖_F).
// Usage: bench_molt_step [threads [reps [workloads]]], workloads "r1xc1+r2xc2+...:d:batch:k,..."
// (c transforms of rank r per group). Default: the two shapes, stories260K's d=64 with
// 480 transforms (the example config) over 4096 tokens, and d=768 with d_sae=8192 over 1024.
// SAES_BENCH_DENSE=1 times the dense step instead of the sparse one.
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
#include "saes/dictionaries/molt.h"
#include "saes/training/optimizer.h"

#include "timing.h"

namespace sd = saes::dictionaries;
namespace st = saes::training;

namespace {

struct Workload {
  std::string ranks;  // "1x256+2x128"
  long d = 0, n = 0, k = 0;
  std::string key() const { return fmt::format("{}:{}:{}:{}", ranks, d, n, k); }
};

std::vector<Workload> parse(const std::string& spec) {
  std::vector<Workload> out;
  std::stringstream all(spec);
  for (std::string item; std::getline(all, item, ',');) {
    Workload w;
    const auto c = item.find(':');
    w.ranks = item.substr(0, c);
    char sep = 0;
    std::stringstream rest(item.substr(c + 1));
    rest >> w.d >> sep >> w.n >> sep >> w.k;
    out.push_back(w);
  }
  return out;
}

double saes_step(const Workload& w, int reps, long* d_sae) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kMolt;
  cfg.d_model = w.d;
  std::stringstream groups(w.ranks);
  for (std::string g; std::getline(groups, g, '+');) {
    const auto x = g.find('x');
    cfg.rank_counts[g.substr(0, x)] = std::stol(g.substr(x + 1));
  }
  cfg.expansion_factor = static_cast<double>(cfg.d_sae()) / static_cast<double>(w.d);
  *d_sae = cfg.d_sae();
  cfg.act_fn = sd::ActFn::kTopK;
  cfg.top_k = w.k;
  cfg.norm_activation = sd::NormActivation::kInference;
  cfg.hook_point_in = "blocks.3.ln2.hook_normalized";
  cfg.hook_point_out = "blocks.3.hook_mlp_out";
  // SAES_BENCH_DENSE=1: the dense step (sparse_kernels off), for comparison
  if (std::getenv("SAES_BENCH_DENSE") != nullptr) cfg.sparse_kernels = sd::SparseKernels::kOff;
  sd::MixtureOfLinearTransforms molt(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  molt.init_parameters({}, gen);
  const sd::TrainBatch batch = sd::single_hook_batch(cfg, at::randn({w.n, w.d}, gen),
                                                     at::randn({w.n, w.d}, gen));
  std::vector<st::Parameter> params;
  for (auto& p : molt.parameters()) params.push_back({p.name, p.value, p.grad, 1.0, p.clipped});
  st::Optimizer adam(st::OptimizerClass::kAdam, 1e-4, {0.9, 0.999});
  return saes::bench::best_seconds(
      [&] {
        molt.forward_backward(batch, {});
        adam.step(params);
      },
      reps);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::string spec = argc > 3 ? argv[3]
                                    : "1x256+2x128+4x64+8x32:64:4096:16,"
                                      "1x4096+2x2048+4x1024+8x1024:768:1024:32";
  saes::keep_freed_memory();
  at::set_num_threads(threads);
  const auto ref =
      saes::bench::reference_seconds(SAES_SOURCE_DIR, "molt_step.py", threads, reps, spec);
  std::printf(
      "| workload (rank x count:d:batch:k) | d_sae | saes step (ms) | PyTorch eager (ms) | ratio | "
      "saes tokens/s |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const Workload& w : parse(spec)) {
    long d_sae = 0;
    const double ours = saes_step(w, reps, &d_sae);
    const auto it = ref.find(w.key());
    const double theirs = it != ref.end() ? it->second : NAN;
    std::printf("| %s | %ld | %.1f | %.1f | %.2fx | %.0f |\n", w.key().c_str(), d_sae, ours * 1e3,
                theirs * 1e3, theirs / ours, static_cast<double>(w.n) / ours);
    std::fflush(stdout);
  }
  return 0;
}

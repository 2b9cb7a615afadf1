// Benchmark: one cross-layer transcoder training step (forward, manual backward, the trainer's
// Adam) side by side with PyTorch eager autograd + torch.optim.Adam of the same math
// (bench/reference/clt_step.py, /usr/bin/python3, same threads, fp32, decoder-norm gating).
// Usage: bench_clt_step [threads [reps [workloads]]], workloads "act:L:d:d_sae:batch:k,..." with
// act topk (k per token and layer) or layertopk (k per token over all layers). Default: the
// issue's two shapes, L=5 d=64 d_sae=1024 batch 4096 and L=12 d=768 d_sae=8192 batch 1024.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/ops/randn.h>
#include <fmt/format.h>

#include "saes/core/threads.h"
#include "saes/dictionaries/clt.h"
#include "saes/training/optimizer.h"

#include "timing.h"

namespace sd = saes::dictionaries;
namespace st = saes::training;

namespace {

struct Workload {
  std::string act;
  long L = 0, d = 0, s = 0, n = 0, k = 0;
  std::string key() const { return fmt::format("{}:{}:{}:{}:{}:{}", act, L, d, s, n, k); }
};

std::vector<Workload> parse(const std::string& spec) {
  std::vector<Workload> out;
  std::stringstream all(spec);
  for (std::string item; std::getline(all, item, ',');) {
    Workload w;
    const auto c = item.find(':');
    w.act = item.substr(0, c);
    char sep = 0;
    std::stringstream rest(item.substr(c + 1));
    rest >> w.L >> sep >> w.d >> sep >> w.s >> sep >> w.n >> sep >> w.k;
    out.push_back(w);
  }
  return out;
}

double best_of(int reps, const std::function<void()>& fn) {
  return saes::bench::best_seconds(fn, reps);
}

double saes_step(const Workload& w, int reps) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kClt;
  cfg.d_model = w.d;
  cfg.expansion_factor = static_cast<double>(w.s) / static_cast<double>(w.d);
  cfg.act_fn = w.act == "layertopk" ? sd::ActFn::kLayerTopK : sd::ActFn::kTopK;
  cfg.top_k = w.k;
  cfg.norm_activation = sd::NormActivation::kInference;
  for (long l = 0; l < w.L; ++l) {
    cfg.hook_points_in.push_back(fmt::format("blocks.{}.ln2.hook_normalized", l));
    cfg.hook_points_out.push_back(fmt::format("blocks.{}.hook_mlp_out", l));
  }
  sd::CrossLayerTranscoder clt(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  clt.init_parameters({}, gen);
  sd::TrainBatch batch;
  for (const auto& h : cfg.hook_points_in) batch.acts[h] = at::randn({w.n, w.d}, gen);
  for (const auto& h : cfg.hook_points_out) batch.acts[h] = at::randn({w.n, w.d}, gen);
  std::vector<st::Parameter> params;
  for (auto& p : clt.parameters()) params.push_back({p.name, p.value, p.grad, 1.0, p.clipped});
  st::Optimizer adam(st::OptimizerClass::kAdam, 1e-4, {0.9, 0.999});
  return best_of(reps, [&] {
    clt.forward_backward(batch, {});
    adam.step(params);
  });
}

std::map<std::string, double> torch_reference(int threads, int reps, const std::string& spec) {
  std::map<std::string, double> out;
  const char* python = std::getenv("SAES_BENCH_PYTHON");
  const std::string command = fmt::format(
      "{} {}/bench/reference/clt_step.py --threads {} --reps {} --workloads {}",
      python != nullptr ? python : "/usr/bin/python3", SAES_SOURCE_DIR, threads, reps, spec);
  if (std::FILE* pipe = popen(command.c_str(), "r")) {
    char act[32];
    long L = 0, d = 0, s = 0, n = 0, k = 0;
    double sec = 0, cpu = 0;
    while (std::fscanf(pipe, "%31s %ld %ld %ld %ld %ld %lf %lf", act, &L, &d, &s, &n, &k, &sec,
                       &cpu) == 8) {
      out[fmt::format("{}:{}:{}:{}:{}:{}", act, L, d, s, n, k)] = sec;
    }
    pclose(pipe);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::string spec = argc > 3 ? argv[3]
                                    : "topk:5:64:1024:4096:16,layertopk:5:64:1024:4096:64,"
                                      "topk:12:768:8192:1024:32,layertopk:12:768:8192:1024:256";
  saes::keep_freed_memory();
  at::set_num_threads(threads);
  const auto ref = torch_reference(threads, reps, spec);
  std::printf(
      "| workload (act:L:d:d_sae:batch:k) | saes step (ms) | PyTorch eager (ms) | ratio | saes "
      "tokens/s |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const Workload& w : parse(spec)) {
    const double ours = saes_step(w, reps);
    const auto it = ref.find(w.key());
    const double theirs = it != ref.end() ? it->second : NAN;
    std::printf("| %s | %.1f | %.1f | %.2fx | %.0f |\n", w.key().c_str(), ours * 1e3, theirs * 1e3,
                theirs / ours, static_cast<double>(w.n) / ours);
    std::fflush(stdout);
  }
  return 0;
}

// Benchmark: one Lorsa training step (the attention side through autograd, the decoder side on
// the active entries with the sparse kernels, the trainer's Adam) side by side with PyTorch eager
// autograd + torch.optim.Adam of the same math (bench/reference/lorsa_step.py, /usr/bin/python3,
// same threads, fp32, TopK with decoder-norm gating, RoPE on adjacent pairs).
// Usage: bench_lorsa_step [threads [reps [workloads]]], workloads "d:n_qk:d_qk:d_sae:batch:ctx:k,..."
// Default: the example config's shape (stories260K layer 2: d 64, 8 QK heads of 8, d_sae 512,
// 16 sequences of 128, k 16) and d 768 with 12 QK heads of 64, d_sae 4608 (12 × 384: 4096 does
// not divide by 12), 8 sequences of 256, k 32. SAES_BENCH_DENSE=1 times the dense autograd step
// instead (sparse_kernels off).
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
#include "saes/dictionaries/lorsa.h"
#include "saes/training/optimizer.h"

#include "timing.h"

namespace sd = saes::dictionaries;
namespace st = saes::training;

namespace {

struct Workload {
  long d = 0, h = 0, dqk = 0, s = 0, b = 0, t = 0, k = 0;
  std::string key() const { return fmt::format("{}:{}:{}:{}:{}:{}:{}", d, h, dqk, s, b, t, k); }
};

std::vector<Workload> parse(const std::string& spec) {
  std::vector<Workload> out;
  std::stringstream all(spec);
  for (std::string item; std::getline(all, item, ',');) {
    Workload w;
    char sep = 0;
    std::stringstream in(item);
    in >> w.d >> sep >> w.h >> sep >> w.dqk >> sep >> w.s >> sep >> w.b >> sep >> w.t >> sep >> w.k;
    out.push_back(w);
  }
  return out;
}

double saes_step(const Workload& w, int reps, bool dense) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kLorsa;
  cfg.d_model = w.d;
  cfg.expansion_factor = static_cast<double>(w.s) / static_cast<double>(w.d);
  cfg.act_fn = sd::ActFn::kTopK;
  cfg.top_k = w.k;
  cfg.hook_point_in = "blocks.0.ln1.hook_normalized";
  cfg.hook_point_out = "blocks.0.hook_attn_out";
  cfg.n_qk_heads = w.h;
  cfg.d_qk_head = w.dqk;
  cfg.rotary_dim = w.dqk;
  cfg.rotary_adjacent_pairs = true;
  cfg.n_ctx = w.t;
  cfg.norm_activation = sd::NormActivation::kInference;
  cfg.sparse_kernels = dense ? sd::SparseKernels::kOff : sd::SparseKernels::kAuto;
  sd::LowRankSparseAttention lorsa(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  lorsa.init_parameters({}, gen);
  sd::TrainBatch batch;
  batch.acts[cfg.hook_point_in] = at::randn({w.b, w.t, w.d}, gen);
  batch.acts[cfg.hook_point_out] = at::randn({w.b, w.t, w.d}, gen);
  std::vector<st::Parameter> params;
  for (auto& p : lorsa.parameters()) params.push_back({p.name, p.value, p.grad, 1.0, p.clipped});
  st::Optimizer adam(st::OptimizerClass::kAdam, 1e-4, {0.9, 0.999});
  sd::LossSettings ls;
  ls.current_k = w.k;
  return saes::bench::best_seconds(
      [&] {
        lorsa.forward_backward(batch, ls);
        adam.step(params);
      },
      reps);
}

std::map<std::string, double> torch_reference(int threads, int reps, const std::string& spec) {
  std::map<std::string, double> out;
  const char* python = std::getenv("SAES_BENCH_PYTHON");
  const std::string command = fmt::format(
      "{} {}/bench/reference/lorsa_step.py --threads {} --reps {} --workloads {}",
      python != nullptr ? python : "/usr/bin/python3", SAES_SOURCE_DIR, threads, reps, spec);
  if (std::FILE* pipe = popen(command.c_str(), "r")) {
    Workload w;
    double sec = 0, cpu = 0;
    while (std::fscanf(pipe, "%ld %ld %ld %ld %ld %ld %ld %lf %lf", &w.d, &w.h, &w.dqk, &w.s, &w.b,
                       &w.t, &w.k, &sec, &cpu) == 9) {
      out[w.key()] = sec;
    }
    pclose(pipe);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::string spec =
      argc > 3 ? argv[3] : "64:8:8:512:16:128:16,768:12:64:4608:8:256:32";
  const bool dense = std::getenv("SAES_BENCH_DENSE") != nullptr;
  saes::keep_freed_memory();
  at::set_num_threads(threads);
  const auto ref = torch_reference(threads, reps, spec);
  std::printf("| workload (d:n_qk:d_qk:d_sae:batch:ctx:k) | saes %sstep (ms) | PyTorch eager (ms) "
              "| ratio | saes tokens/s |\n",
              dense ? "dense " : "");
  std::printf("|---|---|---|---|---|\n");
  for (const Workload& w : parse(spec)) {
    const double ours = saes_step(w, reps, dense);
    const auto it = ref.find(w.key());
    const double theirs = it != ref.end() ? it->second : NAN;
    std::printf("| %s | %.1f | %.1f | %.2fx | %.0f |\n", w.key().c_str(), ours * 1e3, theirs * 1e3,
                theirs / ours, static_cast<double>(w.b * w.t) / ours);
    std::fflush(stdout);
  }
  return 0;
}

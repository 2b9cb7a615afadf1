// Benchmark: one SAE training step (fused forward + manual backward + the trainer's Adam) for
// ReLU, JumpReLU, TopK(k=32), BatchTopK(k=32) and relu1pct (ReLU with b_E set so that ~1% of
// the pre-activations are positive, like a trained dictionary), dense step (sparse_kernels off) and
// sparse step (auto) side by side with PyTorch eager autograd + torch.optim.Adam (bench/reference/
// train_step.py, /usr/bin/python3, same threads, fp32); plus the measured sgemm peak and the
// encoder GEMM's share of it, and Adam vs SparseAdam on the sparse step's gradients.
// Usage: bench_train_step [threads [reps [workloads [only [device [dtype]]]]]], workloads
// "act:d:d_sae:batch,..."; only = "sparse" / "dense" / "ops" runs just the sparse (auto) step /
// the dense step / the dense step on LibTorch ops instead of the fused CPU sweeps (for profiling:
// perf record -- bench_train_step ...), "all" everything; device cpu|cuda; dtype fp32|bf16 (saes
// trains in the dictionary dtype; the PyTorch column then runs fp32 parameters under bf16
// autocast). SAES_BENCH_ROUNDS=R alternates PyTorch and saes R times per workload and reports the
// median ratio. The process keeps freed memory as the saes apps do (core/threads.h). The reference
// interpreter is $SAES_BENCH_PYTHON (default /usr/bin/python3, Debian's
// python3-torch).
#include <algorithm>
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
#include <ATen/TensorOperators.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/std.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/threads.h"
#include "saes/dictionaries/sae.h"
#include "saes/training/optimizer.h"

#include "timing.h"

namespace sd = saes::dictionaries;
namespace st = saes::training;

namespace {

struct Workload {
  std::string act;
  std::int64_t d = 0, d_sae = 0, batch = 0;
  std::string key() const { return fmt::format("{}:{}:{}:{}", act, d, d_sae, batch); }
};

std::vector<Workload> parse(const std::string& text) {
  std::vector<Workload> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    Workload w;
    char sep = 0;
    const auto c1 = item.find(':');
    w.act = item.substr(0, c1);
    std::stringstream rest(item.substr(c1 + 1));
    rest >> w.d >> sep >> w.d_sae >> sep >> w.batch;
    out.push_back(w);
  }
  return out;
}

/// Best wall seconds of `fn` over `reps` runs after one warm-up.
double best_of(int reps, const std::function<void()>& fn) {
  return saes::bench::best_seconds(fn, reps);
}

sd::ActFn act_of(const std::string& name) {
  if (name == "relu" || name == "relu1pct") return sd::ActFn::kRelu;
  if (name == "jumprelu") return sd::ActFn::kJumpRelu;
  if (name == "batchtopk") return sd::ActFn::kBatchTopK;
  return sd::ActFn::kTopK;
}

struct Ours {
  double step_s = 0;  ///< forward_backward + Adam
  double adam_s = 0;  ///< the Adam update alone
  double sparse_adam_s = 0;
  bool sparse = false;  ///< the step took the sparse path
};

/// Where and in what dtype the saes columns run.
struct Target {
  std::string device = "cpu";
  saes::DType dtype = saes::DType::kFloat32;
  bool cuda() const { return device.rfind("cuda", 0) == 0; }
  at::TensorOptions options() const {
    return at::TensorOptions().device(c10::Device(device)).dtype(saes::to_torch(dtype));
  }
  /// Waits for the device's queued work (a device-to-host copy of one value synchronizes).
  void sync() const {
    if (cuda()) (void)at::zeros({1}, options()).sum().item<float>();
  }
};

Ours run(const Workload& w, sd::SparseKernels kernels, int reps, const Target& target,
         sd::SparseBackend backend = sd::SparseBackend::kAuto) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = w.d;
  cfg.expansion_factor = static_cast<double>(w.d_sae) / static_cast<double>(w.d);
  cfg.act_fn = act_of(w.act);
  cfg.top_k = 32;
  cfg.norm_activation = sd::NormActivation::kBatchWise;
  cfg.hook_point_in = cfg.hook_point_out = "h";
  cfg.sparse_kernels = kernels;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  sd::SparseAutoEncoder host(cfg);  // initialised on the CPU, then copied to the target
  host.init_parameters({1.0, 1.0, std::log(0.1)}, gen);
  host.init_encoder_with_decoder_transpose(1.0);
  cfg.device = target.device;
  cfg.dtype = target.dtype;
  sd::SparseAutoEncoder sae(cfg);
  sae.set_dense_backend(backend);
  {
    auto src = host.parameters();
    auto dst = sae.parameters();
    for (std::size_t i = 0; i < src.size(); ++i) dst[i].value.copy_(src[i].value);
  }
  std::vector<st::Parameter> params;
  for (auto& p : sae.parameters()) params.push_back({p.name, p.value, p.grad, 1.0, p.clipped});
  st::Optimizer adam(st::OptimizerClass::kAdam, 1e-4, {0.9, 0.999});
  st::Optimizer sparse_adam(st::OptimizerClass::kSparseAdam, 1e-4, {0.9, 0.999});
  sd::LossSettings ls;
  if (!sd::is_topk_family(cfg.act_fn)) {
    ls.sparsity = sd::SparsityPenalty::kPower;
    ls.l1_coefficient = 1e-4;
  }
  const at::Tensor x = at::randn({w.batch, w.d}, gen).to(target.options());
  if (w.act == "relu1pct") {  // a trained-like ReLU SAE: b_E puts ~1% of pre-activations above 0
    const at::Tensor h = sae.hidden_pre(sae.normalize(x, "h"));
    sae.b_E().sub_(h.mean(0) + h.std(0) * 2.33);
  }
  Ours out;
  out.step_s = best_of(reps, [&] {
    out.sparse = sae.forward_backward(sd::single_hook_batch(sae.config(), x, x), ls)
                     .sparse_feature_acts.defined();
    adam.step(params);
    target.sync();
  });
  out.adam_s = best_of(reps, [&] {
    adam.step(params);
    target.sync();
  });
  out.sparse_adam_s = best_of(reps, [&] {
    sparse_adam.step(params);
    target.sync();
  });
  return out;
}

/// GFLOP/s of a [m×k]·[k×n] matrix product (+ bias row when `bias`) on the target, best of reps.
double gemm_gflops(std::int64_t m, std::int64_t k, std::int64_t n, bool bias, int reps,
                   const Target& target) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const at::Tensor a = at::randn({m, k}, gen).to(target.options());
  const at::Tensor b = at::randn({k, n}, gen).to(target.options());
  const at::Tensor c = at::randn({n}, gen).to(target.options());
  const double s = best_of(reps, [&] {
    (void)(bias ? at::addmm(c, a, b) : at::mm(a, b));
    target.sync();
  });
  return 2.0 * static_cast<double>(m * k * n) / s / 1e9;
}

std::map<std::string, double> torch_reference(int threads, int reps, const std::string& spec,
                                              const Target& target) {
  std::map<std::string, double> out;
  const char* python = std::getenv("SAES_BENCH_PYTHON");
  std::string command = fmt::format(
      "{} {}/bench/reference/train_step.py --threads {} --reps {} --workloads {} --device {}",
      python != nullptr ? python : "/usr/bin/python3", SAES_SOURCE_DIR, threads, reps, spec,
      target.device);
  if (target.dtype == saes::DType::kBFloat16) command += " --autocast bf16";
  if (std::FILE* pipe = popen(command.c_str(), "r")) {
    char act[32];
    long d = 0, s = 0, b = 0;
    double sec = 0, cpu = 0;
    while (std::fscanf(pipe, "%31s %ld %ld %ld %lf %lf", act, &d, &s, &b, &sec, &cpu) == 6) {
      out[fmt::format("{}:{}:{}:{}", act, d, s, b)] = sec;
    }
    pclose(pipe);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 2;
  const std::string spec = argc > 3 ? argv[3]
                                    : "relu:768:24576:4096,jumprelu:768:24576:4096,"
                                      "topk:768:24576:4096,batchtopk:768:24576:4096";
  saes::keep_freed_memory();  // as the saes apps do (SAES_KEEP_FREED_MEMORY=0: glibc defaults)
  saes::keep_freed_memory();  // as the saes apps do (SAES_KEEP_FREED_MEMORY=0: glibc defaults)
  at::set_num_threads(threads);
  const std::vector<Workload> workloads = parse(spec);
  Target target;
  if (argc > 5) target.device = argv[5];
  if (argc > 6 && std::string(argv[6]) == "bf16") target.dtype = saes::DType::kBFloat16;
  const char* dtype_name = target.dtype == saes::DType::kBFloat16 ? "bf16" : "fp32";
  const std::string only = argc > 4 ? argv[4] : "all";
  if (only == "sparse" || only == "dense" || only == "ops") {
    const auto kernels = only == "sparse" ? sd::SparseKernels::kAuto : sd::SparseKernels::kOff;
    const auto backend = only == "ops" ? sd::SparseBackend::kOps : sd::SparseBackend::kAuto;
    for (const auto& w : workloads) {
      fmt::print("{} {} step {:.4f} s\n", w.key(), only,
                 run(w, kernels, reps, target, backend).step_s);
    }
    return 0;
  }

  // The peak: a square product large enough to saturate the device (8192³ on a GPU).
  const std::int64_t peak_n = target.cuda() ? 8192 : 2048;
  const double peak = gemm_gflops(peak_n, peak_n, peak_n, false, 3, target);
  fmt::print(
      "## matrix products, {} {}, {} threads\n\n| product | GFLOP/s | share of peak |\n"
      "|---|---|---|\n",
      target.device, dtype_name, threads);
  fmt::print("| peak: [{}x{}]·[{}x{}] | {:.1f} | 100% |\n", peak_n, peak_n, peak_n, peak_n, peak);
  for (const auto& w : workloads) {
    if (&w != &workloads.front() && w.d == workloads.front().d &&
        w.d_sae == workloads.front().d_sae && w.batch == workloads.front().batch) {
      continue;
    }
    const double enc = gemm_gflops(w.batch, w.d, w.d_sae, true, 2, target);
    fmt::print("| encoder addmm [{}x{}]·[{}x{}] | {:.1f} | {:.0f}% |\n", w.batch, w.d, w.d, w.d_sae,
               enc, 100.0 * enc / peak);
  }
  std::fflush(stdout);

  // Rounds: each round times PyTorch, then saes, on one workload, so that both see the machine in
  // the same state (a shared VM's speed drifts by ±20% over minutes); the ratios are the median of
  // the rounds' ratios, the seconds the best over all rounds.
  const char* rounds_env = std::getenv("SAES_BENCH_ROUNDS");
  const int rounds = std::max(1, rounds_env != nullptr ? std::atoi(rounds_env) : 1);
  const char* unit = target.cuda() ? "ms" : "s";
  fmt::print(
      "\n## training step, {}, {} threads, {}{}, best of {}{}\n\n", target.device, threads,
      dtype_name,
      target.dtype == saes::DType::kBFloat16 ? " (torch: fp32 parameters, bf16 autocast)" : "",
      reps,
      rounds > 1 ? fmt::format(", {} interleaved rounds (ratios: median of the rounds)", rounds)
                 : std::string());
  fmt::print(
      "| workload | torch {0} | saes dense {0} | saes sparse {0} | path | dense vs torch | "
      "sparse vs torch | sparse tokens/s | Adam {0} | SparseAdam {0} |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n",
      unit);
  std::fflush(stdout);
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t m = v.size() / 2;
    return v.size() % 2 == 1 ? v[m] : 0.5 * (v[m - 1] + v[m]);
  };
  std::vector<std::string> round_lines;
  for (const auto& w : workloads) {
    // The sparse column forces the sparse step where it applies (TopK family, relu1pct): `auto`
    // keeps the dense step for 16-bit parameters on CUDA (docs/benchmarks.md).
    const bool eligible = sd::is_topk_family(act_of(w.act)) || w.act == "relu1pct";
    double theirs = INFINITY;
    Ours dense, sparse;
    dense.step_s = sparse.step_s = INFINITY;
    std::vector<double> dense_ratio, sparse_ratio;
    for (int r = 0; r < rounds; ++r) {
      const auto torch_s = torch_reference(threads, reps, w.key(), target);
      const auto it = torch_s.find(w.key());
      const double t = it == torch_s.end() ? NAN : it->second;
      const Ours d = run(w, sd::SparseKernels::kOff, reps, target);
      const Ours sp =
          run(w, eligible ? sd::SparseKernels::kOn : sd::SparseKernels::kAuto, reps, target);
      theirs = std::min(theirs, t);
      if (d.step_s < dense.step_s) dense = d;
      if (sp.step_s < sparse.step_s) sparse = sp;
      dense_ratio.push_back(t / d.step_s);
      sparse_ratio.push_back(t / sp.step_s);
    }
    if (rounds > 1) {
      round_lines.push_back(fmt::format("{}: dense {:.2f}x, sparse {:.2f}x", w.key(),
                                        fmt::join(dense_ratio, "x / "),
                                        fmt::join(sparse_ratio, "x / ")));
    }
    // Seconds on the CPU; milliseconds on a GPU, where a step takes a few of them.
    const double u = target.cuda() ? 1e3 : 1.0;
    fmt::print(
        "| {} | {:.3f} | {:.3f} | {:.3f} | {} | {:.2f}x | {:.2f}x | {:.0f} | {:.3f} | {:.3f} |\n",
        w.key(), theirs * u, dense.step_s * u, sparse.step_s * u,
        sparse.sparse ? "sparse" : "dense", median(dense_ratio), median(sparse_ratio),
        static_cast<double>(w.batch) / sparse.step_s, sparse.adam_s * u, sparse.sparse_adam_s * u);
    std::fflush(stdout);
  }
  if (!round_lines.empty()) {
    fmt::print("\nper round (PyTorch ÷ saes):\n");
    for (const auto& line : round_lines) fmt::print("- {}\n", line);
  }
  return 0;
}

// Benchmark: one SAE training step (fused forward + manual backward + an in-place Adam update)
// for ReLU, JumpReLU and TopK(k=32) at d=768, d_sae=24576, batch 4096 and a stories260K-sized
// ReLU SAE (d=64, d_sae=512), fp32, vs PyTorch eager autograd + torch.optim.Adam
// (bench/reference/train_step.py, /usr/bin/python3, same threads). Prints best-of-N s/step.
// Usage: bench_train_step [threads [reps [workloads]]], workloads "act:d:d_sae:batch,...".
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/format.h>

#include "saes/dictionaries/sae.h"

namespace sd = saes::dictionaries;

namespace {

struct Workload {
  std::string act;
  std::int64_t d = 0, d_sae = 0, batch = 0;
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

/// Adam (torch defaults, eps 1e-8, no weight decay) written in place over the parameters.
class Adam {
 public:
  explicit Adam(std::vector<sd::ParameterRef> params) : params_(std::move(params)) {
    for (auto& p : params_) {
      m_.push_back(at::zeros_like(p.value));
      v_.push_back(at::zeros_like(p.value));
    }
  }
  void step(double lr) {
    ++t_;
    const double b1 = 0.9, b2 = 0.999;
    const double c1 = 1 - std::pow(b1, t_), c2 = 1 - std::pow(b2, t_);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      m_[i].mul_(b1).add_(params_[i].grad, 1 - b1);
      v_[i].mul_(b2).addcmul_(params_[i].grad, params_[i].grad, 1 - b2);
      params_[i].value.addcdiv_(m_[i], (v_[i] / c2).sqrt_().add_(1e-8), -lr / c1);
    }
  }

 private:
  std::vector<sd::ParameterRef> params_;
  std::vector<at::Tensor> m_, v_;
  int t_ = 0;
};

struct Timing {
  double wall_s = 1e30;
  double cpu_s = 1e30;
};

Timing run(const Workload& w, int reps) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = w.d;
  cfg.expansion_factor = static_cast<double>(w.d_sae) / static_cast<double>(w.d);
  cfg.act_fn = w.act == "relu"       ? sd::ActFn::kRelu
               : w.act == "jumprelu" ? sd::ActFn::kJumpRelu
                                     : sd::ActFn::kTopK;
  cfg.top_k = 32;
  cfg.norm_activation = sd::NormActivation::kBatchWise;
  cfg.hook_point_in = cfg.hook_point_out = "h";
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  sd::SparseAutoEncoder sae(cfg);
  sae.init_parameters({1.0, 1.0, std::log(0.1)}, gen);
  sae.init_encoder_with_decoder_transpose(1.0);
  Adam adam(sae.parameters());
  sd::LossSettings ls;
  if (w.act != "topk") {
    ls.sparsity = sd::SparsityPenalty::kPower;
    ls.l1_coefficient = 1e-4;
  }
  const at::Tensor x = at::randn({w.batch, w.d}, gen);
  auto step = [&] {
    sae.forward_backward({x, x, {}, {}}, ls);
    adam.step(1e-4);
  };
  step();
  Timing best;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const std::clock_t cpu_start = std::clock();
    step();
    best.wall_s =
        std::min(best.wall_s,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    best.cpu_s = std::min(best.cpu_s, static_cast<double>(std::clock() - cpu_start) /
                                          static_cast<double>(CLOCKS_PER_SEC));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 2;
  const std::string spec = argc > 3 ? argv[3]
                                    : "relu:768:24576:4096,jumprelu:768:24576:4096,"
                                      "topk:768:24576:4096,relu:64:512:4096";
  at::set_num_threads(threads);
  std::map<std::string, Timing> torch_s;
  const std::string command = fmt::format(
      "/usr/bin/python3 bench/reference/train_step.py --threads {} --reps {} --workloads {}",
      threads, reps, spec);
  if (std::FILE* pipe = popen(command.c_str(), "r")) {
    char act[32];
    long d = 0, s = 0, b = 0;
    double sec = 0, cpu = 0;
    while (std::fscanf(pipe, "%31s %ld %ld %ld %lf %lf", act, &d, &s, &b, &sec, &cpu) == 6) {
      torch_s[fmt::format("{}:{}:{}:{}", act, d, s, b)] = {sec, cpu};
    }
    pclose(pipe);
  }
  fmt::print(
      "| workload | threads | saes s/step | saes tokens/s | torch s/step | torch tokens/s | "
      "speed-up (wall) | saes CPU s | torch CPU s | speed-up (CPU) |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& w : parse(spec)) {
    const std::string key = fmt::format("{}:{}:{}:{}", w.act, w.d, w.d_sae, w.batch);
    const Timing ours = run(w, reps);
    const auto it = torch_s.find(key);
    const Timing theirs = it == torch_s.end() ? Timing{NAN, NAN} : it->second;
    const double batch = static_cast<double>(w.batch);
    fmt::print(
        "| {} | {} | {:.4f} | {:.0f} | {:.4f} | {:.0f} | {:.2f}x | {:.3f} | {:.3f} | {:.2f}x |\n",
        key, threads, ours.wall_s, batch / ours.wall_s, theirs.wall_s, batch / theirs.wall_s,
        theirs.wall_s / ours.wall_s, ours.cpu_s, theirs.cpu_s, theirs.cpu_s / ours.cpu_s);
    std::fflush(stdout);
  }
  return 0;
}

// Benchmark: transformer forward tokens/s (to logits, fp32, CPU) on stories260K (batch 32 x 256)
// and a GPT-2-small-shaped model with random weights (batch 8 x 128) vs the same forwards in
// PyTorch eager (bench/reference/lm_forward.py, /usr/bin/python3, same thread count).
// Usage: bench_lm_forward [stories260K.bin [threads]]; on a shared machine use 1 thread.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/randint.h>
#include <fmt/format.h>

#include "saes/lm/hf_model.h"
#include "saes/lm/llama2c_loader.h"

#include "random_gpt2.h"
#include "timing.h"

namespace {

using saes::lm::Transformer;

using saes::bench::best_seconds;
using saes::bench::random_gpt2_small;

std::map<std::string, double> run_reference(const std::string& model, int threads) {
  const auto script =
      std::filesystem::path(SAES_SOURCE_DIR) / "bench" / "reference" / "lm_forward.py";
  const std::string command = fmt::format("/usr/bin/python3 {} --model {} --threads {} --reps 2",
                                          script.string(), model, threads);
  std::map<std::string, double> out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char name[64];
  double value = 0;
  while (std::fscanf(pipe, "%63s %lf", name, &value) == 2) out[name] = value;
  pclose(pipe);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path;
  if (argc > 1) {
    model_path = argv[1];
  } else if (const char* assets = std::getenv("SAES_TEST_ASSETS")) {
    model_path = std::string(assets) + "/llama2c-stories260K/stories260K.bin";
  } else {
    std::fprintf(stderr,
                 "usage: bench_lm_forward [stories260K.bin [threads]] (or set SAES_TEST_ASSETS)\n");
    return 2;
  }
  const int threads =
      argc > 2 ? std::atoi(argv[2]) : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(threads);
  at::Generator gen = at::detail::createCPUGenerator(0);
  std::map<std::string, double> ours;
  {
    const Transformer stories = saes::lm::load_llama2c(model_path);
    const at::Tensor tokens = at::randint(512, {32, 256}, gen);
    ours["stories260K"] = 32.0 * 256 / best_seconds([&] { stories.logits(tokens); }, 3);
  }
  {
    const Transformer gpt2 = random_gpt2_small(gen);
    const at::Tensor tokens = at::randint(50257, {8, 128}, gen);
    ours["gpt2-small"] = 8.0 * 128 / best_seconds([&] { gpt2.logits(tokens); }, 2);
  }
  const std::map<std::string, double> torch_eager = run_reference(model_path, threads);
  fmt::print("lm forward to logits, fp32, CPU, {} threads (best of reps)\n", threads);
  fmt::print("{:<34} {:>14} {:>16} {:>8}\n", "workload", "saes tok/s", "torch eager tok/s",
             "ratio");
  for (const auto& [name, value] : ours) {
    const auto it = torch_eager.find(name);
    const double ref = it == torch_eager.end() ? 0.0 : it->second;
    const std::string label =
        name == "stories260K" ? "stories260K (32 x 256)" : "gpt2-small random (8 x 128)";
    fmt::print("{:<34} {:>14.0f} {:>16.0f} {:>8.2f}\n", label, value, ref,
               ref > 0 ? value / ref : 0.0);
  }
  return 0;
}

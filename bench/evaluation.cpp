// Benchmark: evaluation tokens/s on stories260K (fp32, CPU, batch 16 x 256 random tokens, a random
// ReLU SAE of 4096 features at blocks.2.hook_resid_post): reconstruction-only and full downstream
// (clean + spliced + zero- + mean-ablated forwards) relative to one plain forward to the logits.
// Usage: bench_evaluation [stories260K.bin [threads]]; on a shared machine use 1 thread.
#include "saes/analysis/evaluation.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randint.h>
#include <fmt/format.h>

#include "saes/dictionaries/sae.h"
#include "saes/lm/llama2c_loader.h"
#include "saes/lm/transformer.h"

#include "timing.h"

namespace {

using saes::bench::best_seconds;

}  // namespace

int main(int argc, char** argv) {
  const std::string path =
      argc > 1 ? argv[1]
               : std::string(std::getenv("SAES_TEST_ASSETS") ? std::getenv("SAES_TEST_ASSETS")
                                                             : "/work/shared/assets") +
                     "/llama2c-stories260K/stories260K.bin";
  at::set_num_threads(argc > 2 ? std::atoi(argv[2]) : 1);
  const saes::lm::Transformer model = saes::lm::load_llama2c(path);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const int64_t batch = 16, seq = 256;
  saes::data::TokenBatch b;
  b.tokens = at::randint(1, model.spec().d_vocab, {batch, seq}, gen, at::kLong);
  b.attention_mask = at::ones({batch, seq}, at::kInt);
  b.mask = at::ones({batch, seq}, at::kInt);
  b.mask.select(1, 0).zero_();
  saes::dictionaries::SparseDictionaryConfig cfg;
  cfg.d_model = model.spec().d_model;
  cfg.expansion_factor = 4096.0 / static_cast<double>(cfg.d_model);
  cfg.norm_activation = saes::dictionaries::NormActivation::kInference;
  cfg.hook_point_in = cfg.hook_point_out = "blocks.2.hook_resid_post";
  saes::dictionaries::SparseAutoEncoder sae(cfg);
  sae.init_parameters({0.1, 0.1, std::nullopt}, gen);

  const double tokens = static_cast<double>(batch * seq);
  const double forward = best_seconds([&] { (void)model.logits(b.tokens, &b.attention_mask); }, 3);
  const auto eval_seconds = [&](bool downstream) {
    saes::analysis::EvalOptions options;
    options.downstream = downstream;
    return best_seconds(
        [&] {
          saes::analysis::Evaluator evaluator(sae, model, options);
          evaluator.add(b);
        },
        3);
  };
  const double recon = eval_seconds(false);
  const double full = eval_seconds(true);
  fmt::print("{:<40} {:>12} {:>10}\n", "stories260K, 16x256 tokens, 1 SAE", "tokens/s",
             "vs forward");
  fmt::print("{:<40} {:>12.0f} {:>10.2f}\n", "plain forward to logits", tokens / forward, 1.0);
  fmt::print("{:<40} {:>12.0f} {:>10.2f}\n", "eval, reconstruction only", tokens / recon,
             forward / recon);
  fmt::print("{:<40} {:>12.0f} {:>10.2f}\n", "eval, + downstream (4 forwards)", tokens / full,
             forward / full);
  return 0;
}

// Benchmark: feature analysis throughput relative to the pass it rides on (SAE encode of 2-D
// activations, [contexts, 128, d]), and the analyzer's memory for growing token budgets (it must
// stay flat: per-feature heaps). Synthetic Gaussian activations, fp32, TopK and ReLU SAEs; with
// SAES_TEST_ASSETS set also stories260K forward + encode (layer 3, TopK 512) vs + analysis.
// Usage: bench_analysis [threads [batches [workloads]]], workloads "act:d:d_sae,...".
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <fmt/format.h>

#include "saes/analysis/feature_analyzer.h"
#include "saes/dictionaries/sae.h"
#include "saes/lm/hf_folder.h"
#include "saes/lm/hooks.h"

namespace sd = saes::dictionaries;
namespace sa = saes::analysis;

namespace {

constexpr std::int64_t kContexts = 16;
constexpr std::int64_t kSeq = 128;

struct Workload {
  std::string act;
  std::int64_t d = 0, d_sae = 0;
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
    rest >> w.d >> sep >> w.d_sae;
    out.push_back(w);
  }
  return out;
}

sa::AnalyzerOptions options() {
  sa::AnalyzerOptions o;
  o.bands = {{"non_activating", 0.3, 20, 50}, {"top_activations", 1.0, 10, 0}};
  return o;
}

struct Result {
  double encode_tok_s = 0;
  double analyze_tok_s = 0;
  std::vector<std::pair<std::int64_t, std::int64_t>> memory;  ///< (tokens, bytes)
};

std::unique_ptr<sd::SparseAutoEncoder> make_sae(const Workload& w, at::Generator& gen) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = w.d;
  cfg.expansion_factor = static_cast<double>(w.d_sae) / static_cast<double>(w.d);
  cfg.act_fn = w.act == "relu" ? sd::ActFn::kRelu : sd::ActFn::kTopK;
  cfg.top_k = 32;
  cfg.norm_activation = sd::NormActivation::kInference;
  cfg.hook_point_in = cfg.hook_point_out = "h";
  auto sae = std::make_unique<sd::SparseAutoEncoder>(cfg);
  sae->init_parameters({1.0, 1.0, std::nullopt}, gen);
  sae->init_encoder_with_decoder_transpose(1.0);
  return sae;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Tokens/s of stories260K forward (layer 3) + encode, without and with the analyzer.
std::pair<double, double> run_lm(const std::filesystem::path& assets, int batches) {
  saes::lm::LanguageModelConfig lm_cfg;
  lm_cfg.model_from_pretrained_path = assets / "llama2c-stories260K/stories260K.bin";
  const auto lm = saes::lm::load_language_model(lm_cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const auto sae = make_sae({"topk", 64, 512}, gen);
  const at::Tensor tokens = at::randint(0, 512, {kContexts, kSeq}, gen);
  saes::lm::HookSet hooks;
  hooks.capture("blocks.3.hook_resid_post");
  auto encode = [&] {
    const at::Tensor x = lm.model.forward(tokens, nullptr, hooks).at("blocks.3.hook_resid_post");
    return sae->encode(x.flatten(0, 1)).view({kContexts, kSeq, -1});
  };
  sa::FeatureAnalyzer a(512, options());
  a.add_batch(encode(), tokens, at::Tensor());
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < batches; ++i) encode();
  const double plain = static_cast<double>(kContexts * kSeq * batches) / seconds_since(start);
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < batches; ++i) a.add_batch(encode(), tokens, at::Tensor());
  const double analyzed = static_cast<double>(kContexts * kSeq * batches) / seconds_since(start);
  return {plain, analyzed};
}

Result run(const Workload& w, int batches) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const auto sae_ptr = make_sae(w, gen);
  sd::SparseAutoEncoder& sae = *sae_ptr;
  std::vector<at::Tensor> xs;
  for (int i = 0; i < 4; ++i) xs.push_back(at::randn({kContexts, kSeq, w.d}, gen));
  const at::Tensor tokens = at::randint(0, 512, {kContexts, kSeq}, gen);
  const at::Tensor mask = at::ones({kContexts, kSeq}, at::kBool);
  auto encode = [&](int i) {
    const at::Tensor& x = xs[static_cast<std::size_t>(i % 4)];
    return sae.encode(x.flatten(0, 1)).view({kContexts, kSeq, -1});
  };
  const double tokens_per_batch = static_cast<double>(kContexts * kSeq);
  auto timed = [&](auto&& body) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < batches; ++i) body(i);
    return tokens_per_batch * batches / seconds_since(start);
  };
  Result r;
  encode(0);
  r.encode_tok_s = timed([&](int i) { encode(i); });
  sa::FeatureAnalyzer warm(w.d_sae, options());
  warm.add_batch(encode(0), tokens, mask);
  r.analyze_tok_s = timed([&](int i) { warm.add_batch(encode(i), tokens, mask); });
  sa::FeatureAnalyzer a(w.d_sae, options());
  for (int i = 0; i < 4 * batches; ++i) {
    a.add_batch(encode(i), tokens, mask);
    if (i + 1 == batches || i + 1 == 2 * batches || i + 1 == 4 * batches) {
      r.memory.emplace_back(a.n_analyzed_tokens(), a.memory_bytes());
    }
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int batches = argc > 2 ? std::atoi(argv[2]) : 8;
  const std::string spec = argc > 3 ? argv[3] : "topk:64:512,relu:64:512,topk:512:8192";
  at::set_num_threads(threads);
  fmt::print(
      "| workload | threads | encode tokens/s | encode+analyze tokens/s | ratio | analyzer MiB at "
      "1x / 2x / 4x tokens |\n|---|---|---|---|---|---|\n");
  for (const auto& w : parse(spec)) {
    const Result r = run(w, batches);
    std::string mem;
    for (const auto& [tok, bytes] : r.memory) {
      mem += fmt::format("{}{:.2f} ({}k tok)", mem.empty() ? "" : " / ",
                         static_cast<double>(bytes) / (1 << 20), tok / 1000);
    }
    fmt::print("| {}:{}:{} | {} | {:.0f} | {:.0f} | {:.2f}x | {} |\n", w.act, w.d, w.d_sae,
               threads, r.encode_tok_s, r.analyze_tok_s, r.analyze_tok_s / r.encode_tok_s, mem);
    std::fflush(stdout);
  }
  if (const char* assets = std::getenv("SAES_TEST_ASSETS")) {
    const auto [plain, analyzed] = run_lm(assets, batches);
    fmt::print("| stories260K forward + topk:64:512 | {} | {:.0f} | {:.0f} | {:.2f}x | - |\n",
               threads, plain, analyzed, analyzed / plain);
  }
  return 0;
}

// Benchmark: feature (model) parallel training. The real Trainer trains a SparseAutoEncoder whose
// d_sae is split over the M ranks of the job (model_parallel_size = M, data 1) on random batches;
// prints one table row on rank 0: ranks, the per-rank bytes of the dictionary's training state
// (parameters + gradients + Adam moments) next to the whole dictionary's (ratio), the largest
// peak RSS of any rank, s/step and the bytes each rank sends to the collectives per step.
// bench/model_parallel.sh runs it on 1, 2 and 4 ranks.
// Usage: [mpirun -np M] bench_model_parallel [d [d_sae [batch [steps [threads [act [k]]]]]]]
#include <chrono>
#include <cstdio>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/ops/full.h>
#include <sys/resource.h>

#include "saes/core/logging.h"
#include "saes/dictionaries/sae.h"
#include "saes/distributed/world.h"
#include "saes/training/dictionary_module.h"
#include "saes/training/trainer.h"

#include "cycling_source.h"

namespace sd = saes::dictionaries;
namespace st = saes::training;

namespace {

constexpr const char* kHook = "blocks.0.hook_resid_post";

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux: KiB
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t d = argc > 1 ? std::stoll(argv[1]) : 768;
  const std::int64_t d_sae = argc > 2 ? std::stoll(argv[2]) : 24576;
  const std::int64_t batch = argc > 3 ? std::stoll(argv[3]) : 1024;
  const std::int64_t steps = argc > 4 ? std::stoll(argv[4]) : 3;
  const int threads = argc > 5 ? std::stoi(argv[5]) : 1;
  const std::string act = argc > 6 ? argv[6] : "topk";
  const std::int64_t k = argc > 7 ? std::stoll(argv[7]) : 32;
  at::set_num_threads(threads);
  auto world =
      saes::distributed::make_world_communicator({}, saes::distributed::process_environment());
  saes::Logger logger(saes::LogLevel::kError);
  const int M = world->size();

  sd::SparseDictionaryConfig cfg;
  cfg.d_model = d;
  cfg.expansion_factor = static_cast<double>(d_sae) / static_cast<double>(d);
  cfg.act_fn = act == "relu" ? sd::ActFn::kRelu : sd::ActFn::kTopK;
  cfg.top_k = k;
  cfg.norm_activation = sd::NormActivation::kTokenWise;
  cfg.hook_point_in = kHook;
  cfg.hook_point_out = kHook;
  sd::SparseAutoEncoder sae(cfg, sd::FeatureShard{world.get()});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  sae.init_parameters({0.1, 0.1, std::nullopt}, gen);

  st::TrainerConfig config;
  config.amp_dtype = saes::DType::kFloat32;
  config.lr_warm_up_steps = st::StepsOrFraction::of_steps(1);
  config.n_checkpoints = 0;
  config.total_training_tokens = (steps + 1) * batch;
  if (cfg.act_fn == sd::ActFn::kRelu) config.sparsity_loss_type = st::SparsityLossType::kPower;
  st::DictionaryModule module(sae, config);
  saes::bench::CyclingSource source(kHook, d, batch);
  st::TrainerOptions options;
  options.progress = saes::ProgressMode::kOff;
  options.write_files = false;
  options.model_parallel = world.get();
  st::Trainer trainer(config, {st::TrainerMember{"", &module, config}}, source, logger, options);
  world->barrier();
  const auto start = std::chrono::steady_clock::now();
  trainer.fit();  // the first step (Adam state allocation) is included; steps + 1 in all
  world->barrier();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
      static_cast<double>(steps + 1);

  // Training state: value + gradient + two Adam moments of every parameter.
  std::int64_t local = 0, whole = 0;
  for (const auto& p : sae.parameters()) {
    const std::int64_t bytes =
        4 * p.value.numel() * static_cast<std::int64_t>(p.value.element_size());
    local += bytes;
    whole += p.feature_dim >= 0 ? bytes * M : bytes;
  }
  at::Tensor rss = at::full({1}, peak_rss_mib(), at::kDouble);
  world->all_reduce(rss, saes::distributed::ReduceOp::kMax);
  // Sent per rank per step (payload): x̂ partial sums [batch, d] fp32, TopK candidates [batch, k]
  // fp32 (plus the Aux-K selection when dead features exist), per-token feature sums [batch] fp32,
  // firing counts [d_sae / M] int64 gathered, a few float64 scalars.
  const std::int64_t comm = M == 1 ? 0
                                   : 4 * batch * d +
                                         (cfg.act_fn == sd::ActFn::kTopK ? 4 * batch * k : 0) +
                                         4 * batch + 8 * (d_sae / M) + 8 * 8;
  if (world->rank() == 0) {
    std::printf("| %s:%lld:%lld:%lld | %d | %.1f | %.1f | %.3f | %.0f | %.3f | %lld |\n",
                act.c_str(), static_cast<long long>(d), static_cast<long long>(d_sae),
                static_cast<long long>(batch), M, static_cast<double>(local) / (1 << 20),
                static_cast<double>(whole) / (1 << 20),
                static_cast<double>(local) / static_cast<double>(whole), rss.item<double>(),
                seconds, static_cast<long long>(comm));
  }
  return 0;
}

// Benchmark: data-parallel training steps. Runs the real Trainer (DictionaryModule around a
// SparseAutoEncoder, gradient all-reduce through the world communicator) on random global batches,
// each rank training on its slice. Launched once per rank count (bench/dp_scaling.sh runs 1 and
// 2 ranks and prints the efficiency); prints one table row on rank 0: ranks, s/step, tokens/s and
// the bytes each rank contributes to the collectives per step.
// Usage: [mpirun -np N] bench_dp_scaling [d [d_sae [global_batch [steps [threads [act]]]]]]
#include <chrono>
#include <cstdio>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

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

double run_steps(sd::SparseAutoEncoder& sae, const st::TrainerConfig& config, std::int64_t batch,
                 saes::distributed::Communicator& world, saes::Logger& logger) {
  st::DictionaryModule module(sae, config);
  saes::bench::CyclingSource source(kHook, sae.config().d_model, batch, world.rank(), world.size());
  st::TrainerOptions options;
  options.progress = saes::ProgressMode::kOff;
  options.write_files = false;
  options.data_parallel = &world;
  st::Trainer trainer(config, {st::TrainerMember{"", &module, config}}, source, logger, options);
  world.barrier();
  const auto start = std::chrono::steady_clock::now();
  trainer.fit();
  world.barrier();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t d = argc > 1 ? std::stoll(argv[1]) : 768;
  const std::int64_t d_sae = argc > 2 ? std::stoll(argv[2]) : 8192;
  const std::int64_t batch = argc > 3 ? std::stoll(argv[3]) : 4096;
  const std::int64_t steps = argc > 4 ? std::stoll(argv[4]) : 4;
  const int threads = argc > 5 ? std::stoi(argv[5]) : 1;
  const std::string act = argc > 6 ? argv[6] : "relu";
  at::set_num_threads(threads);
  auto world =
      saes::distributed::make_world_communicator({}, saes::distributed::process_environment());
  saes::Logger logger(saes::LogLevel::kError);

  sd::SparseDictionaryConfig cfg;
  cfg.d_model = d;
  cfg.expansion_factor = static_cast<double>(d_sae) / static_cast<double>(d);
  cfg.act_fn = act == "topk" ? sd::ActFn::kTopK : sd::ActFn::kRelu;
  cfg.top_k = 32;
  cfg.norm_activation = sd::NormActivation::kTokenWise;
  cfg.hook_point_in = kHook;
  cfg.hook_point_out = kHook;
  sd::SparseAutoEncoder sae(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  sae.init_parameters({0.1, 0.1, std::nullopt}, gen);

  st::TrainerConfig config;
  config.amp_dtype = saes::DType::kFloat32;
  config.lr_warm_up_steps = st::StepsOrFraction::of_steps(1);
  config.n_checkpoints = 0;
  config.sparsity_loss_type = st::SparsityLossType::kPower;
  config.total_training_tokens = batch;  // warm-up: one step
  run_steps(sae, config, batch, *world, logger);
  config.total_training_tokens = steps * batch;
  const double seconds = run_steps(sae, config, batch, *world, logger) / static_cast<double>(steps);

  std::int64_t grad_bytes = 0;
  for (const auto& p : sae.parameters()) grad_bytes += p.value.numel() * 4;
  const std::int64_t scalar_bytes = (d_sae + 16) * 8;  // losses, statistics, fired counts (float64)
  if (world->rank() == 0) {
    std::printf("| %s:%lld:%lld:%lld | %d | %d | %.4f | %.0f | %lld | %lld |\n", act.c_str(),
                static_cast<long long>(d), static_cast<long long>(d_sae),
                static_cast<long long>(batch), world->size(), threads, seconds,
                static_cast<double>(batch) / seconds,
                static_cast<long long>(world->size() > 1 ? grad_bytes : 0),
                static_cast<long long>(world->size() > 1 ? scalar_bytes : 0));
  }
  return 0;
}

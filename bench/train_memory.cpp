// Benchmark: peak RSS of a whole saes-train run (run_train: shard stream with prefetch, TopK SAE
// d=64, d_sae=512, metrics, final save) on real stories260K activations, for total_training_tokens
// N, 4·N and 10·N. Each run is a fresh child process (this program re-executed), its peak RSS read
// by wait4; a flat memory profile gives a ratio near 1. Usage: bench_train_memory [ASSETS_DIR
// (default $SAES_TEST_ASSETS)] [N=16384]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "saes/core/error.h"
#include "saes/core/threads.h"
#include "saes/distributed/single_process_communicator.h"
#include "saes/io/atomic_file.h"
#include "saes/runners/runners.h"

namespace {

namespace fs = std::filesystem;
using namespace saes;

constexpr const char* kHook = "blocks.3.hook_resid_post";
constexpr std::int64_t kBatchTokens = 1024;

int run_quietly(const auto& settings, auto runner) {
  Logger logger(LogLevel::kError);
  distributed::SingleProcessCommunicator world;
  runners::RunContext context{logger, world, ProgressMode::kOff};
  return runner(settings, context);
}

/// Per-token layer-3 activations of stories260K on TinyStories text (fp16 shards of 8192 tokens).
void generate(const fs::path& assets, const fs::path& out, std::int64_t tokens) {
  config::GenerateSettings s;
  s.model_name = "stories260K";
  s.model.model_from_pretrained_path = assets / "llama2c-stories260K/stories260K.bin";
  s.dataset_name = "tinystories";
  s.dataset.paths = {(assets / "corpora/tinystories/tinystories_validation_head.txt").string()};
  s.hook_points = {kHook};
  s.output_dir = out;
  s.target = data::ActivationTarget::kActivations1d;
  s.context_size = 256;
  s.packing = true;
  s.model_batch_size = 16;
  s.batch_size = 8192;
  s.total_tokens = tokens;
  s.override_dtype = DType::kFloat16;
  s.device_type = "cpu";
  run_quietly(s, &runners::run_generate);
}

/// The measured run: a TopK SAE over `tokens` tokens of the shards in `acts`.
int train(const fs::path& acts, const fs::path& out, std::int64_t tokens) {
  config::TrainSettings s;
  s.sae_name = "bench";
  s.sae_series = "bench";
  s.sae.hook_point_in = kHook;
  s.sae.hook_point_out = kHook;
  s.sae.d_model = 64;
  s.sae.expansion_factor = 8;
  s.sae.act_fn = dictionaries::ActFn::kTopK;
  s.sae.top_k = 16;
  s.sae.norm_activation = dictionaries::NormActivation::kDatasetWise;
  s.sae.device = "cpu";
  s.sae.dtype = DType::kFloat32;
  s.initializer = training::InitializerConfig{};
  s.trainer.amp_dtype = DType::kFloat32;
  s.trainer.lr = 2e-3;
  s.trainer.lr_warm_up_steps = training::StepsOrFraction::of_steps(10);
  s.trainer.total_training_tokens = tokens;
  s.trainer.log_frequency = 16;
  s.trainer.n_checkpoints = 0;
  s.trainer.exp_result_path = out;
  data::ActivationSourceConfig source;
  source.type = data::SourceType::kActivations;
  source.name = "acts";
  source.path.root = acts;
  s.activation_factory.sources = {source};
  s.activation_factory.target = data::ActivationTarget::kActivations1d;
  s.activation_factory.hook_points = {kHook};
  s.activation_factory.batch_size = kBatchTokens;
  s.device_type = "cpu";
  return run_quietly(s, &runners::run_train);
}

struct ChildResult {
  double wall_s = 0;
  double peak_rss_mib = 0;
};

/// Re-executes this program as `--train ACTS OUT TOKENS` and reads the child's peak RSS.
ChildResult measure(const fs::path& acts, const fs::path& out, std::int64_t tokens) {
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const std::string tokens_text = std::to_string(tokens);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  SAES_CHECK(pid >= 0, IoError, "fork failed");
  if (pid == 0) {
    execl(self.c_str(), self.c_str(), "--train", acts.c_str(), out.c_str(), tokens_text.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  rusage usage{};
  SAES_CHECK(wait4(pid, &status, 0, &usage) == pid, IoError, "wait4 failed");
  SAES_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, IoError,
             "the training child for {} tokens failed (status {})", tokens, status);
  SAES_CHECK(fs::exists(out / "sae_weights.safetensors"), DataError,
             "the run over {} tokens stopped early (the activation stream ended); use a smaller N",
             tokens);
  ChildResult r;
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.peak_rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 5 && std::string(argv[1]) == "--train") {
      keep_freed_memory();  // as saes-train does (core/threads.h)
      return train(argv[2], argv[3], std::stoll(argv[4]));
    }
    const char* env = std::getenv("SAES_TEST_ASSETS");
    const fs::path assets = argc > 1 ? fs::path(argv[1]) : fs::path(env ? env : "");
    const std::int64_t n = argc > 2 ? std::stoll(argv[2]) : 16384;
    SAES_CHECK(fs::exists(assets / "llama2c-stories260K"), IoError,
               "usage: bench_train_memory [ASSETS_DIR] [N]; {} lacks llama2c-stories260K",
               assets.string());
    const fs::path root =
        fs::temp_directory_path() / ("saes-bench-train-memory-" + std::to_string(getpid()));
    fs::create_directories(root);
    generate(assets, root / "acts", 10 * n);
    std::printf("saes-train peak RSS, TopK SAE d=64 d_sae=512, batch %lld tokens, fp16 shards\n",
                static_cast<long long>(kBatchTokens));
    std::printf("%-22s %8s %10s %14s\n", "total_training_tokens", "steps", "wall s",
                "peak RSS MiB");
    std::vector<ChildResult> results;
    for (const std::int64_t tokens : {n, 4 * n, 10 * n}) {
      results.push_back(measure(root / "acts", root / ("run-" + std::to_string(tokens)), tokens));
      std::printf("%-22lld %8lld %10.1f %14.1f\n", static_cast<long long>(tokens),
                  static_cast<long long>(tokens / kBatchTokens), results.back().wall_s,
                  results.back().peak_rss_mib);
    }
    std::printf("peak RSS ratio (10N / N): %.3f\n",
                results.back().peak_rss_mib / results.front().peak_rss_mib);
    {
      std::error_code ec;
      saes::io::remove_tree(root, ec);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_memory: %s\n", e.what());
    return 1;
  }
}

// saes-train: train sparse dictionaries (SAEs, transcoders) from activation shards or on the fly;
// `--resume RUN_DIR` continues an interrupted run from its newest complete checkpoint.
#include <filesystem>
#include <optional>

#include "common/cli.h"
#include "saes/core/error.h"
#include "saes/runners/runners.h"

namespace {

namespace fs = std::filesystem;

/// The run folder of a --resume path: the path itself, or for `<run>/checkpoints/step_<N>`, <run>.
fs::path run_folder_of(fs::path path) {
  path = path.lexically_normal();
  if (!path.has_filename()) path = path.parent_path();
  if (path.parent_path().filename() == "checkpoints") return path.parent_path().parent_path();
  return path;
}

/// The settings of a resumed run: `config` (default: the run's config.resolved.yaml) with the
/// overrides, resuming from `resume` and writing into its run folder.
saes::config::TrainSettings resume_settings(const fs::path& resume,
                                            const saes::cli::CommonOptions& options) {
  SAES_CHECK(fs::is_directory(resume), saes::IoError,
             "--resume {}: no such folder (expected a run folder or its checkpoints/step_<N>)",
             resume.string());
  const fs::path run_dir = run_folder_of(resume);
  fs::path config = options.config;
  if (config.empty()) {
    config = run_dir / saes::config::kResolvedConfigName;
    SAES_CHECK(fs::exists(config), saes::IoError,
               "--resume {}: {} does not exist; pass the run's config file too", resume.string(),
               config.string());
  }
  auto settings = saes::config::load_train_settings(config, options.overrides);
  settings.trainer.from_pretrained_path = resume;
  settings.trainer.exp_result_path = run_dir;
  return settings;
}

}  // namespace

int main(int argc, char** argv) {
  static const saes::cli::Tool kTool{
      "saes-train",
      "Train sparse dictionaries (SAEs, transcoders) on language-model activations, from shards "
      "written by saes-generate or on the fly; a `sweep:` list trains several on one stream. Run "
      "under mpirun for data/model parallelism.",
      "  saes-train configs/train-stories260k-topk.yaml\n"
      "  saes-train cfg.yaml --set trainer.lr=1e-4 --set sae.top_k=32\n"
      "  saes-train cfg.yaml --print-config > resolved.yaml\n"
      "  saes-train --resume data/runs/stories260k-l3-topk\n"
      "  mpirun --bind-to none -np 2 saes-train cfg.yaml --set data_parallel_size=2\n"};
  auto app = saes::cli::make_app(kTool);
  saes::cli::CommonOptions options;
  saes::cli::add_config_options(*app, options, /*config_required=*/false);
  std::optional<fs::path> resume;
  app->add_option("--resume", resume,
                  "Continue the run in RUN_DIR from its newest complete checkpoint (or from the "
                  "folder RUN_DIR/checkpoints/step_N); the config defaults to the run's "
                  "config.resolved.yaml");
  return saes::cli::run(kTool, *app, argc, argv, options.verbose, [&](saes::cli::Session& session) {
    SAES_CHECK(resume || !options.config.empty(), saes::ConfigError,
               "config is required (or --resume RUN_DIR)");
    const auto settings = resume ? resume_settings(*resume, options)
                                 : saes::config::load_train_settings(options.config,
                                                                     options.overrides);
    if (options.print_config) {
      session.print(saes::config::dump_yaml(settings));
      return 0;
    }
    auto context = session.configure(settings.logging, settings.threads, options);
    return saes::runners::run_train(settings, context);
  });
}

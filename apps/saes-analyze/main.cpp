// saes-analyze: feature statistics, top contexts and evaluation of a trained dictionary.
#include "common/cli.h"
#include "saes/runners/runners.h"

int main(int argc, char** argv) {
  static const saes::cli::Tool kTool{
      "saes-analyze",
      "Analyze a trained dictionary: per-feature statistics, top activating contexts, evaluation "
      "(reconstruction and downstream loss), stored in a SQLite database.",
      "  saes-analyze configs/analyze-stories260k.yaml\n"
      "  saes-analyze cfg.yaml --set analyzer.total_analyzing_tokens=1000000\n"
      "  mpirun --bind-to none -np 2 saes-analyze cfg.yaml --set model_parallel_size=2\n"};
  return saes::cli::run_config_tool(kTool, argc, argv, &saes::config::load_analyze_settings,
                                    &saes::runners::run_analyze);
}

// saes-convert: SAELens export/import, TopK→JumpReLU, folding, dtype conversion.
#include "common/cli.h"
#include "saes/runners/runners.h"

int main(int argc, char** argv) {
  static const saes::cli::Tool kTool{
      "saes-convert",
      "Convert dictionaries between formats (saes native, SAELens v5/v6, the original's "
      "checkpoints, sparsify), TopK→JumpReLU, fold/unfold the activation scale.",
      "  saes-convert convert.yaml\n"
      "  saes-convert convert.yaml --set input=results/run --set output=out/saelens\n"};
  return saes::cli::run_config_tool(kTool, argc, argv, &saes::config::load_convert_settings,
                                    &saes::runners::run_convert);
}

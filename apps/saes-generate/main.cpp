// saes-generate: run a language model over text and write activation shards.
#include "common/cli.h"
#include "saes/runners/runners.h"

int main(int argc, char** argv) {
  static const saes::cli::Tool kTool{
      "saes-generate",
      "Run a language model over text and write the activations of the chosen hook points to "
      "compressed shards (docs/shard-format.md). Resumable; run under mpirun to split the text.",
      "  saes-generate configs/generate-stories260k.yaml\n"
      "  saes-generate cfg.yaml --set total_tokens=1000000 --set model.device=cuda\n"
      "  mpirun --bind-to none -np 2 saes-generate cfg.yaml\n"};
  return saes::cli::run_config_tool(kTool, argc, argv, &saes::config::load_generate_settings,
                                    &saes::runners::run_generate);
}

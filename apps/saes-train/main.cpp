// saes-train: train sparse dictionaries (SAEs, transcoders) from activation shards or on the fly.
#include "common/cli.h"
#include "saes/runners/runners.h"

int main(int argc, char** argv) {
  static const saes::cli::Tool kTool{
      "saes-train",
      "Train sparse dictionaries (SAEs, transcoders) on language-model activations, from shards "
      "written by saes-generate or on the fly. Run under mpirun for data/model parallelism.",
      "  saes-train configs/train-stories260k-topk.yaml\n"
      "  saes-train cfg.yaml --set trainer.lr=1e-4 --set sae.top_k=32\n"
      "  saes-train cfg.yaml --print-config > resolved.yaml\n"
      "  mpirun --bind-to none -np 2 saes-train cfg.yaml --set data_parallel_size=2\n"};
  return saes::cli::run_config_tool(kTool, argc, argv, &saes::config::load_train_settings,
                                    &saes::runners::run_train);
}

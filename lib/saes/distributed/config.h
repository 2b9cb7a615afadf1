// Parallelism knobs of a run (how many ranks split the data and the model); the Mesh (mesh.h)
// turns them into communicators. Plain aggregate, free of torch and YAML (style.md §B3).
#pragma once

namespace saes::distributed {

struct ParallelismConfig {
  int data_parallel_size = 1;
  int model_parallel_size = 1;
};

}  // namespace saes::distributed

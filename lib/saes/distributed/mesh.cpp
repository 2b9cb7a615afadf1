// Mesh construction: validates the sizes against the launched ranks and splits the world into the
// data and model groups.
#include "saes/distributed/mesh.h"

#include "saes/core/error.h"

namespace saes::distributed {
namespace {

int checked_size(int size, const char* key) {
  SAES_CHECK(size >= 1, ConfigError, "{}: expected >= 1, got {}", key, size);
  return size;
}

const ParallelismConfig& validated(const Communicator& world, const ParallelismConfig& config) {
  const int product = checked_size(config.data_parallel_size, "data_parallel_size") *
                      checked_size(config.model_parallel_size, "model_parallel_size");
  if (product == world.size()) return config;
  if (world.size() == 1) {
    SAES_THROW(
        ConfigError,
        "data_parallel_size ({}) × model_parallel_size ({}) = {} needs {} ranks, but this is a "
        "single-process run; launch with `mpirun -np {}`",
        config.data_parallel_size, config.model_parallel_size, product, product, product);
  }
  SAES_THROW(ConfigError,
             "data_parallel_size ({}) × model_parallel_size ({}) = {} does not match the {} ranks "
             "launched by mpirun",
             config.data_parallel_size, config.model_parallel_size, product, world.size());
}

}  // namespace

Mesh::Mesh(Communicator& world, const ParallelismConfig& config)
    : world_(world),
      data_size_(validated(world, config).data_parallel_size),
      model_size_(config.model_parallel_size),
      data_rank_(world.rank() / model_size_),
      model_rank_(world.rank() % model_size_),
      data_(world.split(model_rank_, data_rank_)),
      model_(world.split(data_rank_, model_rank_)) {}

}  // namespace saes::distributed

// Mesh construction: validates the sizes against the launched ranks and splits the world into the
// data, head and model groups.
#include "saes/distributed/mesh.h"

#include <string>

#include <fmt/format.h>

#include "saes/core/error.h"

namespace saes::distributed {
namespace {

int checked_size(std::int64_t size, const char* key) {
  SAES_CHECK(size >= 1, ConfigError, "{}: expected >= 1, got {}", key, size);
  return static_cast<int>(size);
}

const ParallelismConfig& validated(const Communicator& world, const ParallelismConfig& config) {
  const int product = checked_size(config.data_parallel_size, "data_parallel_size") *
                      checked_size(config.head_parallel_size, "head_parallel_size") *
                      checked_size(config.model_parallel_size, "model_parallel_size");
  if (product == world.size()) return config;
  const std::string heads =
      config.head_parallel_size > 1
          ? fmt::format(" × head_parallel_size ({})", config.head_parallel_size)
          : "";
  if (world.size() == 1) {
    SAES_THROW(
        ConfigError,
        "data_parallel_size ({}){} × model_parallel_size ({}) = {} needs {} ranks, but this is a "
        "single-process run; launch with `mpirun -np {}`",
        config.data_parallel_size, heads, config.model_parallel_size, product, product, product);
  }
  SAES_THROW(ConfigError,
             "data_parallel_size ({}){} × model_parallel_size ({}) = {} does not match the {} "
             "ranks launched by mpirun",
             config.data_parallel_size, heads, config.model_parallel_size, product, world.size());
}

}  // namespace

Mesh::Mesh(Communicator& world, const ParallelismConfig& config)
    : world_(world),
      data_size_(static_cast<int>(validated(world, config).data_parallel_size)),
      model_size_(static_cast<int>(config.model_parallel_size)),
      head_size_(static_cast<int>(config.head_parallel_size)),
      data_rank_(world.rank() / (model_size_ * head_size_)),
      model_rank_(world.rank() % model_size_),
      head_rank_(world.rank() / model_size_ % head_size_),
      // one color per (head, model) pair, per (data, head) pair, per (data, model) pair
      data_(world.split(head_rank_ * model_size_ + model_rank_, data_rank_)),
      model_(world.split(data_rank_ * head_size_ + head_rank_, model_rank_)),
      head_(world.split(data_rank_ * model_size_ + model_rank_, head_rank_)) {}

}  // namespace saes::distributed

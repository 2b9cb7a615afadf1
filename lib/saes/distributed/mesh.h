// Mesh: the `data × head × model` process grid of a run, with one sub-communicator per axis.
// Layout: world rank = (data_rank * head_size + head_rank) * model_size + model_rank (the ranks
// of a model group are adjacent).
#pragma once

#include <memory>

#include "saes/distributed/communicator.h"
#include "saes/distributed/config.h"

namespace saes::distributed {

class Mesh {
 public:
  /// Collective over `world`, which must outlive the mesh. Throws ConfigError when a size is < 1 or
  /// data_parallel_size × head_parallel_size × model_parallel_size differs from world.size().
  Mesh(Communicator& world, const ParallelismConfig& config);
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  Communicator& world() const { return world_; }
  /// The data_size ranks that share this rank's head and model ranks (gradient all-reduce, data
  /// sharding).
  Communicator& data() const { return *data_; }
  /// The model_size ranks that share this rank's data and head ranks (feature-sharded tensor
  /// parallelism).
  Communicator& model() const { return *model_; }
  /// The head_size ranks that share this rank's data and model ranks (a crosscoder's heads split
  /// over them).
  Communicator& head() const { return *head_; }

  int data_rank() const { return data_rank_; }
  int data_size() const { return data_size_; }
  int model_rank() const { return model_rank_; }
  int model_size() const { return model_size_; }
  int head_rank() const { return head_rank_; }
  int head_size() const { return head_size_; }
  /// World rank 0: the rank that writes files and logs.
  bool is_primary() const { return world_.rank() == 0; }

 private:
  Communicator& world_;
  int data_size_;
  int model_size_;
  int head_size_;
  int data_rank_;
  int model_rank_;
  int head_rank_;
  std::unique_ptr<Communicator> data_;
  std::unique_ptr<Communicator> model_;
  std::unique_ptr<Communicator> head_;
};

}  // namespace saes::distributed

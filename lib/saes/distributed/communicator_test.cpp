// Single-process communicator contracts, launch detection and mesh validation. The multi-rank
// behaviour of the MPI communicator is tested under mpirun in tests/mpi/.
#include "saes/distributed/communicator.h"

#include <map>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/distributed/mesh.h"
#include "saes/distributed/single_process_communicator.h"
#include "saes/distributed/world.h"

using saes::distributed::Backend;
using saes::distributed::Communicator;
using saes::distributed::Mesh;
using saes::distributed::ParallelismConfig;
using saes::distributed::ReduceOp;
using saes::distributed::SingleProcessCommunicator;

namespace {

saes::distributed::EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace

TEST_CASE("single-process collectives are the identity for every op", "[distributed]") {
  SingleProcessCommunicator comm;
  CHECK(comm.name() == "single");
  CHECK(comm.rank() == 0);
  CHECK(comm.size() == 1);
  comm.barrier();
  const at::Tensor original = at::arange(12, at::kFloat).reshape({3, 4});
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin, ReduceOp::kAvg}) {
    at::Tensor t = original.clone();
    comm.all_reduce(t, op);
    CHECK(t.equal(original));
  }
  at::Tensor transposed = original.clone().t();
  comm.all_reduce(transposed, ReduceOp::kSum);
  CHECK(transposed.equal(original.t()));
  at::Tensor b = original.clone();
  comm.broadcast(b, 0);
  CHECK(b.equal(original));
  CHECK(comm.all_gather(original).equal(original));
  CHECK(comm.all_gather(at::scalar_tensor(3.0)).sizes() == at::IntArrayRef({1}));
  CHECK(comm.all_gather_variable(original).equal(original));
  CHECK(comm.reduce_scatter(original, ReduceOp::kSum).equal(original));
}

TEST_CASE("gathered tensors do not alias the input", "[distributed]") {
  SingleProcessCommunicator comm;
  const at::Tensor input = at::zeros({4}, at::kLong);
  at::Tensor gathered = comm.all_gather(input);
  gathered.fill_(7);
  CHECK(input.sum().item<std::int64_t>() == 0);
}

TEST_CASE("single-process string helpers return the input", "[distributed]") {
  SingleProcessCommunicator comm;
  const std::string original("hello\0world", 11);
  std::string text = original;
  comm.broadcast_string(text, 0);
  CHECK(text == original);
  const auto all = comm.all_gather_strings("abc");
  REQUIRE(all.size() == 1);
  CHECK(all[0] == "abc");
  CHECK(comm.all_gather_strings("").at(0).empty());
}

TEST_CASE("collectives reject bad roots, avg of integers and undividable scatters",
          "[distributed]") {
  SingleProcessCommunicator comm;
  at::Tensor t = at::ones({2}, at::kFloat);
  try {
    comm.broadcast(t, 1);
    FAIL("expected DistributedError");
  } catch (const saes::DistributedError& e) {
    CHECK_THAT(e.what(), Catch::Contains("root rank 1 is outside [0, 1)"));
  }
  at::Tensor ints = at::ones({2}, at::kInt);
  try {
    comm.all_reduce(ints, ReduceOp::kAvg);
    FAIL("expected UnsupportedError");
  } catch (const saes::UnsupportedError& e) {
    CHECK_THAT(e.what(), Catch::Contains("op avg needs a floating tensor, got int32"));
  }
  CHECK_THROWS_AS(comm.reduce_scatter(at::scalar_tensor(1.0), ReduceOp::kSum),
                  saes::DistributedError);
  CHECK_THROWS_AS(comm.all_gather_variable(at::scalar_tensor(1.0)), saes::DistributedError);
  at::Tensor undefined;
  CHECK_THROWS_AS(comm.all_reduce(undefined, ReduceOp::kSum), saes::DistributedError);
}

TEST_CASE("split of a single-process communicator is a single-process communicator",
          "[distributed]") {
  SingleProcessCommunicator comm;
  const auto sub = comm.split(3, 0);
  CHECK(sub->name() == "single");
  CHECK(sub->size() == 1);
}

TEST_CASE("a 1x1 mesh over one process has trivial groups", "[distributed]") {
  SingleProcessCommunicator world;
  const Mesh mesh(world, ParallelismConfig{});
  CHECK(&mesh.world() == &world);
  CHECK(mesh.data_size() == 1);
  CHECK(mesh.model_size() == 1);
  CHECK(mesh.data_rank() == 0);
  CHECK(mesh.model_rank() == 0);
  CHECK(mesh.data().size() == 1);
  CHECK(mesh.model().size() == 1);
  CHECK(mesh.is_primary());
}

TEST_CASE("a mesh whose size differs from the world is a ConfigError naming both",
          "[distributed]") {
  SingleProcessCommunicator world;
  try {
    const Mesh mesh(world, ParallelismConfig{2, 2});
    FAIL("expected ConfigError");
  } catch (const saes::ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Contains("data_parallel_size (2) × model_parallel_size (2) = 4") &&
                             Catch::Contains("mpirun -np 4"));
  }
  try {
    const Mesh mesh(world, ParallelismConfig{1, 0});
    FAIL("expected ConfigError");
  } catch (const saes::ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Contains("model_parallel_size: expected >= 1, got 0"));
  }
}

TEST_CASE("launch detection reads mpirun, PMI and PMIx variables", "[distributed]") {
  using saes::distributed::detect_launch;
  CHECK_FALSE(detect_launch(fake_env({})).parallel());
  CHECK_FALSE(detect_launch(fake_env({{"SLURM_NTASKS", "4"}})).parallel());
  const auto ompi = detect_launch(fake_env({{"OMPI_COMM_WORLD_SIZE", "4"}, {"PMI_SIZE", "2"}}));
  CHECK(ompi.launcher == "mpirun");
  CHECK(ompi.world_size == 4);
  CHECK(detect_launch(fake_env({{"PMI_SIZE", "2"}})).launcher == "pmi");
  const auto pmix = detect_launch(fake_env({{"PMIX_RANK", "0"}, {"SLURM_NTASKS", "8"}}));
  CHECK(pmix.launcher == "pmix");
  CHECK(pmix.world_size == 8);
  CHECK(detect_launch(fake_env({{"PMIX_RANK", "0"}})).world_size == 0);
  CHECK_THROWS_AS(detect_launch(fake_env({{"OMPI_COMM_WORLD_SIZE", "two"}})),
                  saes::DistributedError);
}

TEST_CASE("the world communicator is single-process without a launcher", "[distributed]") {
  using saes::distributed::make_world_communicator;
  const auto world = make_world_communicator({}, fake_env({}));
  CHECK(world->name() == "single");
  saes::distributed::WorldOptions forced;
  forced.backend = Backend::kSingle;
  CHECK(make_world_communicator(forced, fake_env({{"OMPI_COMM_WORLD_SIZE", "2"}}))->size() == 1);
  if (!saes::distributed::built_with_mpi()) {
    CHECK_THROWS_WITH(make_world_communicator({}, fake_env({{"OMPI_COMM_WORLD_SIZE", "2"}})),
                      Catch::Contains("rebuild with -DSAES_WITH_MPI=ON"));
  }
  if (!saes::distributed::built_with_nccl()) {
    saes::distributed::WorldOptions nccl;
    nccl.backend = Backend::kNccl;
    nccl.device = c10::Device(c10::kCUDA);
    CHECK_THROWS_AS(make_world_communicator(nccl, fake_env({})), saes::UnsupportedError);
  }
}

// Failure injection for tests/mpi/abort_test.sh (hidden: runs only when selected with "[abort]").
// Rank 1 throws and handles the error as the apps do (abort_all); the other ranks wait in a barrier
// and must be killed by the abort instead of hanging.
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/distributed/communicator.h"

#include "mpi/mpi_world.h"

namespace {

void fail_on_rank_one(int rank) {
  SAES_CHECK(rank != 1, saes::DataError,
             "injected failure on rank {} while the others wait in a barrier", rank);
}

}  // namespace

TEST_CASE("a rank that fails ends the whole job through abort_all", "[.][abort]") {
  saes::distributed::Communicator& world = saes::testing::mpi_world();
  try {
    fail_on_rank_one(world.rank());
    world.barrier();
  } catch (const saes::Error& e) {
    saes::distributed::abort_all(world, static_cast<int>(e.exit_code()), e.what());
  }
  FAIL("the barrier returned although rank 1 aborted");
}

TEST_CASE("a check that fails on one rank only fails the whole run", "[.][fails_on_rank_one]") {
  saes::distributed::Communicator& world = saes::testing::mpi_world();
  CHECK(world.rank() != 1);
  world.barrier();
}

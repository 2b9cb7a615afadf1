// The world communicator of saes_mpi_tests, created by tests/mpi/main.cpp before Catch runs the
// test cases. Every test case runs on every rank, in the same order, so collectives match up.
#pragma once

#include "saes/distributed/communicator.h"

namespace saes::testing {

/// The MPI communicator over all ranks of the test job.
saes::distributed::Communicator& mpi_world();

}  // namespace saes::testing

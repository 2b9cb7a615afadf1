// Entry point of saes_mpi_tests (run under `mpirun -np N`): starts MPI, runs the Catch2 session on
// every rank, and agrees on the outcome: the job fails if any rank failed. Rank 0 prints the Catch2
// report; the other ranks print their report only when they failed.
#define CATCH_CONFIG_RUNNER
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <catch2/catch.hpp>

#include "saes/distributed/mpi_communicator.h"

#include "mpi/mpi_world.h"
#include "support/temp_dir.h"

namespace saes::testing {
namespace {
saes::distributed::Communicator* world_of_this_run = nullptr;  // set once by main, read by tests
}  // namespace

saes::distributed::Communicator& mpi_world() { return *world_of_this_run; }

}  // namespace saes::testing

namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

int main(int argc, char** argv) {
  using saes::distributed::MpiCommunicator;
  auto world = MpiCommunicator::world(std::make_shared<saes::distributed::MpiSession>());
  saes::testing::world_of_this_run = world.get();
  at::set_num_threads(1);  // several ranks share few cores (--bind-to none)

  Catch::Session session;
  session.configData().useColour = Catch::UseColour::No;  // ranks write through pipes/ptys to logs
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  const saes::testing::TempDir report_dir;
  const std::filesystem::path report = report_dir / "catch_report.txt";
  if (world->rank() != 0) session.configData().outputFilename = report.string();

  const int failed = session.run();
  at::Tensor failures = at::full({1}, static_cast<std::int64_t>(failed), at::kLong);
  world->all_reduce(failures, saes::distributed::ReduceOp::kSum);
  if (world->rank() != 0 && failed > 0) {
    std::fprintf(stderr, "[rank %d/%d] %d failed test case(s):\n%s\n", world->rank(), world->size(),
                 failed, read_text(report).c_str());
  }
  const std::int64_t total = failures.item<std::int64_t>();
  if (world->rank() == 0 && total > 0) {
    std::fprintf(stderr, "saes_mpi_tests: %lld failed test case(s) summed over %d ranks\n",
                 static_cast<long long>(total), world->size());
  }
  return total > 0 ? 1 : 0;
}

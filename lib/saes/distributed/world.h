// Creating the world communicator: detects a parallel launch (mpirun, srun) from the launcher's
// environment and picks single-process, MPI or NCCL (CUDA tensors) accordingly.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <c10/core/Device.h>

#include "saes/distributed/communicator.h"

namespace saes::distributed {

enum class Backend {
  kAuto,    ///< MPI when launched by mpirun/srun, single process otherwise; NCCL on top for CUDA
  kSingle,  ///< single process, even under a launcher
  kMpi,     ///< MPI (also without a launcher: a 1-rank MPI "singleton")
  kNccl,    ///< NCCL for CUDA tensors, bootstrapped over MPI when launched, else over one process
};

/// Looks up an environment variable; injectable so tests need not touch the real environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
/// Reads the process environment (std::getenv).
EnvLookup process_environment();

/// What the environment says about how this process was launched.
struct LaunchInfo {
  std::string launcher;  ///< "mpirun" (Open MPI), "pmi" (MPICH/srun --mpi=pmi2), "pmix", "none"
  int world_size = 1;    ///< ranks announced by the launcher; 0 when it does not say (PMIx)
  bool parallel() const { return launcher != "none"; }
};

/// Checks, in order: OMPI_COMM_WORLD_SIZE (mpirun), PMI_SIZE (MPICH hydra, srun --mpi=pmi2),
/// PMIX_RANK (srun --mpi=pmix; size from SLURM_STEP_NUM_TASKS or SLURM_NTASKS when set).
/// A plain SLURM_NTASKS (sbatch without srun) is not a parallel launch: it starts one process.
LaunchInfo detect_launch(const EnvLookup& env);

struct WorldOptions {
  Backend backend = Backend::kAuto;
  /// Device the run computes on. kAuto adds NCCL for CUDA devices when NCCL is compiled in and
  /// more than one rank runs. A CUDA device without index uses GPU (local rank % GPU count).
  c10::Device device = c10::Device(c10::kCPU);
};

/// The communicator over all ranks of the job. It owns what it needs (the MPI session, the NCCL
/// communicator); communicators split from it share that ownership and stay valid on their own.
/// Throws DistributedError when the environment announces several ranks but this build has no
/// MPI, and UnsupportedError when kNccl is asked of a build without NCCL.
std::unique_ptr<Communicator> make_world_communicator(const WorldOptions& options,
                                                      const EnvLookup& env);

/// Whether this build has the MPI / NCCL communicators.
bool built_with_mpi();
bool built_with_nccl();

}  // namespace saes::distributed

// make_world_communicator: launch detection and the choice of implementation. The MPI and NCCL
// communicators are referenced only when compiled in (SAES_WITH_MPI, SAES_WITH_NCCL).
#include "saes/distributed/world.h"

#include <charconv>
#include <cstdlib>
#include <utility>

#include "saes/core/error.h"
#include "saes/distributed/single_process_communicator.h"
#ifdef SAES_WITH_MPI
#include "saes/distributed/mpi_communicator.h"
#endif
#ifdef SAES_WITH_NCCL
#include "saes/distributed/nccl_communicator.h"
#endif

namespace saes::distributed {
namespace {

/// The variable as a positive int; nullopt when unset. Throws when set to something else, since a
/// launcher that announces a garbled size would otherwise start a wrong run.
std::optional<int> positive_int(const EnvLookup& env, const std::string& name) {
  const std::optional<std::string> text = env(name);
  if (!text) return std::nullopt;
  int value = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  SAES_CHECK(ec == std::errc() && end == text->data() + text->size() && value > 0, DistributedError,
             "environment variable {}: expected a positive rank count, got \"{}\"", name, *text);
  return value;
}

std::unique_ptr<Communicator> make_host(bool use_mpi, int announced_size) {
  if (!use_mpi) return std::make_unique<SingleProcessCommunicator>();
#ifdef SAES_WITH_MPI
  (void)announced_size;
  return MpiCommunicator::world(std::make_shared<MpiSession>());
#else
  SAES_THROW(
      DistributedError,
      "the launcher started {} ranks, but this build has no MPI; rebuild with -DSAES_WITH_MPI=ON",
      announced_size > 0 ? std::to_string(announced_size) : std::string("several"));
#endif
}

std::unique_ptr<Communicator> add_nccl(std::unique_ptr<Communicator> host, c10::Device device) {
#ifdef SAES_WITH_NCCL
  return NcclCommunicator::create(std::move(host), device);
#else
  (void)host;
  (void)device;
  SAES_THROW(UnsupportedError,
             "this build has no NCCL communicator; rebuild on a machine with NCCL "
             "and a CUDA LibTorch (-DSAES_WITH_NCCL=ON)");
#endif
}

}  // namespace

EnvLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

LaunchInfo detect_launch(const EnvLookup& env) {
  if (const auto size = positive_int(env, "OMPI_COMM_WORLD_SIZE")) return {"mpirun", *size};
  if (const auto size = positive_int(env, "PMI_SIZE")) return {"pmi", *size};
  if (env("PMIX_RANK")) {
    std::optional<int> size = positive_int(env, "SLURM_STEP_NUM_TASKS");
    if (!size) size = positive_int(env, "SLURM_NTASKS");
    return {"pmix", size.value_or(0)};
  }
  return {"none", 1};
}

std::unique_ptr<Communicator> make_world_communicator(const WorldOptions& options,
                                                      const EnvLookup& env) {
  const LaunchInfo launch = detect_launch(env);
  switch (options.backend) {
    case Backend::kSingle:
      return std::make_unique<SingleProcessCommunicator>();
    case Backend::kMpi:
      return make_host(true, launch.world_size);
    case Backend::kNccl:
      return add_nccl(make_host(launch.parallel(), launch.world_size), options.device);
    case Backend::kAuto:
      break;
  }
  const bool use_mpi = launch.parallel() && (built_with_mpi() || launch.world_size != 1);
  std::unique_ptr<Communicator> host = make_host(use_mpi, launch.world_size);
  if (options.device.is_cuda() && built_with_nccl() && host->size() > 1) {
    return add_nccl(std::move(host), options.device);
  }
  return host;
}

bool built_with_mpi() {
#ifdef SAES_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool built_with_nccl() {
#ifdef SAES_WITH_NCCL
  return true;
#else
  return false;
#endif
}

}  // namespace saes::distributed

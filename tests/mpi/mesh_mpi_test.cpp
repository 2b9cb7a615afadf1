// Mesh on 2 and 4 ranks: every data × model factorization of the world (2×2, 1×4, 4×1 on 4 ranks)
// and every data × head × model one, group membership, and that a reduction over model(), head()
// or data() sums exactly the expected ranks.
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/distributed/mesh.h"

#include "mpi/mpi_world.h"

using saes::distributed::Communicator;
using saes::distributed::Mesh;
using saes::distributed::ParallelismConfig;
using saes::distributed::ReduceOp;
using saes::testing::mpi_world;

namespace {

/// World ranks of `group`, gathered over it (in group-rank order).
std::vector<std::int64_t> members(Communicator& group, int world_rank) {
  const at::Tensor mine = at::full({1}, static_cast<std::int64_t>(world_rank), at::kLong);
  const at::Tensor all = group.all_gather(mine);
  return std::vector<std::int64_t>(all.data_ptr<std::int64_t>(),
                                   all.data_ptr<std::int64_t>() + all.numel());
}

std::int64_t sum_of_world_ranks(Communicator& group, int world_rank) {
  at::Tensor t = at::full({1}, static_cast<std::int64_t>(world_rank), at::kLong);
  group.all_reduce(t, ReduceOp::kSum);
  return t.item<std::int64_t>();
}

}  // namespace

TEST_CASE("mesh groups follow rank = data_rank * model_size + model_rank", "[mpi]") {
  Communicator& world = mpi_world();
  for (int dp = 1; dp <= world.size(); ++dp) {
    if (world.size() % dp != 0) continue;
    const int mp = world.size() / dp;
    const Mesh mesh(world, ParallelismConfig{dp, mp});
    INFO("mesh " << dp << " x " << mp << ", world rank " << world.rank());
    CHECK(mesh.data_size() == dp);
    CHECK(mesh.model_size() == mp);
    CHECK(mesh.data_rank() == world.rank() / mp);
    CHECK(mesh.model_rank() == world.rank() % mp);
    CHECK(mesh.data().size() == dp);
    CHECK(mesh.model().size() == mp);
    CHECK(mesh.data().rank() == mesh.data_rank());
    CHECK(mesh.model().rank() == mesh.model_rank());
    CHECK(mesh.is_primary() == (world.rank() == 0));

    std::vector<std::int64_t> model_group;
    std::int64_t model_sum = 0;
    for (int m = 0; m < mp; ++m) {
      model_group.push_back(mesh.data_rank() * mp + m);
      model_sum += mesh.data_rank() * mp + m;
    }
    std::vector<std::int64_t> data_group;
    std::int64_t data_sum = 0;
    for (int d = 0; d < dp; ++d) {
      data_group.push_back(d * mp + mesh.model_rank());
      data_sum += d * mp + mesh.model_rank();
    }
    CHECK(members(mesh.model(), world.rank()) == model_group);
    CHECK(members(mesh.data(), world.rank()) == data_group);
    CHECK(sum_of_world_ranks(mesh.model(), world.rank()) == model_sum);
    CHECK(sum_of_world_ranks(mesh.data(), world.rank()) == data_sum);
  }
}

TEST_CASE("mesh groups follow rank = (data_rank * head_size + head_rank) * model_size + model_rank",
          "[mpi]") {
  Communicator& world = mpi_world();
  const int n = world.size();
  for (int dp = 1; dp <= n; ++dp) {
    for (int hp = 1; dp * hp <= n; ++hp) {
      if (n % (dp * hp) != 0) continue;
      const int mp = n / (dp * hp);
      ParallelismConfig config{dp, mp};
      config.head_parallel_size = hp;
      const Mesh mesh(world, config);
      INFO("mesh " << dp << " x " << hp << " x " << mp << ", world rank " << world.rank());
      const int r = world.rank();
      CHECK(mesh.data_rank() == r / (hp * mp));
      CHECK(mesh.head_rank() == r / mp % hp);
      CHECK(mesh.model_rank() == r % mp);
      CHECK(mesh.head_size() == hp);
      CHECK(mesh.head().rank() == mesh.head_rank());
      const auto at = [&](int d, int h, int m) {
        return static_cast<std::int64_t>((d * hp + h) * mp + m);
      };
      std::vector<std::int64_t> data_group, head_group, model_group;
      for (int d = 0; d < dp; ++d) data_group.push_back(at(d, mesh.head_rank(), mesh.model_rank()));
      for (int h = 0; h < hp; ++h) head_group.push_back(at(mesh.data_rank(), h, mesh.model_rank()));
      for (int m = 0; m < mp; ++m) model_group.push_back(at(mesh.data_rank(), mesh.head_rank(), m));
      CHECK(members(mesh.data(), r) == data_group);
      CHECK(members(mesh.head(), r) == head_group);
      CHECK(members(mesh.model(), r) == model_group);
      std::int64_t head_sum = 0;
      for (const std::int64_t m : head_group) head_sum += m;
      CHECK(sum_of_world_ranks(mesh.head(), r) == head_sum);
    }
  }
}

TEST_CASE("a mesh that does not cover the launched ranks is a ConfigError on every rank", "[mpi]") {
  Communicator& world = mpi_world();
  try {
    const Mesh mesh(world, ParallelismConfig{world.size(), 2});
    FAIL_CHECK("expected ConfigError");
  } catch (const saes::ConfigError& e) {
    const std::string want = fmt::format(
        "data_parallel_size ({}) × model_parallel_size (2) = {} does not match "
        "the {} ranks launched by mpirun",
        world.size(), 2 * world.size(), world.size());
    CHECK(std::string(e.what()) == want);
  }
  world.barrier();
}

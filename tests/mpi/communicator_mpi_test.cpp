// MPI communicator collectives on 2 and 4 ranks: every op and dtype, rank-dependent values (rank*10
// + index) so a wrong rank order or a missing rank shows up as a wrong number. Tests use CHECK,
// never REQUIRE, so that every rank keeps calling the same collectives after a failure.
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/distributed/communicator.h"

#include "mpi/mpi_world.h"

using saes::distributed::Communicator;
using saes::distributed::ReduceOp;
using saes::testing::mpi_world;

namespace {

/// [rows, 3] with value rank*10 + flat index, in `dtype`.
at::Tensor rank_values(int rank, at::ScalarType dtype, std::int64_t rows = 2) {
  return (at::arange(rows * 3, at::kDouble).reshape({rows, 3}) + 10.0 * rank).to(dtype);
}

/// op over rank_values of every rank, computed locally in float64.
at::Tensor expected_reduction(int size, ReduceOp op, std::int64_t rows = 2) {
  at::Tensor acc = rank_values(0, at::kDouble, rows);
  for (int r = 1; r < size; ++r) {
    const at::Tensor v = rank_values(r, at::kDouble, rows);
    if (op == ReduceOp::kMax) {
      acc = at::maximum(acc, v);
    } else if (op == ReduceOp::kMin) {
      acc = at::minimum(acc, v);
    } else {
      acc = acc + v;
    }
  }
  return op == ReduceOp::kAvg ? acc / size : acc;
}

/// rank_values, or for bool a rank-dependent pattern (element i is true iff (i + rank) % 3 == 0).
at::Tensor rank_pattern(int rank, at::ScalarType dtype) {
  if (dtype != at::kBool) return rank_values(rank, dtype);
  return (at::arange(6, at::kLong).reshape({2, 3}) + rank).remainder(3).eq(0);
}

bool same_values(const at::Tensor& got, const at::Tensor& want) {
  return got.sizes() == want.sizes() && got.to(at::kDouble).equal(want.to(at::kDouble));
}

const std::vector<at::ScalarType> kAllNumeric = {at::kFloat,    at::kDouble, at::kHalf,
                                                 at::kBFloat16, at::kLong,   at::kInt,
                                                 at::kShort,    at::kChar,   at::kByte};

std::vector<ReduceOp> ops_for(at::ScalarType dtype) {
  if (at::isFloatingType(dtype))
    return {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin, ReduceOp::kAvg};
  return {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin};
}

}  // namespace

TEST_CASE("mpi world reports its rank and size", "[mpi]") {
  Communicator& world = mpi_world();
  CHECK(world.name() == "mpi");
  CHECK(world.size() >= 2);
  CHECK(world.rank() >= 0);
  CHECK(world.rank() < world.size());
  world.barrier();
}

TEST_CASE("all_reduce gives every op over all ranks for every dtype", "[mpi]") {
  Communicator& world = mpi_world();
  for (at::ScalarType dtype : kAllNumeric) {
    for (ReduceOp op : ops_for(dtype)) {
      at::Tensor t = rank_values(world.rank(), dtype);
      world.all_reduce(t, op);
      INFO("dtype " << c10::toString(dtype) << ", op " << saes::distributed::reduce_op_name(op));
      CHECK(t.scalar_type() == dtype);
      CHECK(same_values(t, expected_reduction(world.size(), op).to(dtype)));
    }
  }
}

TEST_CASE("all_reduce of bool is logical or for sum and max, and for min", "[mpi]") {
  Communicator& world = mpi_world();
  // Element i is true on rank r iff i == r: "any" is true for i < size, "all" is never true.
  const at::Tensor mine = at::arange(6, at::kLong).eq(world.rank());
  const at::Tensor any = at::arange(6, at::kLong).lt(world.size());
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax}) {
    at::Tensor t = mine.clone();
    world.all_reduce(t, op);
    CHECK(t.equal(any));
  }
  at::Tensor all = mine.clone();
  world.all_reduce(all, ReduceOp::kMin);
  CHECK_FALSE(all.any().item<bool>());
  at::Tensor ones = at::ones({3}, at::kBool);
  world.all_reduce(ones, ReduceOp::kMin);
  CHECK(ones.all().item<bool>());
}

TEST_CASE("all_reduce of a bfloat16 sum accumulates in float32", "[mpi]") {
  Communicator& world = mpi_world();
  // Adding 1 to 256 in bf16 (spacing 2 there) rounds back to 256 every time; the float32 sum
  // 256 + (size - 1) is exact and rounds once: 257 → 256 for 2 ranks, 259 → 260 for 4 ranks.
  at::Tensor t = at::full({4}, world.rank() == 0 ? 256.0 : 1.0, at::kBFloat16);
  world.all_reduce(t, ReduceOp::kSum);
  const double want =
      at::scalar_tensor(256.0 + (world.size() - 1), at::kFloat).to(at::kBFloat16).item<double>();
  CHECK(t[0].item<double>() == want);
}

TEST_CASE("all_reduce writes back into non-contiguous views", "[mpi]") {
  Communicator& world = mpi_world();
  at::Tensor base = rank_values(world.rank(), at::kFloat, 4).t().contiguous();  // [3, 4]
  at::Tensor view = base.t();                                                   // [4, 3], strided
  REQUIRE_FALSE(view.is_contiguous());
  world.all_reduce(view, ReduceOp::kSum);
  CHECK(same_values(view, expected_reduction(world.size(), ReduceOp::kSum, 4)));
  CHECK(same_values(base, expected_reduction(world.size(), ReduceOp::kSum, 4).t()));

  at::Tensor wide = rank_values(world.rank(), at::kBFloat16, 4);
  at::Tensor every_other = wide.slice(0, 0, 4, 2);  // rows 0 and 2
  world.all_reduce(every_other, ReduceOp::kMax);
  const at::Tensor max = expected_reduction(world.size(), ReduceOp::kMax, 4);
  CHECK(same_values(wide.slice(0, 0, 4, 2), max.slice(0, 0, 4, 2)));
  CHECK(same_values(wide.slice(0, 1, 4, 2),
                    rank_values(world.rank(), at::kDouble, 4).slice(0, 1, 4, 2)));
}

TEST_CASE("broadcast from every root copies that root's tensor", "[mpi]") {
  Communicator& world = mpi_world();
  for (int root = 0; root < world.size(); ++root) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kLong, at::kBool}) {
      at::Tensor t = rank_pattern(world.rank(), dtype);
      world.broadcast(t, root);
      const at::Tensor want = rank_pattern(root, dtype);
      INFO("root " << root << ", dtype " << c10::toString(dtype));
      CHECK(same_values(t, want));
    }
  }
  at::Tensor strided = rank_values(world.rank(), at::kFloat, 4).t();
  world.broadcast(strided, world.size() - 1);
  CHECK(same_values(strided, rank_values(world.size() - 1, at::kDouble, 4).t()));
}

TEST_CASE("all_gather concatenates every rank's rows in rank order", "[mpi]") {
  Communicator& world = mpi_world();
  for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kLong, at::kChar}) {
    const at::Tensor gathered = world.all_gather(rank_values(world.rank(), dtype));
    CHECK(gathered.sizes() == at::IntArrayRef({2 * world.size(), 3}));
    CHECK(gathered.scalar_type() == dtype);
    for (int r = 0; r < world.size(); ++r) {
      INFO("block of rank " << r << ", dtype " << c10::toString(dtype));
      CHECK(same_values(gathered.slice(0, 2 * r, 2 * r + 2), rank_values(r, at::kDouble)));
    }
  }
  const at::Tensor scalars = world.all_gather(at::scalar_tensor(world.rank() * 1.5, at::kDouble));
  CHECK(same_values(scalars, at::arange(world.size(), at::kDouble) * 1.5));
  const at::Tensor strided = world.all_gather(rank_values(world.rank(), at::kFloat).t());
  CHECK(same_values(strided.slice(0, 0, 3), rank_values(0, at::kDouble).t()));
}

TEST_CASE("all_gather_variable concatenates uneven shards, including empty ones", "[mpi]") {
  Communicator& world = mpi_world();
  // Rank r contributes r rows: rank 0 none.
  const at::Tensor gathered =
      world.all_gather_variable(rank_values(world.rank(), at::kFloat, world.rank()));
  const std::int64_t total = world.size() * (world.size() - 1) / 2;
  CHECK(gathered.sizes() == at::IntArrayRef({total, 3}));
  std::int64_t row = 0;
  for (int r = 0; r < world.size(); ++r) {
    INFO("shard of rank " << r);
    CHECK(same_values(gathered.slice(0, row, row + r), rank_values(r, at::kDouble, r)));
    row += r;
  }
  const at::Tensor none = world.all_gather_variable(at::zeros({0, 5}, at::kInt));
  CHECK(none.sizes() == at::IntArrayRef({0, 5}));
}

TEST_CASE("reduce_scatter gives each rank its block of the reduction", "[mpi]") {
  Communicator& world = mpi_world();
  const std::int64_t rows = 2 * world.size();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kLong}) {
    for (ReduceOp op : ops_for(dtype)) {
      const at::Tensor block = world.reduce_scatter(rank_values(world.rank(), dtype, rows), op);
      const at::Tensor want = expected_reduction(world.size(), op, rows)
                                  .slice(0, 2 * world.rank(), 2 * world.rank() + 2);
      INFO("dtype " << c10::toString(dtype) << ", op " << saes::distributed::reduce_op_name(op));
      CHECK(block.scalar_type() == dtype);
      CHECK(same_values(block, want.to(dtype)));
    }
  }
  CHECK_THROWS_AS(world.reduce_scatter(at::zeros({world.size() + 1}, at::kFloat), ReduceOp::kSum),
                  saes::DistributedError);
}

TEST_CASE("strings are broadcast from a non-zero root and gathered by rank", "[mpi]") {
  Communicator& world = mpi_world();
  const int root = world.size() - 1;
  std::string text =
      world.rank() == root ? std::string("config from the last rank\0!", 27) : "stale";
  world.broadcast_string(text, root);
  CHECK(text == std::string("config from the last rank\0!", 27));

  const std::vector<std::string> all = world.all_gather_strings(std::string(world.rank(), 'x'));
  CHECK(all.size() == static_cast<std::size_t>(world.size()));
  for (int r = 0; r < static_cast<int>(all.size()); ++r) CHECK(all[r] == std::string(r, 'x'));
}

TEST_CASE("split groups ranks by color and orders them by key", "[mpi]") {
  Communicator& world = mpi_world();
  const int color = world.rank() % 2;
  const auto group = world.split(color, -world.rank());  // descending world rank
  const int members = (world.size() + 1 - color) / 2;
  CHECK(group->name() == "mpi");
  CHECK(group->size() == members);
  CHECK(group->rank() == members - 1 - world.rank() / 2);
  at::Tensor ranks = at::full({1}, static_cast<std::int64_t>(world.rank()), at::kLong);
  const at::Tensor gathered = group->all_gather(ranks);
  std::vector<std::int64_t> want;
  for (int r = world.size() - 1; r >= 0; --r) {
    if (r % 2 == color) want.push_back(r);
  }
  CHECK(same_values(gathered, at::tensor(want, at::kLong)));
}

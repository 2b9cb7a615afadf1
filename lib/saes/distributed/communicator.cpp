// Argument checks and layout handling shared by every Communicator, the collectives built from the
// primitive ones (variable all-gather, strings) and abort_all.
#include "saes/distributed/communicator.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/dtype.h"
#include "saes/core/error.h"

namespace saes::distributed {
namespace {

void check_tensor(const at::Tensor& t, std::string_view what) {
  SAES_CHECK(t.defined(), DistributedError, "{}: the tensor is undefined", what);
  from_torch(t.scalar_type());  // throws UnsupportedError for dtypes saes does not handle
}

void check_root(const Communicator& comm, int root, std::string_view what) {
  SAES_CHECK(root >= 0 && root < comm.size(), DistributedError,
             "{}: root rank {} is outside [0, {}) of the {} communicator", what, root, comm.size(),
             comm.name());
}

void check_op_dtype(const at::Tensor& t, ReduceOp op, std::string_view what) {
  SAES_CHECK(op != ReduceOp::kAvg || at::isFloatingType(t.scalar_type()), UnsupportedError,
             "{}: op avg needs a floating tensor, got {}", what,
             dtype_name(from_torch(t.scalar_type())));
}

/// The rows of every rank padded to the longest rank, gathered: [size * max_rows, ...] plus each
/// rank's real row count.
struct PaddedGather {
  at::Tensor rows;
  std::vector<std::int64_t> counts;
  std::int64_t max_rows = 0;
};

PaddedGather gather_padded(Communicator& comm, const at::Tensor& t) {
  PaddedGather out;
  const at::Tensor count = at::full({1}, t.size(0), at::TensorOptions().dtype(at::kLong));
  const at::Tensor counts = comm.all_gather(count);
  const std::int64_t* c = counts.data_ptr<std::int64_t>();
  out.counts.assign(c, c + comm.size());
  out.max_rows = *std::max_element(out.counts.begin(), out.counts.end());
  std::vector<std::int64_t> padded_shape = t.sizes().vec();
  padded_shape[0] = out.max_rows;
  at::Tensor padded = at::zeros(padded_shape, t.options());
  padded.narrow(0, 0, t.size(0)).copy_(t);
  out.rows = comm.all_gather(padded);
  return out;
}

}  // namespace

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
    case ReduceOp::kAvg:
      return "avg";
  }
  return "unknown";
}

void Communicator::all_reduce(at::Tensor& t, ReduceOp op) {
  check_tensor(t, "all_reduce");
  check_op_dtype(t, op, "all_reduce");
  if (t.is_contiguous()) {
    all_reduce_impl(t, op);
    return;
  }
  at::Tensor dense = t.contiguous();
  all_reduce_impl(dense, op);
  t.copy_(dense);
}

void Communicator::broadcast(at::Tensor& t, int root) {
  check_tensor(t, "broadcast");
  check_root(*this, root, "broadcast");
  if (t.is_contiguous()) {
    broadcast_impl(t, root);
    return;
  }
  at::Tensor dense = t.contiguous();
  broadcast_impl(dense, root);
  t.copy_(dense);
}

at::Tensor Communicator::all_gather(const at::Tensor& t) {
  check_tensor(t, "all_gather");
  const at::Tensor rows = t.dim() == 0 ? t.reshape({1}) : t;
  return all_gather_impl(rows.contiguous());
}

at::Tensor Communicator::all_gather_variable(const at::Tensor& t) {
  check_tensor(t, "all_gather_variable");
  SAES_CHECK(t.dim() >= 1, DistributedError,
             "all_gather_variable: expected a tensor with >= 1 dims, got a 0-dim tensor");
  const PaddedGather gathered = gather_padded(*this, t);
  std::vector<at::Tensor> pieces;
  for (int r = 0; r < size(); ++r) {
    pieces.push_back(gathered.rows.narrow(0, r * gathered.max_rows, gathered.counts[r]));
  }
  return at::cat(pieces, 0);
}

at::Tensor Communicator::reduce_scatter(const at::Tensor& t, ReduceOp op) {
  check_tensor(t, "reduce_scatter");
  check_op_dtype(t, op, "reduce_scatter");
  SAES_CHECK(t.dim() >= 1 && t.size(0) % size() == 0, DistributedError,
             "reduce_scatter: dim 0 must be divisible by the communicator size {}, got shape [{}]",
             size(), fmt::join(t.sizes().begin(), t.sizes().end(), ", "));
  return reduce_scatter_impl(t.contiguous(), op);
}

void Communicator::broadcast_string(std::string& text, int root) {
  check_root(*this, root, "broadcast_string");
  at::Tensor length =
      at::full({1}, static_cast<std::int64_t>(text.size()), at::TensorOptions().dtype(at::kLong));
  broadcast(length, root);
  at::Tensor bytes = at::empty({length.item<std::int64_t>()}, at::TensorOptions().dtype(at::kByte));
  // an empty tensor's data_ptr() is null, which memcpy must not get even for 0 bytes (UBSan)
  if (rank() == root && !text.empty()) std::memcpy(bytes.data_ptr(), text.data(), text.size());
  broadcast(bytes, root);
  text = bytes.numel() == 0 ? std::string()
                           : std::string(static_cast<const char*>(bytes.data_ptr()),
                                         static_cast<std::size_t>(bytes.numel()));
}

std::vector<std::string> Communicator::all_gather_strings(const std::string& text) {
  at::Tensor bytes =
      at::empty({static_cast<std::int64_t>(text.size())}, at::TensorOptions().dtype(at::kByte));
  if (!text.empty()) std::memcpy(bytes.data_ptr(), text.data(), text.size());
  const PaddedGather gathered = gather_padded(*this, bytes);
  const char* data = static_cast<const char*>(gathered.rows.data_ptr());
  std::vector<std::string> out;
  for (int r = 0; r < size(); ++r) {
    const auto count = static_cast<std::size_t>(gathered.counts[r]);
    out.push_back(count == 0 ? std::string() : std::string(data + r * gathered.max_rows, count));
  }
  return out;
}

void abort_all(Communicator& comm, int exit_code, std::string_view message) {
  if (comm.size() > 1) {
    std::fprintf(stderr, "[rank %d/%d] %.*s\n", comm.rank(), comm.size(),
                 static_cast<int>(message.size()), message.data());
  } else {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(message.size()), message.data());
  }
  std::fflush(stdout);
  std::fflush(stderr);
  comm.abort(exit_code);
  std::_Exit(exit_code);  // not reached; GCC does not apply [[noreturn]] through a virtual call
}

}  // namespace saes::distributed

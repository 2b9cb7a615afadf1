// MpiSession and MpiCommunicator. Every MPI call returns its error (MPI_ERRORS_RETURN) and is
// turned into a DistributedError carrying MPI's error string. float16/bfloat16 have no MPI type:
// they are reduced in float32 temporaries; gathers and broadcasts move raw bytes of any dtype.
#include "saes/distributed/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <mpi.h>

#include "saes/core/dtype.h"
#include "saes/core/error.h"

namespace saes::distributed {
namespace {

// MPI counts are `int`: in-place collectives are issued in chunks of at most this many elements.
constexpr std::int64_t kMaxChunk = std::int64_t{1} << 30;

void check_mpi(int rc, std::string_view call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(rc, text, &length);
  SAES_THROW(DistributedError, "{} failed: {}", call, std::string_view(text, length));
}

int checked_count(std::int64_t count, std::string_view what) {
  SAES_CHECK(count <= INT_MAX, UnsupportedError,
             "{}: {} elements per rank exceed MPI's int count limit; split the tensor", what,
             count);
  return static_cast<int>(count);
}

bool is_half(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

/// The type a reduction runs in: CPU, and float32 for float16/bfloat16.
bool needs_staging(const at::Tensor& t) { return !t.is_cpu() || is_half(t); }

at::Tensor staged(const at::Tensor& t) {
  return t.to(at::kCPU, is_half(t) ? at::kFloat : t.scalar_type());
}

MPI_Datatype mpi_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return MPI_FLOAT;
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kLong:
      return MPI_INT64_T;
    case at::kInt:
      return MPI_INT32_T;
    case at::kShort:
      return MPI_INT16_T;
    case at::kChar:
      return MPI_INT8_T;
    case at::kByte:
      return MPI_UINT8_T;
    case at::kBool:
      return MPI_C_BOOL;
    default:
      SAES_THROW(UnsupportedError, "MPI reduction of dtype {} is not supported",
                 dtype_name(from_torch(t.scalar_type())));
  }
}

MPI_Op mpi_op(const at::Tensor& t, ReduceOp op) {
  if (t.scalar_type() == at::kBool) return op == ReduceOp::kMin ? MPI_LAND : MPI_LOR;
  switch (op) {
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return MPI_SUM;
  }
  return MPI_SUM;
}

}  // namespace

struct MpiCommunicator::Handle {
  MPI_Comm comm = MPI_COMM_NULL;

  Handle() = default;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
};

MpiSession::MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  SAES_CHECK(!finalized, DistributedError,
             "MPI was already finalized in this process and cannot restart");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  int provided = 0;
  const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  SAES_CHECK(rc == MPI_SUCCESS, DistributedError, "MPI_Init_thread failed with code {}", rc);
  if (provided < MPI_THREAD_FUNNELED) {
    MPI_Finalize();
    SAES_THROW(DistributedError,
               "the MPI library provides thread level {}, saes needs MPI_THREAD_FUNNELED",
               provided);
  }
  owns_ = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiSession::~MpiSession() {
  if (!owns_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

MpiCommunicator::MpiCommunicator(std::shared_ptr<MpiSession> session,
                                 std::unique_ptr<Handle> handle)
    : session_(std::move(session)), handle_(std::move(handle)) {
  check_mpi(MPI_Comm_set_errhandler(handle_->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(handle_->comm, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(handle_->comm, &size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() = default;

std::unique_ptr<MpiCommunicator> MpiCommunicator::world(std::shared_ptr<MpiSession> session) {
  SAES_ASSERT(session != nullptr, "MpiCommunicator::world needs a live MpiSession");
  auto handle = std::make_unique<Handle>();
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &handle->comm), "MPI_Comm_dup");
  return std::unique_ptr<MpiCommunicator>(
      new MpiCommunicator(std::move(session), std::move(handle)));
}

void MpiCommunicator::barrier() { check_mpi(MPI_Barrier(handle_->comm), "MPI_Barrier"); }

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  SAES_ASSERT(color >= 0, "split color must be >= 0, got {}", color);
  auto handle = std::make_unique<Handle>();
  check_mpi(MPI_Comm_split(handle_->comm, color, key, &handle->comm), "MPI_Comm_split");
  return std::unique_ptr<Communicator>(new MpiCommunicator(session_, std::move(handle)));
}

void MpiCommunicator::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this only satisfies [[noreturn]]
}

void MpiCommunicator::all_reduce_impl(at::Tensor& t, ReduceOp op) {
  if (needs_staging(t)) {
    at::Tensor work = staged(t);
    all_reduce_impl(work, op);
    t.copy_(work);
    return;
  }
  char* data = static_cast<char*>(t.data_ptr());
  const std::int64_t n = t.numel();
  const std::int64_t element_bytes = static_cast<std::int64_t>(t.element_size());
  for (std::int64_t offset = 0; offset < n; offset += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, n - offset));
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + offset * element_bytes, count, mpi_type(t),
                            mpi_op(t, op), handle_->comm),
              "MPI_Allreduce");
  }
  if (op == ReduceOp::kAvg) t.div_(size_);
}

void MpiCommunicator::broadcast_impl(at::Tensor& t, int root) {
  if (!t.is_cpu()) {
    at::Tensor work = t.cpu();
    broadcast_impl(work, root);
    t.copy_(work);
    return;
  }
  char* data = static_cast<char*>(t.data_ptr());
  const std::int64_t n = static_cast<std::int64_t>(t.nbytes());
  for (std::int64_t offset = 0; offset < n; offset += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, n - offset));
    check_mpi(MPI_Bcast(data + offset, count, MPI_BYTE, root, handle_->comm), "MPI_Bcast");
  }
}

at::Tensor MpiCommunicator::all_gather_impl(const at::Tensor& t) {
  if (!t.is_cpu()) return all_gather_impl(t.cpu()).to(t.device());
  std::vector<std::int64_t> shape = t.sizes().vec();
  shape[0] *= size_;
  at::Tensor out = at::empty(shape, t.options());
  const int bytes = checked_count(static_cast<std::int64_t>(t.nbytes()), "all_gather");
  check_mpi(
      MPI_Allgather(t.data_ptr(), bytes, MPI_BYTE, out.data_ptr(), bytes, MPI_BYTE, handle_->comm),
      "MPI_Allgather");
  return out;
}

at::Tensor MpiCommunicator::reduce_scatter_impl(const at::Tensor& t, ReduceOp op) {
  if (needs_staging(t)) return reduce_scatter_impl(staged(t), op).to(t.device(), t.scalar_type());
  std::vector<std::int64_t> shape = t.sizes().vec();
  shape[0] /= size_;
  at::Tensor out = at::empty(shape, t.options());
  const int count = checked_count(out.numel(), "reduce_scatter");
  check_mpi(MPI_Reduce_scatter_block(t.data_ptr(), out.data_ptr(), count, mpi_type(t),
                                     mpi_op(t, op), handle_->comm),
            "MPI_Reduce_scatter_block");
  if (op == ReduceOp::kAvg) out.div_(size_);
  return out;
}

}  // namespace saes::distributed

// NcclCommunicator: NCCL collectives on the current torch CUDA stream. Reductions of dtypes NCCL
// lacks (int16; bfloat16 before NCCL 2.10) run in int32/float32 temporaries on the device;
// broadcasts and gathers move raw bytes of any dtype.
#include "saes/distributed/nccl_communicator.h"

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>
#include <unistd.h>

#include "saes/core/dtype.h"
#include "saes/core/error.h"

#if defined(__CUDA_BF16_TYPES_EXIST__) && (NCCL_MAJOR > 2 || (NCCL_MAJOR == 2 && NCCL_MINOR >= 10))
#define SAES_NCCL_HAS_BF16 1
#else
#define SAES_NCCL_HAS_BF16 0
#endif

namespace saes::distributed {
namespace {

void check_nccl(ncclResult_t rc, std::string_view call) {
  if (rc == ncclSuccess) return;
  SAES_THROW(DistributedError, "{} failed: {}", call, ncclGetErrorString(rc));
}

/// The dtype a reduction of t runs in when NCCL has no type for t's own dtype.
std::optional<at::ScalarType> reduce_staging_type(const at::Tensor& t) {
  if (t.scalar_type() == at::kShort) return at::kInt;
  if (t.scalar_type() == at::kBFloat16 && !SAES_NCCL_HAS_BF16) return at::kFloat;
  return std::nullopt;
}

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return ncclFloat32;
    case at::kDouble:
      return ncclFloat64;
    case at::kHalf:
      return ncclFloat16;
#if SAES_NCCL_HAS_BF16
    case at::kBFloat16:
      return ncclBfloat16;
#endif
    case at::kLong:
      return ncclInt64;
    case at::kInt:
      return ncclInt32;
    case at::kChar:
      return ncclInt8;
    case at::kByte:
    case at::kBool:
      return ncclUint8;
    default:
      SAES_THROW(UnsupportedError, "NCCL reduction of dtype {} is not supported",
                 dtype_name(from_torch(t.scalar_type())));
  }
}

ncclRedOp_t nccl_op(const at::Tensor& t, ReduceOp op) {
  // bool is stored as 0/1 bytes: max is logical or, min logical and.
  if (t.scalar_type() == at::kBool) return op == ReduceOp::kMin ? ncclMin : ncclMax;
  switch (op) {
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return ncclSum;
  }
  return ncclSum;
}

cudaStream_t current_stream(c10::Device device) {
  return c10::cuda::getCurrentCUDAStream(device.index()).stream();
}

/// How many lower ranks of `host` run on this machine (hostname comparison).
int local_rank(Communicator& host) {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  const std::vector<std::string> names = host.all_gather_strings(name);
  int local = 0;
  for (int r = 0; r < host.rank(); ++r) local += names[r] == names[host.rank()] ? 1 : 0;
  return local;
}

}  // namespace

struct NcclCommunicator::Handle {
  ncclComm_t comm = nullptr;

  Handle() = default;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    if (comm != nullptr) ncclCommDestroy(comm);
  }
};

std::unique_ptr<NcclCommunicator> NcclCommunicator::create(std::unique_ptr<Communicator> host,
                                                           c10::Device device) {
  SAES_CHECK(device.is_cuda(), DistributedError,
             "the NCCL communicator needs a CUDA device, got {}", device.str());
  const int visible = c10::cuda::device_count();
  SAES_CHECK(visible > 0, DistributedError, "the NCCL communicator found no visible CUDA device");
  if (!device.has_index()) {
    device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank(*host) % visible));
  }
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  std::string id_bytes;
  if (host->rank() == 0) {
    check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    id_bytes.assign(reinterpret_cast<const char*>(&id), sizeof(id));
  }
  host->broadcast_string(id_bytes, 0);
  SAES_ASSERT(id_bytes.size() == sizeof(id), "NCCL unique id of {} bytes, expected {}",
              id_bytes.size(), sizeof(id));
  std::memcpy(&id, id_bytes.data(), sizeof(id));

  const c10::cuda::CUDAGuard guard(device);
  auto handle = std::make_unique<Handle>();
  check_nccl(ncclCommInitRank(&handle->comm, host->size(), id, host->rank()), "ncclCommInitRank");
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(std::move(host), device, std::move(handle)));
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Communicator> host, c10::Device device,
                                   std::unique_ptr<Handle> handle)
    : host_(std::move(host)), device_(device), handle_(std::move(handle)) {}

NcclCommunicator::~NcclCommunicator() = default;

int NcclCommunicator::rank() const { return host_->rank(); }

int NcclCommunicator::size() const { return host_->size(); }

void NcclCommunicator::barrier() { host_->barrier(); }

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  return create(host_->split(color, key), device_);
}

void NcclCommunicator::abort(int code) { host_->abort(code); }

void NcclCommunicator::check_device(const at::Tensor& t, const char* what) const {
  SAES_CHECK(t.device() == device_, DistributedError,
             "{}: tensor on {}, but this NCCL communicator runs on {}", what, t.device().str(),
             device_.str());
}

void NcclCommunicator::all_reduce_impl(at::Tensor& t, ReduceOp op) {
  if (t.is_cpu()) {
    host_->all_reduce(t, op);
    return;
  }
  check_device(t, "all_reduce");
  if (const auto wide = reduce_staging_type(t)) {
    at::Tensor work = t.to(*wide);
    all_reduce_impl(work, op);
    t.copy_(work);
    return;
  }
  const c10::cuda::CUDAGuard guard(device_);
  check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t),
                           nccl_op(t, op), handle_->comm, current_stream(device_)),
             "ncclAllReduce");
  if (op == ReduceOp::kAvg) t.div_(size());
}

void NcclCommunicator::broadcast_impl(at::Tensor& t, int root) {
  if (t.is_cpu()) {
    host_->broadcast(t, root);
    return;
  }
  check_device(t, "broadcast");
  const c10::cuda::CUDAGuard guard(device_);
  check_nccl(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.nbytes(), ncclUint8, root, handle_->comm,
                           current_stream(device_)),
             "ncclBroadcast");
}

at::Tensor NcclCommunicator::all_gather_impl(const at::Tensor& t) {
  if (t.is_cpu()) return host_->all_gather(t);
  check_device(t, "all_gather");
  const c10::cuda::CUDAGuard guard(device_);
  std::vector<std::int64_t> shape = t.sizes().vec();
  shape[0] *= size();
  at::Tensor out = at::empty(shape, t.options());
  check_nccl(ncclAllGather(t.data_ptr(), out.data_ptr(), t.nbytes(), ncclUint8, handle_->comm,
                           current_stream(device_)),
             "ncclAllGather");
  return out;
}

at::Tensor NcclCommunicator::reduce_scatter_impl(const at::Tensor& t, ReduceOp op) {
  if (t.is_cpu()) return host_->reduce_scatter(t, op);
  check_device(t, "reduce_scatter");
  if (const auto wide = reduce_staging_type(t)) {
    return reduce_scatter_impl(t.to(*wide), op).to(t.scalar_type());
  }
  const c10::cuda::CUDAGuard guard(device_);
  std::vector<std::int64_t> shape = t.sizes().vec();
  shape[0] /= size();
  at::Tensor out = at::empty(shape, t.options());
  check_nccl(
      ncclReduceScatter(t.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                        nccl_type(t), nccl_op(t, op), handle_->comm, current_stream(device_)),
      "ncclReduceScatter");
  if (op == ReduceOp::kAvg) out.div_(size());
  return out;
}

}  // namespace saes::distributed

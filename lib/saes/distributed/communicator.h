// The Communicator interface: rank/size, barrier and collectives on torch tensors over a group of
// processes, sub-communicators (split) and the fatal-error exit (abort_all). Implementations live
// in single_process_communicator.h, mpi_communicator.h and nccl_communicator.h; world.h picks one.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace at {
class Tensor;
}

namespace saes::distributed {

enum class ReduceOp { kSum, kMax, kMin, kAvg };

/// "sum", "max", "min", "avg".
std::string_view reduce_op_name(ReduceOp op);

/// A group of `size()` processes that call the same collectives in the same order (SPMD).
///
/// Contracts shared by all implementations:
/// - Every rank of the group must call every collective, with tensors of the same dtype and (except
///   for all_gather_variable's first dim) the same shape; otherwise the behaviour is undefined
///   (typically a hang or an MPI error).
/// - Supported dtypes: float32/64, float16, bfloat16, int64/32/16/8, uint8, bool. kAvg needs a
///   floating dtype (UnsupportedError otherwise). For bool, kSum and kMax are logical or, kMin is
///   logical and. float16/bfloat16 reductions accumulate in float32.
/// - Tensors may be non-contiguous (the collective runs on a contiguous copy that is copied back)
///   and on CPU or CUDA (the MPI communicator stages CUDA tensors through host memory; NCCL works
///   on them directly and hands CPU tensors to its host communicator).
/// - Failures throw DistributedError. A rank that throws must not simply return: its peers may be
///   blocked in a collective. With size() > 1 call abort_all() from the catch block.
class Communicator {
 public:
  Communicator() = default;
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  /// "single", "mpi" or "nccl".
  virtual std::string_view name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void barrier() = 0;

  /// In place: every rank ends with op(t over all ranks). t: any shape, a supported dtype.
  void all_reduce(at::Tensor& t, ReduceOp op);
  /// In place: every rank ends with root's t. root in [0, size()).
  void broadcast(at::Tensor& t, int root);
  /// t: [n, ...] (a 0-dim t counts as [1]), same shape on every rank.
  /// Returns [size() * n, ...] on t's device: rank r's rows at [r * n, (r + 1) * n).
  at::Tensor all_gather(const at::Tensor& t);
  /// Like all_gather, but n may differ per rank (uneven shards); trailing dims must agree.
  /// Returns [sum of n over ranks, ...], concatenated in rank order.
  at::Tensor all_gather_variable(const at::Tensor& t);
  /// t: [size() * m, ...], the same shape on every rank. Returns [m, ...]: block rank() of
  /// op(t over all ranks).
  at::Tensor reduce_scatter(const at::Tensor& t, ReduceOp op);

  /// root's string on every rank.
  void broadcast_string(std::string& text, int root);
  /// Every rank's string, indexed by rank.
  std::vector<std::string> all_gather_strings(const std::string& text);

  /// Collective: ranks passing the same color form a new communicator, ranked by (key, rank).
  /// color >= 0. The result may outlive this communicator.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  /// Terminates every process of the job with exit code `code` (MPI_Abort); never returns.
  [[noreturn]] virtual void abort(int code) = 0;

 protected:
  // The collectives proper: arguments already validated, tensors contiguous, 0-dim made [1].
  virtual void all_reduce_impl(at::Tensor& t, ReduceOp op) = 0;
  virtual void broadcast_impl(at::Tensor& t, int root) = 0;
  virtual at::Tensor all_gather_impl(const at::Tensor& t) = 0;
  virtual at::Tensor reduce_scatter_impl(const at::Tensor& t, ReduceOp op) = 0;
};

/// Fatal-error exit for apps: prints `[rank r/n] message` (no prefix when size() == 1) to stderr
/// and ends every rank with `exit_code` (MPI_Abort; std::exit for a single process). Peers blocked
/// in a collective are killed by the launcher, so a failing rank never leaves the job hanging.
[[noreturn]] void abort_all(Communicator& comm, int exit_code, std::string_view message);

}  // namespace saes::distributed

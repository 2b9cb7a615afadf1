// MpiSession (RAII MPI_Init_thread/MPI_Finalize) and MpiCommunicator (collectives on CPU tensors
// over an MPI communicator; CUDA tensors are staged through host memory). Compiled only with
// SAES_WITH_MPI; <mpi.h> stays in the .cpp.
#pragma once

#include <memory>

#include "saes/distributed/communicator.h"

namespace saes::distributed {

/// Initializes MPI (MPI_THREAD_FUNNELED: only the thread that created the session calls MPI) and
/// finalizes it on destruction. If MPI was already initialized by someone else, the session neither
/// initializes nor finalizes. Throws DistributedError when MPI cannot start or was finalized.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owns_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  /// A communicator over all ranks of the job (a duplicate of MPI_COMM_WORLD). Keeps `session`
  /// alive as long as it or any communicator split from it exists.
  static std::unique_ptr<MpiCommunicator> world(std::shared_ptr<MpiSession> session);
  ~MpiCommunicator() override;

  std::string_view name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  /// MPI_Abort on MPI_COMM_WORLD: ends the whole job, not only this group.
  [[noreturn]] void abort(int code) override;

 protected:
  void all_reduce_impl(at::Tensor& t, ReduceOp op) override;
  void broadcast_impl(at::Tensor& t, int root) override;
  at::Tensor all_gather_impl(const at::Tensor& t) override;
  at::Tensor reduce_scatter_impl(const at::Tensor& t, ReduceOp op) override;

 private:
  struct Handle;  // owns the MPI_Comm (freed on destruction)
  MpiCommunicator(std::shared_ptr<MpiSession> session, std::unique_ptr<Handle> handle);

  std::shared_ptr<MpiSession> session_;
  std::unique_ptr<Handle> handle_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace saes::distributed

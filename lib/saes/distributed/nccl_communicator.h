// NcclCommunicator: collectives on CUDA tensors with NCCL, on the current torch CUDA stream. CPU
// tensors, barriers and strings go to its host communicator (MPI, or one process), which also
// carries the NCCL unique id. Compiled only with SAES_WITH_NCCL; <nccl.h> stays in the .cpp.
#pragma once

#include <memory>

#include <c10/core/Device.h>

#include "saes/distributed/communicator.h"

namespace saes::distributed {

/// Collectives are enqueued on the current CUDA stream of device() and are ordered with the torch
/// work on that stream; they do not block the host. barrier() synchronizes processes, not streams.
class NcclCommunicator final : public Communicator {
 public:
  /// Collective over `host` (rank 0 creates the NCCL id and broadcasts it). device: this rank's
  /// CUDA device; without an index, cuda:(local rank % visible GPUs), where the local rank counts
  /// the lower ranks on the same host. Throws DistributedError if NCCL or CUDA fail.
  static std::unique_ptr<NcclCommunicator> create(std::unique_ptr<Communicator> host,
                                                  c10::Device device);
  ~NcclCommunicator() override;

  std::string_view name() const override { return "nccl"; }
  int rank() const override;
  int size() const override;
  c10::Device device() const { return device_; }
  void barrier() override;
  /// Splits the host communicator and builds a new NCCL communicator over each group (with its
  /// own unique id), so it works with NCCL versions without ncclCommSplit.
  std::unique_ptr<Communicator> split(int color, int key) override;
  /// Ends the whole job through the host communicator.
  [[noreturn]] void abort(int code) override;

 protected:
  void all_reduce_impl(at::Tensor& t, ReduceOp op) override;
  void broadcast_impl(at::Tensor& t, int root) override;
  at::Tensor all_gather_impl(const at::Tensor& t) override;
  at::Tensor reduce_scatter_impl(const at::Tensor& t, ReduceOp op) override;

 private:
  struct Handle;  // owns the ncclComm_t (destroyed on destruction)
  NcclCommunicator(std::unique_ptr<Communicator> host, c10::Device device,
                   std::unique_ptr<Handle> handle);
  void check_device(const at::Tensor& t, const char* what) const;

  std::unique_ptr<Communicator> host_;
  c10::Device device_;
  std::unique_ptr<Handle> handle_;
};

}  // namespace saes::distributed

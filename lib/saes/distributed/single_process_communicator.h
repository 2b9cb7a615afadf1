// SingleProcessCommunicator: the group of one process. Every collective is the identity (all-reduce
// of one rank, gather returns the input); the normal path of a run without mpirun.
#pragma once

#include "saes/distributed/communicator.h"

namespace saes::distributed {

class SingleProcessCommunicator final : public Communicator {
 public:
  std::string_view name() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void barrier() override {}
  /// Another single-process communicator (any color/key).
  std::unique_ptr<Communicator> split(int color, int key) override;
  /// std::exit(code).
  [[noreturn]] void abort(int code) override;

 protected:
  void all_reduce_impl(at::Tensor& t, ReduceOp op) override;
  void broadcast_impl(at::Tensor& t, int root) override;
  at::Tensor all_gather_impl(const at::Tensor& t) override;
  at::Tensor reduce_scatter_impl(const at::Tensor& t, ReduceOp op) override;
};

}  // namespace saes::distributed

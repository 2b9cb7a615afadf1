// SingleProcessCommunicator: identity collectives. Results never alias the input of a gather, so
// callers may modify them freely as with the other implementations.
#include "saes/distributed/single_process_communicator.h"

#include <cstdlib>

#include <ATen/core/Tensor.h>

#include "saes/core/error.h"

namespace saes::distributed {

std::unique_ptr<Communicator> SingleProcessCommunicator::split(int color, int /*key*/) {
  SAES_ASSERT(color >= 0, "split color must be >= 0, got {}", color);
  return std::make_unique<SingleProcessCommunicator>();
}

void SingleProcessCommunicator::abort(int code) { std::exit(code); }

void SingleProcessCommunicator::all_reduce_impl(at::Tensor& /*t*/, ReduceOp /*op*/) {}

void SingleProcessCommunicator::broadcast_impl(at::Tensor& /*t*/, int /*root*/) {}

at::Tensor SingleProcessCommunicator::all_gather_impl(const at::Tensor& t) { return t.clone(); }

at::Tensor SingleProcessCommunicator::reduce_scatter_impl(const at::Tensor& t, ReduceOp /*op*/) {
  return t.clone();
}

}  // namespace saes::distributed

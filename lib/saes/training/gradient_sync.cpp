// GradientSync: the data-parallel collectives of a training step (bucketed gradient all-reduce,
// one scalar buffer per step, parameter broadcast, stop agreement).
#include "saes/training/gradient_sync.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include "saes/core/error.h"
#include "saes/distributed/communicator.h"
#include "saes/training/metrics.h"

namespace saes::training {

using distributed::ReduceOp;

GradientSync::GradientSync(distributed::Communicator& data, std::int64_t bucket_bytes)
    : data_(data), bucket_bytes_(bucket_bytes) {
  SAES_ASSERT(bucket_bytes > 0, "gradient bucket size must be positive, got {}", bucket_bytes);
}

int GradientSync::size() const { return data_.size(); }
int GradientSync::rank() const { return data_.rank(); }

void GradientSync::broadcast_parameters(std::span<const Parameter> params) {
  for (const Parameter& p : params) {
    at::Tensor value = p.value;
    data_.broadcast(value, 0);
  }
}

namespace {

struct Bucket {
  std::vector<at::Tensor> grads;
  std::int64_t numel = 0;
};

/// Consecutive gradients of one dtype and device, at most `max_bytes` each (a larger gradient gets
/// a bucket of its own).
std::vector<Bucket> make_buckets(std::span<const Parameter> params, std::int64_t max_bytes) {
  std::vector<Bucket> out;
  for (const Parameter& p : params) {
    if (!p.grad.defined()) continue;
    const std::int64_t bytes = p.grad.numel() * static_cast<std::int64_t>(p.grad.element_size());
    const bool fits =
        !out.empty() && out.back().grads.front().dtype() == p.grad.dtype() &&
        out.back().grads.front().device() == p.grad.device() &&
        (out.back().numel * static_cast<std::int64_t>(p.grad.element_size()) + bytes) <= max_bytes;
    if (!fits) out.emplace_back();
    out.back().grads.push_back(p.grad);
    out.back().numel += p.grad.numel();
  }
  return out;
}

}  // namespace

void GradientSync::reduce_gradients(std::span<const Parameter> params, double local_valid,
                                    double global_valid) {
  SAES_CHECK(global_valid > 0, DistributedError,
             "data parallel step: the global batch has no valid token");
  const double scale = local_valid / global_valid;
  const std::vector<Bucket> buckets = make_buckets(params, bucket_bytes_);
  if (buffers_.size() < buckets.size()) buffers_.resize(buckets.size());
  last_gradient_bytes_ = 0;
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    const Bucket& bucket = buckets[b];
    const at::Tensor& first = bucket.grads.front();
    at::Tensor& buffer = buffers_[b];
    if (!buffer.defined() || buffer.numel() != bucket.numel || buffer.dtype() != first.dtype() ||
        buffer.device() != first.device()) {
      buffer = at::empty({bucket.numel}, first.options());
    }
    std::int64_t offset = 0;
    for (const at::Tensor& g : bucket.grads) {
      buffer.narrow(0, offset, g.numel()).copy_(g.reshape({-1})).mul_(scale);
      offset += g.numel();
    }
    data_.all_reduce(buffer, ReduceOp::kSum);
    offset = 0;
    for (const at::Tensor& g : bucket.grads) {
      at::Tensor target = g;
      target.copy_(buffer.narrow(0, offset, g.numel()).view(g.sizes()));
      offset += g.numel();
    }
    last_gradient_bytes_ += bucket.numel * static_cast<std::int64_t>(first.element_size());
  }
}

std::vector<double> GradientSync::sum(const std::vector<double>& values) {
  if (values.empty()) return {};
  std::vector<double> out = values;
  at::Tensor t = at::from_blob(out.data(), {static_cast<std::int64_t>(out.size())},
                               at::TensorOptions().dtype(at::kDouble));
  data_.all_reduce(t, ReduceOp::kSum);
  return out;
}

bool GradientSync::any(bool flag) { return sum({flag ? 1.0 : 0.0}).front() > 0; }

std::string GradientSync::agree(const std::string& text, const std::string& what) {
  const std::vector<std::string> all = data_.all_gather_strings(text);
  for (std::size_t r = 1; r < all.size(); ++r) {
    SAES_CHECK(all[r] == all.front(), DistributedError,
               "data parallel ranks disagree on {}: rank 0 has '{}', rank {} has '{}'", what,
               all.front(), r, all[r]);
  }
  return text;
}

ReducedStep reduce_step(GradientSync& sync, const std::map<std::string, double>& losses,
                        double local_valid, BatchStats* stats, at::Tensor* fired) {
  std::vector<double> v;
  v.push_back(local_valid);
  for (const auto& [name, value] : losses) v.push_back(value * local_valid);
  if (stats) {
    const double n = stats->n_tokens;
    v.insert(v.end(), {stats->explained_variance * n, stats->explained_variance_legacy * n,
                       stats->l2_norm_error * n, stats->l2_norm_error_ratio * n,
                       stats->mean_feature_act * stats->l0_sum, stats->l0_sum, n});
    for (double ev : stats->layer_explained_variance) v.push_back(ev * n);
  }
  const std::size_t n_scalars = v.size();
  const bool with_fired = fired && fired->defined();
  at::Tensor counts;
  if (with_fired) {
    counts = fired->to(at::kDouble).cpu().contiguous();
    const double* data = counts.data_ptr<double>();
    v.insert(v.end(), data, data + counts.numel());
  }
  const std::vector<double> s = sync.sum(v);
  ReducedStep out;
  out.global_valid = s[0];
  std::size_t i = 1;
  for (const auto& [name, value] : losses) out.losses[name] = s[i++] / out.global_valid;
  if (stats) {
    const double n = s[i + 6];
    const double l0 = s[i + 5];
    stats->explained_variance = s[i] / n;
    stats->explained_variance_legacy = s[i + 1] / n;
    stats->l2_norm_error = s[i + 2] / n;
    stats->l2_norm_error_ratio = s[i + 3] / n;
    stats->mean_feature_act = l0 > 0 ? s[i + 4] / l0 : 0.0;
    stats->l0_sum = l0;
    stats->n_tokens = n;
    for (std::size_t l = 0; l < stats->layer_explained_variance.size(); ++l) {
      stats->layer_explained_variance[l] = s[i + 7 + l] / n;
    }
  }
  if (with_fired) {
    std::vector<double> summed(s.begin() + static_cast<std::ptrdiff_t>(n_scalars), s.end());
    *fired = at::from_blob(summed.data(), {static_cast<std::int64_t>(summed.size())},
                           at::TensorOptions().dtype(at::kDouble))
                 .clone();
  }
  return out;
}

}  // namespace saes::training

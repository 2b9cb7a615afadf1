// Adam / SparseAdam with in-place updates and global gradient-norm clipping (spec §5.5).
#include "saes/training/optimizer.h"

#include <cmath>
#include <optional>

#include <ATen/Parallel.h>
#include <ATen/ops/div.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/zeros_like.h>

#include "saes/core/error.h"

namespace saes::training {
namespace {

/// Σ‖g‖² over the clip-flagged gradients of the feature-sharded (`sharded`) or whole parameters.
/// Σ‖g‖² over the clip-flagged parameters with this sharding; nullopt when there are none (every
/// rank holds the same parameters, so all of them skip that class's reduction alike).
std::optional<double> local_squared_norm(std::span<const Parameter> params, bool sharded,
                                         bool head_sharded) {
  std::optional<double> sum;
  for (const Parameter& p : params) {
    if (!p.clip || !p.grad.defined() || p.sharded != sharded || p.head_sharded != head_sharded) {
      continue;
    }
    const double n = p.grad.norm().item<double>();
    sum = sum.value_or(0.0) + n * n;
  }
  return sum;
}

// All four tensors float32, contiguous, on the CPU: the fused single-pass update applies.
bool fusable(const at::Tensor& p, const at::Tensor& g, const at::Tensor& m, const at::Tensor& v) {
  for (const at::Tensor* t : {&p, &g, &m, &v}) {
    if (!t->device().is_cpu() || t->scalar_type() != at::kFloat || !t->is_contiguous())
      return false;
  }
  return true;
}

// One pass over memory doing what torch's Adam does in eight: m, v, then p -= step·m/(√v/c2 + eps).
void fused_adam_cpu(const at::Tensor& p, const at::Tensor& g, const at::Tensor& m,
                    const at::Tensor& v, float beta1, float beta2, float step_size,
                    float bias_correction2_sqrt, float eps) {
  float* pp = p.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* mp = m.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  at::parallel_for(0, p.numel(), 1 << 15, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const float gi = gp[i];
      const float mi = mp[i] * beta1 + gi * (1.0f - beta1);
      const float vi = vp[i] * beta2 + gi * gi * (1.0f - beta2);
      mp[i] = mi;
      vp[i] = vi;
      pp[i] -= step_size * (mi / (std::sqrt(vi) / bias_correction2_sqrt + eps));
    }
  });
}

std::string shape_text(at::IntArrayRef shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    text += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return text + "]";
}

}  // namespace

double grad_norm(std::span<const Parameter> params, const SquaredNormReduce& model_reduce,
                 const SquaredNormReduce& head_reduce) {
  const auto over = [](const SquaredNormReduce& reduce, std::optional<double> v) {
    return v && reduce ? reduce(*v) : v.value_or(0.0);
  };
  const double whole = local_squared_norm(params, false, false).value_or(0.0);
  const double features = over(model_reduce, local_squared_norm(params, true, false));
  const double heads = over(head_reduce, local_squared_norm(params, false, true));
  const std::optional<double> both = local_squared_norm(params, true, true);
  const double both_sum = both ? over(head_reduce, over(model_reduce, both)) : 0.0;
  return std::sqrt(whole + features + heads + both_sum);
}

double clip_grad_norm(std::span<const Parameter> params, double max_norm,
                      const SquaredNormReduce& model_reduce, const SquaredNormReduce& head_reduce) {
  const double norm = grad_norm(params, model_reduce, head_reduce);
  if (max_norm > 0.0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const Parameter& p : params) {
      if (p.clip && p.grad.defined()) p.grad.mul_(scale);
    }
  }
  return norm;
}

Optimizer::Optimizer(OptimizerClass kind, double lr, std::array<double, 2> betas, double eps)
    : kind_(kind), lr_(lr), beta1_(betas[0]), beta2_(betas[1]), eps_(eps) {}

Optimizer::State& Optimizer::state_for(const Parameter& p) {
  State& s = state_[p.name];
  if (!s.exp_avg.defined()) {
    s.exp_avg = at::zeros_like(p.value);
    s.exp_avg_sq = at::zeros_like(p.value);
    return s;
  }
  SAES_CHECK(s.exp_avg.sizes() == p.value.sizes(), DataError,
             "optimizer state of '{}': shape {} does not match the parameter's {}", p.name,
             shape_text(s.exp_avg.sizes()), shape_text(p.value.sizes()));
  if (s.exp_avg.device() != p.value.device() || s.exp_avg.dtype() != p.value.dtype()) {
    s.exp_avg = s.exp_avg.to(p.value.options());
    s.exp_avg_sq = s.exp_avg_sq.to(p.value.options());
  }
  return s;
}

at::Tensor Optimizer::scratch_like(const at::Tensor& t) {
  if (!scratch_.defined() || scratch_.numel() < t.numel() || scratch_.device() != t.device() ||
      scratch_.dtype() != t.dtype()) {
    scratch_ = at::empty({t.numel()}, t.options());
  }
  return scratch_.narrow(0, 0, t.numel()).view(t.sizes());
}

void Optimizer::adam_update(const Parameter& p, State& s) {
  // Same operations and order as torch.optim.Adam's single-tensor path (fused on the CPU).
  s.step += 1;
  const auto t = static_cast<double>(s.step);
  const double bias_correction1 = 1.0 - std::pow(beta1_, t);
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2_, t));
  const double step_size = lr_ * p.lr_factor / bias_correction1;
  if (fusable(p.value, p.grad, s.exp_avg, s.exp_avg_sq)) {
    fused_adam_cpu(p.value, p.grad, s.exp_avg, s.exp_avg_sq, static_cast<float>(beta1_),
                   static_cast<float>(beta2_), static_cast<float>(step_size),
                   static_cast<float>(bias_correction2_sqrt), static_cast<float>(eps_));
    return;
  }
  s.exp_avg.mul_(beta1_).add_(p.grad, 1.0 - beta1_);
  s.exp_avg_sq.mul_(beta2_).addcmul_(p.grad, p.grad, 1.0 - beta2_);
  at::Tensor denom = scratch_like(p.value);
  at::sqrt_out(denom, s.exp_avg_sq);
  denom.div_(bias_correction2_sqrt).add_(eps_);
  p.value.addcdiv_(s.exp_avg, denom, -step_size);
}

void Optimizer::sparse_adam_update(const Parameter& p, State& s) {
  const at::Tensor zero = p.grad.eq(0);
  if (zero.all().item<bool>()) return;
  s.step += 1;
  // Zero gradient entries add nothing, so the moment updates need no mask; both still decay.
  s.exp_avg.mul_(beta1_).add_(p.grad, 1.0 - beta1_);
  s.exp_avg_sq.mul_(beta2_).addcmul_(p.grad, p.grad, 1.0 - beta2_);
  const auto t = static_cast<double>(s.step);
  const double step_size =
      lr_ * p.lr_factor * std::sqrt(1.0 - std::pow(beta2_, t)) / (1.0 - std::pow(beta1_, t));
  at::Tensor update = scratch_like(p.value);
  at::sqrt_out(update, s.exp_avg_sq);
  update.add_(eps_);
  at::div_out(update, s.exp_avg, update);
  update.masked_fill_(zero, 0.0);
  p.value.add_(update, -step_size);
}

void Optimizer::step(std::span<const Parameter> params) {
  for (const Parameter& p : params) {
    if (!p.grad.defined()) continue;
    SAES_ASSERT(p.grad.sizes() == p.value.sizes(), "gradient of '{}' has shape {}, value {}",
                p.name, shape_text(p.grad.sizes()), shape_text(p.value.sizes()));
    State& s = state_for(p);
    if (kind_ == OptimizerClass::kSparseAdam) {
      sparse_adam_update(p, s);
    } else {
      adam_update(p, s);
    }
  }
}

std::vector<std::pair<std::string, at::Tensor>> Optimizer::state_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, s] : state_) {
    out.emplace_back(name + ".exp_avg", s.exp_avg);
    out.emplace_back(name + ".exp_avg_sq", s.exp_avg_sq);
    out.emplace_back(name + ".step", at::scalar_tensor(s.step, at::kLong));
  }
  return out;
}

void Optimizer::load_state(const std::map<std::string, at::Tensor>& tensors) {
  std::map<std::string, State> loaded;
  const std::string suffix = ".step";
  for (const auto& [key, tensor] : tensors) {
    if (key.size() <= suffix.size() ||
        key.compare(key.size() - suffix.size(), suffix.size(), suffix))
      continue;
    const std::string name = key.substr(0, key.size() - suffix.size());
    const auto m = tensors.find(name + ".exp_avg");
    const auto v = tensors.find(name + ".exp_avg_sq");
    SAES_CHECK(m != tensors.end() && v != tensors.end(), DataError,
               "optimizer state of '{}': missing exp_avg or exp_avg_sq", name);
    SAES_CHECK(m->second.sizes() == v->second.sizes(), DataError,
               "optimizer state of '{}': exp_avg {} and exp_avg_sq {} differ in shape", name,
               shape_text(m->second.sizes()), shape_text(v->second.sizes()));
    loaded[name] = State{m->second.clone(), v->second.clone(), tensor.item<std::int64_t>()};
  }
  SAES_CHECK(loaded.size() * 3 == tensors.size(), DataError,
             "optimizer state: {} tensors do not form {} (exp_avg, exp_avg_sq, step) triples",
             tensors.size(), loaded.size());
  state_ = std::move(loaded);
}

}  // namespace saes::training

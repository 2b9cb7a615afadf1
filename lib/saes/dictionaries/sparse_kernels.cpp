// Sparse SAE kernels: CSR builders, gather-decode, per-entry dot products and the scatter-add
// weight gradient. fp32 on CPU runs hand-written kernels (at::parallel_for, AVX-512/AVX2 clones of
// the inner loops); everything else runs the same maths as LibTorch ops (embedding_bag,
// index_select, index_add), which is also the CUDA path.
#include "saes/dictionaries/sparse_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/div.h>
#include <ATen/ops/embedding_bag.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/zeros.h>

#include "saes/core/error.h"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define SAES_SIMD_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SAES_SIMD_CLONES
#endif

namespace saes::dictionaries {
namespace {

constexpr std::int64_t kLanes = 16;
constexpr std::int64_t kFeatureBlock = 16;

/// y += a·x over n floats.
SAES_SIMD_CLONES void axpy(std::int64_t n, float a, const float* __restrict x,
                           float* __restrict y) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

/// ⟨x, y⟩ over n floats, with kLanes independent partial sums (vectorises without -ffast-math).
SAES_SIMD_CLONES float dot(std::int64_t n, const float* __restrict x, const float* __restrict y) {
  float acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::int64_t l = 0; l < kLanes; ++l) acc[l] += x[i + l] * y[i + l];
  }
  float s = 0;
  for (; i < n; ++i) s += x[i] * y[i];
  for (float v : acc) s += v;
  return s;
}

bool use_kernels(SparseBackend backend, const at::Tensor& W) {
  return backend == SparseBackend::kAuto && W.device().is_cpu() && W.scalar_type() == at::kFloat;
}

at::Tensor longs(const at::Tensor& t) { return t.to(at::kLong).contiguous(); }

void check_rows(const at::Tensor& W, const at::Tensor& other, const char* what) {
  SAES_CHECK(W.dim() == 2 && other.dim() == 2 && W.size(1) == other.size(1), DataError,
             "sparse kernel: {} has {} columns, the weight rows have {}", what,
             other.dim() == 2 ? other.size(1) : -1, W.dim() == 2 ? W.size(1) : -1);
}

at::Tensor decode_kernel(const SparseActs& a, const at::Tensor& W, const at::Tensor& bias) {
  const std::int64_t d = W.size(1);
  const at::Tensor Wc = W.contiguous();
  const at::Tensor ptr_t = longs(a.row_ptr), idx_t = longs(a.indices);
  const at::Tensor val_t = a.values.to(at::kFloat).contiguous();
  const at::Tensor b_t = bias.defined() ? bias.to(at::kFloat).contiguous() : at::Tensor();
  at::Tensor out = at::empty({a.n_rows, d}, W.options());
  const std::int64_t *ptr = ptr_t.data_ptr<std::int64_t>(), *idx = idx_t.data_ptr<std::int64_t>();
  const float *val = val_t.data_ptr<float>(), *w = Wc.data_ptr<float>();
  const float* b = b_t.defined() ? b_t.data_ptr<float>() : nullptr;
  float* o = out.data_ptr<float>();
  at::parallel_for(0, a.n_rows, 8, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t t = begin; t < end; ++t) {
      float* row = o + t * d;
      if (b != nullptr) {
        std::memcpy(row, b, sizeof(float) * static_cast<std::size_t>(d));
      } else {
        std::fill(row, row + d, 0.0f);
      }
      for (std::int64_t e = ptr[t]; e < ptr[t + 1]; ++e) axpy(d, val[e], w + idx[e] * d, row);
    }
  });
  return out;
}

at::Tensor row_dot_kernel(const SparseActs& a, const at::Tensor& G, const at::Tensor& W) {
  const std::int64_t d = W.size(1);
  const at::Tensor Wc = W.contiguous(), Gc = G.to(at::kFloat).contiguous();
  const at::Tensor ptr_t = longs(a.row_ptr), idx_t = longs(a.indices);
  at::Tensor out = at::empty({a.nnz()}, W.options());
  const std::int64_t *ptr = ptr_t.data_ptr<std::int64_t>(), *idx = idx_t.data_ptr<std::int64_t>();
  const float *w = Wc.data_ptr<float>(), *g = Gc.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, a.n_rows, 8, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t t = begin; t < end; ++t) {
      for (std::int64_t e = ptr[t]; e < ptr[t + 1]; ++e) o[e] = dot(d, g + t * d, w + idx[e] * d);
    }
  });
  return out;
}

/// Entries grouped by feature (a counting sort): feature i owns order[col_ptr[i]..col_ptr[i+1]).
struct ByFeature {
  std::vector<std::int64_t> col_ptr, order;
};

ByFeature group_by_feature(const std::int64_t* idx, std::int64_t nnz, std::int64_t n_features) {
  ByFeature g;
  g.col_ptr.assign(static_cast<std::size_t>(n_features + 1), 0);
  for (std::int64_t e = 0; e < nnz; ++e) {
    SAES_CHECK(idx[e] >= 0 && idx[e] < n_features, DataError,
               "sparse_weight_grad: feature index {} outside 0..{}", idx[e], n_features - 1);
    ++g.col_ptr[static_cast<std::size_t>(idx[e] + 1)];
  }
  for (std::size_t i = 1; i < g.col_ptr.size(); ++i) g.col_ptr[i] += g.col_ptr[i - 1];
  std::vector<std::int64_t> next(g.col_ptr.begin(), g.col_ptr.end() - 1);
  g.order.resize(static_cast<std::size_t>(nnz));
  for (std::int64_t e = 0; e < nnz; ++e) {
    g.order[static_cast<std::size_t>(next[static_cast<std::size_t>(idx[e])]++)] = e;
  }
  return g;
}

void weight_grad_kernel(const at::Tensor& out, const at::Tensor& rows_in, const at::Tensor& idx_in,
                        const at::Tensor& val_in, const at::Tensor& G) {
  const std::int64_t n_features = out.size(0), d = out.size(1);
  const at::Tensor rows_t = longs(rows_in), idx_t = longs(idx_in);
  const at::Tensor val_t = val_in.to(at::kFloat).contiguous(), Gc = G.to(at::kFloat).contiguous();
  const std::int64_t *rows = rows_t.data_ptr<std::int64_t>(), *idx = idx_t.data_ptr<std::int64_t>();
  const float *val = val_t.data_ptr<float>(), *g = Gc.data_ptr<float>();
  const ByFeature by = group_by_feature(idx, idx_t.numel(), n_features);
  float* o = out.data_ptr<float>();
  const std::int64_t s0 = out.stride(0), s1 = out.stride(1);
  const std::int64_t n_blocks = (n_features + kFeatureBlock - 1) / kFeatureBlock;
  at::parallel_for(0, n_blocks, 4, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> buf(static_cast<std::size_t>(kFeatureBlock * d));
    for (std::int64_t blk = begin; blk < end; ++blk) {
      const std::int64_t i0 = blk * kFeatureBlock, i1 = std::min(i0 + kFeatureBlock, n_features);
      std::fill(buf.begin(), buf.end(), 0.0f);
      for (std::int64_t i = i0; i < i1; ++i) {
        float* acc = buf.data() + (i - i0) * d;
        for (std::int64_t p = by.col_ptr[static_cast<std::size_t>(i)];
             p < by.col_ptr[static_cast<std::size_t>(i + 1)]; ++p) {
          const std::int64_t e = by.order[static_cast<std::size_t>(p)];
          axpy(d, val[e], g + rows[e] * d, acc);
        }
      }
      if (s1 == 1) {  // row-major rows: one copy per feature
        for (std::int64_t i = i0; i < i1; ++i) {
          std::memcpy(o + i * s0, buf.data() + (i - i0) * d,
                      sizeof(float) * static_cast<std::size_t>(d));
        }
      } else {  // e.g. the transposed view of W_E's gradient: write the block column by column
        for (std::int64_t j = 0; j < d; ++j) {
          for (std::int64_t i = i0; i < i1; ++i) o[i * s0 + j * s1] = buf[(i - i0) * d + j];
        }
      }
    }
  });
}

}  // namespace

at::Tensor SparseActs::to_dense() const {
  at::Tensor out = at::zeros({n_rows, n_features}, values.options());
  out.view({-1}).index_add_(0, rows * n_features + indices, values);
  return out;
}

SparseActs sparse_from_topk(const at::Tensor& indices, const at::Tensor& values,
                            std::int64_t n_features) {
  SAES_ASSERT(indices.dim() == 2 && indices.sizes() == values.sizes(),
              "sparse_from_topk: indices and values must be [n_rows, k] alike");
  const std::int64_t n = indices.size(0), k = indices.size(1);
  const auto lopts = indices.options().dtype(at::kLong);
  SparseActs a;
  a.row_ptr = at::arange(n + 1, lopts) * k;
  a.rows = at::arange(n, lopts).unsqueeze(1).expand({n, k}).reshape({-1});
  a.indices = longs(indices).reshape({-1});
  a.values = values.contiguous().reshape({-1});
  a.n_rows = n;
  a.n_features = n_features;
  return a;
}

SparseActs sparse_from_coo(at::Tensor rows, at::Tensor indices, at::Tensor values,
                           std::int64_t n_rows, std::int64_t n_features) {
  SparseActs a;
  a.rows = longs(rows);
  a.indices = longs(indices);
  a.values = values.contiguous();
  a.row_ptr = at::cat(
      {at::zeros({1}, a.rows.options()), at::cumsum(at::bincount(a.rows, {}, n_rows), 0)});
  a.n_rows = n_rows;
  a.n_features = n_features;
  return a;
}

SparseActs sparse_from_flat(const at::Tensor& flat, const at::Tensor& values, std::int64_t n_rows,
                            std::int64_t n_features) {
  const at::Tensor f = longs(flat);
  const at::Tensor rows = at::div(f, n_features, "floor");
  return sparse_from_coo(rows, f - rows * n_features, values, n_rows, n_features);
}

SparseActs sparse_from_dense(const at::Tensor& dense) {
  SAES_ASSERT(dense.dim() == 2, "sparse_from_dense: expected a 2-D tensor");
  const at::Tensor nz = at::nonzero(dense);
  const at::Tensor flat = nz.select(1, 0) * dense.size(1) + nz.select(1, 1);
  return sparse_from_flat(flat, dense.reshape({-1}).index_select(0, flat), dense.size(0),
                          dense.size(1));
}

at::Tensor sparse_decode(const SparseActs& a, const at::Tensor& W, const at::Tensor& bias,
                         SparseBackend backend) {
  SAES_CHECK(W.dim() == 2 && W.size(0) == a.n_features, DataError,
             "sparse_decode: weight has {} rows, expected n_features={}", W.size(0), a.n_features);
  if (use_kernels(backend, W)) return decode_kernel(a, W, bias);
  at::Tensor out = std::get<0>(at::embedding_bag(W, a.indices, a.row_ptr, false, 0, false,
                                                 a.values.to(W.scalar_type()), true));
  return bias.defined() ? out.add_(bias) : out;
}

at::Tensor sparse_row_dot(const SparseActs& a, const at::Tensor& G, const at::Tensor& W,
                          SparseBackend backend) {
  check_rows(W, G, "the row gradient");
  if (use_kernels(backend, W)) return row_dot_kernel(a, G, W);
  return (G.index_select(0, a.rows) * W.index_select(0, a.indices)).sum(1);
}

void sparse_weight_grad(const at::Tensor& out, const at::Tensor& rows, const at::Tensor& indices,
                        const at::Tensor& values, const at::Tensor& G, SparseBackend backend) {
  check_rows(out, G, "the gradient G");
  if (use_kernels(backend, out)) return weight_grad_kernel(out, rows, indices, values, G);
  out.zero_();
  out.index_add_(0, indices, G.index_select(0, rows) * values.unsqueeze(1).to(G.scalar_type()));
}

at::Tensor sparse_feature_sum(const at::Tensor& indices, const at::Tensor& values,
                              std::int64_t n_features) {
  return at::zeros({n_features}, values.options()).index_add_(0, indices, values);
}

}  // namespace saes::dictionaries

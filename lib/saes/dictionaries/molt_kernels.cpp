// The MoLT step's sparse kernels (molt_kernels.h): hand-written CPU loops for float/double, and
// the same maths as LibTorch ops (index_select / bmm / index_add_ in bounded chunks) for every
// other device and dtype, which the tests compare them with.
#include "saes/dictionaries/molt_kernels.h"

#include <algorithm>

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "saes/core/error.h"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define SAES_MOLT_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SAES_MOLT_SIMD
#endif

namespace saes::dictionaries::detail {
namespace {

constexpr std::int64_t kLanes = 16;

/// ⟨x, y⟩ over n values with kLanes partial sums (vectorises without -ffast-math).
template <class T>
SAES_MOLT_SIMD T dot(std::int64_t n, const T* __restrict x, const T* __restrict y) {
  T acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::int64_t l = 0; l < kLanes; ++l) acc[l] += x[i + l] * y[i + l];
  }
  T s = 0;
  for (; i < n; ++i) s += x[i] * y[i];
  for (T v : acc) s += v;
  return s;
}

/// y += a·x over n values.
template <class T>
SAES_MOLT_SIMD void axpy(std::int64_t n, T a, const T* __restrict x, T* __restrict y) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

/// U [c, d, r] as rows [c, r, d] (row (i, b) = column b of U_i): every inner loop runs over d.
std::vector<at::Tensor> transposed(const std::vector<at::Tensor>& U) {
  std::vector<at::Tensor> out;
  for (const auto& u : U) out.push_back(u.transpose(1, 2).contiguous());
  return out;
}

/// Entries per chunk of the op path: bounds its [chunk, r, d] gathers to ~64 MiB of float32.
constexpr std::int64_t kChunkElements = std::int64_t{1} << 24;

struct Layout {
  std::vector<std::int64_t> group_of;  ///< per local feature
  std::vector<std::int64_t> rank;      ///< per group
  std::vector<std::int64_t> p_offset;  ///< per entry: start of its p_e in the flat p, + total
};

Layout layout(const SparseActs& a, const MoltTransforms& T, const at::Tensor& idx_cpu) {
  Layout L;
  const std::int64_t S = a.n_features;
  L.group_of.assign(static_cast<std::size_t>(S), -1);
  for (std::size_t g = 0; g < T.U.size(); ++g) {
    L.rank.push_back(T.U[g].size(2));
    const std::int64_t c = T.U[g].size(0), off = T.offset[g];
    SAES_ASSERT(off + c <= S, "molt kernels: group beyond the features");
    std::fill(L.group_of.begin() + off, L.group_of.begin() + off + c, static_cast<std::int64_t>(g));
  }
  const std::int64_t* idx = idx_cpu.data_ptr<std::int64_t>();
  L.p_offset.resize(static_cast<std::size_t>(a.nnz()) + 1, 0);
  for (std::int64_t e = 0; e < a.nnz(); ++e) {
    const std::int64_t g = L.group_of[static_cast<std::size_t>(idx[e])];
    SAES_ASSERT(g >= 0, "molt kernels: feature outside every group");
    L.p_offset[static_cast<std::size_t>(e) + 1] =
        L.p_offset[static_cast<std::size_t>(e)] + L.rank[static_cast<std::size_t>(g)];
  }
  return L;
}

bool use_kernels(SparseBackend backend, const at::Tensor& x) {
  return backend == SparseBackend::kAuto && x.device().is_cpu() &&
         (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble);
}

at::Tensor longs_cpu(const at::Tensor& t) { return t.to(at::kCPU).to(at::kLong).contiguous(); }

template <class T>
std::vector<const T*> data_of(const std::vector<at::Tensor>& ts) {
  std::vector<const T*> out;
  for (const auto& t : ts) out.push_back(t.data_ptr<T>());
  return out;
}

template <class T>
at::Tensor forward_kernel(const SparseActs& a, const at::Tensor& x_in, const MoltTransforms& Tr,
                          at::Tensor& out) {
  const std::int64_t d = x_in.size(1);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor ptr_t = longs_cpu(a.row_ptr), idx_t = longs_cpu(a.indices);
  const at::Tensor val_t = a.values.to(x.scalar_type()).contiguous();
  const Layout L = layout(a, Tr, idx_t);
  const std::vector<at::Tensor> Ut = Tr.Ut.empty() ? transposed(Tr.U) : Tr.Ut;
  std::vector<at::Tensor> V;
  for (const auto& v : Tr.V) V.push_back(v.contiguous());
  const auto Up = data_of<T>(Ut), Vp = data_of<T>(V);
  at::Tensor p_t = at::empty({L.p_offset.back()}, x.options());
  SAES_CHECK(out.is_contiguous() && out.scalar_type() == x.scalar_type(), DataError,
             "molt kernels: the output must be a contiguous tensor of x's dtype");
  const std::int64_t *ptr = ptr_t.data_ptr<std::int64_t>(), *idx = idx_t.data_ptr<std::int64_t>();
  const T *val = val_t.data_ptr<T>(), *xp = x.data_ptr<T>();
  T *o = out.data_ptr<T>(), *P = p_t.data_ptr<T>();
  at::parallel_for(0, a.n_rows, 16, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      const T* xt = xp + t * d;
      T* ot = o + t * d;
      for (std::int64_t e = ptr[t]; e < ptr[t + 1]; ++e) {
        const std::int64_t i = idx[e];
        const auto g = static_cast<std::size_t>(L.group_of[static_cast<std::size_t>(i)]);
        const std::int64_t r = L.rank[g], j = i - Tr.offset[g];
        const T* Vi = Vp[g] + j * r * d;  // [r, d]
        const T* Ui = Up[g] + j * r * d;  // [r, d]: U_iᵀ
        T* pe = P + L.p_offset[static_cast<std::size_t>(e)];
        for (std::int64_t b = 0; b < r; ++b) {
          pe[b] = dot<T>(d, Vi + b * d, xt);
          axpy<T>(d, pe[b] * val[e], Ui + b * d, ot);
        }
      }
    }
  });
  return p_t;
}

template <class T>
at::Tensor backward_kernel(const SparseActs& a, const at::Tensor& p_in, const at::Tensor& x_in,
                           const at::Tensor& G_in, const MoltTransforms& Tr,
                           std::vector<at::Tensor>& gU, std::vector<at::Tensor>& gV) {
  const std::int64_t d = x_in.size(1), nnz = a.nnz();
  const at::Tensor x = x_in.contiguous(), G = G_in.to(x.scalar_type()).contiguous();
  const at::Tensor p_t = p_in.contiguous();
  const at::Tensor ptr_t = longs_cpu(a.row_ptr), idx_t = longs_cpu(a.indices);
  const at::Tensor rows_t = longs_cpu(a.rows);
  const at::Tensor val_t = a.values.to(x.scalar_type()).contiguous();
  const Layout L = layout(a, Tr, idx_t);
  const std::vector<at::Tensor> Ut = Tr.Ut.empty() ? transposed(Tr.U) : Tr.Ut;
  const auto Up = data_of<T>(Ut);
  std::vector<at::Tensor> gUt;  // ∂L/∂U_iᵀ rows, added into gU at the end
  std::vector<T*> gUp, gVp;
  for (std::size_t g = 0; g < gU.size(); ++g) {
    SAES_CHECK(gV[g].is_contiguous(), DataError, "molt kernels: gradient buffers must be contiguous");
    gUt.push_back(at::zeros_like(Ut[g]));
    gUp.push_back(gUt.back().data_ptr<T>());
    gVp.push_back(gV[g].data_ptr<T>());
  }
  at::Tensor df_t = at::empty({nnz}, x.options());
  at::Tensor R_t = at::empty({L.p_offset.back()}, x.options());
  const std::int64_t *ptr = ptr_t.data_ptr<std::int64_t>(), *idx = idx_t.data_ptr<std::int64_t>();
  const std::int64_t* rows = rows_t.data_ptr<std::int64_t>();
  const T *val = val_t.data_ptr<T>(), *xp = x.data_ptr<T>(), *Gp = G.data_ptr<T>();
  const T* P = p_t.data_ptr<T>();
  T *df = df_t.data_ptr<T>(), *R = R_t.data_ptr<T>();
  // R_e = U_iᵀ G_t and ∂L/∂f_e, tokens in parallel
  at::parallel_for(0, a.n_rows, 16, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      const T* Gt = Gp + t * d;
      for (std::int64_t e = ptr[t]; e < ptr[t + 1]; ++e) {
        const std::int64_t i = idx[e];
        const auto g = static_cast<std::size_t>(L.group_of[static_cast<std::size_t>(i)]);
        const std::int64_t r = L.rank[g], j = i - Tr.offset[g];
        const T* Ui = Up[g] + j * r * d;  // U_iᵀ [r, d]
        T* Re = R + L.p_offset[static_cast<std::size_t>(e)];
        for (std::int64_t b = 0; b < r; ++b) Re[b] = dot<T>(d, Ui + b * d, Gt);
        const T* pe = P + L.p_offset[static_cast<std::size_t>(e)];
        T s = 0;
        for (std::int64_t b = 0; b < r; ++b) s += pe[b] * Re[b];
        df[e] = s;
      }
    }
  });
  // the weight gradients, transforms in parallel over their entries (feature-major order)
  const at::Tensor order_t = std::get<1>(at::sort(idx_t, /*stable=*/true, 0, false)).contiguous();
  const at::Tensor start_t =
      at::cat({at::zeros({1}, at::kLong),
               at::cumsum(at::bincount(idx_t, {}, a.n_features), 0).to(at::kLong)})
          .contiguous();
  const std::int64_t *order = order_t.data_ptr<std::int64_t>(),
                     *start = start_t.data_ptr<std::int64_t>();
  at::parallel_for(0, a.n_features, 4, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      if (start[i] == start[i + 1]) continue;
      const auto g = static_cast<std::size_t>(L.group_of[static_cast<std::size_t>(i)]);
      const std::int64_t r = L.rank[g], j = i - Tr.offset[g];
      T* gUi = gUp[g] + j * r * d;  // ∂L/∂U_iᵀ [r, d]
      T* gVi = gVp[g] + j * r * d;  // [r, d]
      for (std::int64_t o = start[i]; o < start[i + 1]; ++o) {
        const std::int64_t e = order[o], t = rows[e];
        const T v = val[e];
        const T* pe = P + L.p_offset[static_cast<std::size_t>(e)];
        const T* Re = R + L.p_offset[static_cast<std::size_t>(e)];
        const T *Gt = Gp + t * d, *xt = xp + t * d;
        for (std::int64_t b = 0; b < r; ++b) {
          axpy<T>(d, v * pe[b], Gt, gUi + b * d);
          axpy<T>(d, v * Re[b], xt, gVi + b * d);
        }
      }
    }
  });
  for (std::size_t g = 0; g < gU.size(); ++g) gU[g].add_(gUt[g].transpose(1, 2));
  return df_t;
}

/// The entries of group g (positions into the entry list, in entry order) and their
/// group-local transform indices.
std::pair<at::Tensor, at::Tensor> group_entries(const SparseActs& a, const MoltTransforms& T,
                                                std::size_t g) {
  const std::int64_t off = T.offset[g], c = T.U[g].size(0);
  const at::Tensor in = (a.indices >= off) & (a.indices < off + c);
  const at::Tensor pos = in.nonzero().squeeze(1);
  return {pos, a.indices.index_select(0, pos) - off};
}

at::Tensor forward_ops(const SparseActs& a, const at::Tensor& x, const MoltTransforms& T,
                       at::Tensor& out) {
  std::vector<at::Tensor> parts(T.U.size());
  const at::Tensor idx_cpu = longs_cpu(a.indices);
  const Layout L = layout(a, T, idx_cpu);
  at::Tensor p = at::empty({L.p_offset.back()}, x.options());
  const at::Tensor p_off = at::tensor(L.p_offset, at::kLong).to(x.device());
  for (std::size_t g = 0; g < T.U.size(); ++g) {
    const auto [pos, j] = group_entries(a, T, g);
    const std::int64_t E = pos.numel(), r = T.U[g].size(2), d = x.size(1);
    const std::int64_t chunk = std::max<std::int64_t>(1, kChunkElements / (r * d));
    for (std::int64_t e0 = 0; e0 < E; e0 += chunk) {
      const std::int64_t n = std::min(chunk, E - e0);
      const at::Tensor pe = pos.narrow(0, e0, n), je = j.narrow(0, e0, n);
      const at::Tensor rows = a.rows.index_select(0, pe);
      const at::Tensor xe = x.index_select(0, rows).unsqueeze(2);              // [n, d, 1]
      const at::Tensor pv = at::bmm(T.V[g].index_select(0, je), xe);          // [n, r, 1]
      const at::Tensor v = a.values.index_select(0, pe).to(x.scalar_type());
      const at::Tensor contrib = at::bmm(T.U[g].index_select(0, je), pv).squeeze(2) * v.unsqueeze(1);
      out.index_add_(0, rows, contrib);
      // p of entry e at p_off[e] .. + r
      const at::Tensor slots = (p_off.index_select(0, pe).unsqueeze(1) +
                                at::arange(r, pe.options()).unsqueeze(0))
                                   .reshape({-1});
      p.index_put_({slots}, pv.reshape({-1}));
    }
  }
  return p;
}

at::Tensor backward_ops(const SparseActs& a, const at::Tensor& p, const at::Tensor& x,
                        const at::Tensor& G_in, const MoltTransforms& T,
                        std::vector<at::Tensor>& gU, std::vector<at::Tensor>& gV) {
  const at::Tensor G = G_in.to(x.scalar_type());
  const at::Tensor idx_cpu = longs_cpu(a.indices);
  const Layout L = layout(a, T, idx_cpu);
  const at::Tensor p_off = at::tensor(L.p_offset, at::kLong).to(x.device());
  at::Tensor df = at::empty({a.nnz()}, x.options());
  for (std::size_t g = 0; g < T.U.size(); ++g) {
    const auto [pos, j] = group_entries(a, T, g);
    const std::int64_t E = pos.numel(), r = T.U[g].size(2), d = x.size(1);
    const std::int64_t chunk = std::max<std::int64_t>(1, kChunkElements / (r * d));
    for (std::int64_t e0 = 0; e0 < E; e0 += chunk) {
      const std::int64_t n = std::min(chunk, E - e0);
      const at::Tensor pe = pos.narrow(0, e0, n), je = j.narrow(0, e0, n);
      const at::Tensor rows = a.rows.index_select(0, pe);
      const at::Tensor slots = (p_off.index_select(0, pe).unsqueeze(1) +
                                at::arange(r, pe.options()).unsqueeze(0))
                                   .reshape({-1});
      const at::Tensor pv = p.index_select(0, slots).view({n, r});
      const at::Tensor Ge = G.index_select(0, rows), xe = x.index_select(0, rows);
      const at::Tensor v = a.values.index_select(0, pe).to(x.scalar_type()).unsqueeze(1);
      const at::Tensor R =
          at::bmm(Ge.unsqueeze(1), T.U[g].index_select(0, je)).squeeze(1);  // [n, r]
      df.index_put_({pe}, at::sum(pv * R, {1}));
      gU[g].index_add_(0, je, (Ge * v).unsqueeze(2) * pv.unsqueeze(1));  // [n, d, r]
      gV[g].index_add_(0, je, (R * v).unsqueeze(2) * xe.unsqueeze(1));   // [n, r, d]
    }
  }
  return df;
}

}  // namespace

MoltTransforms with_transposed(MoltTransforms T) {
  if (!T.U.empty() && T.U.front().device().is_cpu()) T.Ut = transposed(T.U);
  return T;
}

at::Tensor molt_sparse_forward(const SparseActs& a, const at::Tensor& x, const MoltTransforms& T,
                               at::Tensor& out, SparseBackend backend) {
  SAES_CHECK(x.dim() == 2 && out.sizes() == x.sizes(), DataError,
             "molt kernels: x and the output must both be [n_rows, d]");
  if (use_kernels(backend, x)) {
    return x.scalar_type() == at::kFloat ? forward_kernel<float>(a, x, T, out)
                                         : forward_kernel<double>(a, x, T, out);
  }
  return forward_ops(a, x, T, out);
}

at::Tensor molt_sparse_backward(const SparseActs& a, const at::Tensor& p, const at::Tensor& x,
                                const at::Tensor& G, const MoltTransforms& T,
                                std::vector<at::Tensor>& gU, std::vector<at::Tensor>& gV,
                                SparseBackend backend) {
  SAES_CHECK(G.sizes() == x.sizes() && gU.size() == T.U.size() && gV.size() == T.V.size(),
             DataError, "molt kernels: G must be shaped as x, one gradient pair per group");
  if (use_kernels(backend, x)) {
    return x.scalar_type() == at::kFloat ? backward_kernel<float>(a, p, x, G, T, gU, gV)
                                         : backward_kernel<double>(a, p, x, G, T, gU, gV);
  }
  return backward_ops(a, p, x, G, T, gU, gV);
}

}  // namespace saes::dictionaries::detail

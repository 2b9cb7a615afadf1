// Internal to dictionaries/: the sparse kernels of the MoLT step (spec §2.5). For f's active
// entries e = (token t, transform i, value v_e) only:
//   forward   p_e = V_i x_t (r_i values),  x̂_t += v_e U_i p_e;
//   backward  R_e = U_iᵀ G_t,  ∂L/∂f_e = ⟨p_e, R_e⟩,  ∂U_i += v_e G_t p_eᵀ,  ∂V_i += v_e R_e x_tᵀ,
// so a step costs O(entries · r · d) instead of the dense O(tokens · Σ_i r_i · d). CPU:
// hand-written loops for float/double (tokens in parallel forward, transforms in parallel for
// the weight gradients: no atomics); other devices and dtypes: LibTorch ops, chunked gathers.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/dictionaries/sparse_kernels.h"

namespace saes::dictionaries::detail {

/// This rank's transforms, group by group: U[g] [c_g, d, r_g], V[g] [c_g, r_g, d], and the first
/// local feature of each group (features of group g: offset[g] .. offset[g] + c_g).
struct MoltTransforms {
  std::vector<at::Tensor> U, V;
  std::vector<std::int64_t> offset;
  /// Optional: U[g] as contiguous U_iᵀ rows [c_g, r_g, d], the CPU kernels' layout, made once per
  /// step by the caller (with_transposed); empty: each CPU kernel call transposes U itself.
  std::vector<at::Tensor> Ut;
};

/// T with Ut filled (CPU parameters only: the op path does not read it).
MoltTransforms with_transposed(MoltTransforms T);

/// Adds Σ_e v_e U_i (V_i x_t) into out[t] ([n_rows, d], x's dtype) for the entries `a` (features:
/// local transform indices) and returns the p_e = V_i x_t, concatenated in entry order ([Σ_e r_e]).
at::Tensor molt_sparse_forward(const SparseActs& a, const at::Tensor& x, const MoltTransforms& T,
                               at::Tensor& out, SparseBackend backend = SparseBackend::kAuto);

/// For G = ∂L/∂x̂ ([n_rows, d]): returns ∂L/∂f at the entries ([nnz]) and ADDS the entries' share
/// of ∂L/∂U and ∂L/∂V into gU[g], gV[g] (shaped as T.U[g], T.V[g]). p: molt_sparse_forward's.
at::Tensor molt_sparse_backward(const SparseActs& a, const at::Tensor& p, const at::Tensor& x,
                                const at::Tensor& G, const MoltTransforms& T,
                                std::vector<at::Tensor>& gU, std::vector<at::Tensor>& gV,
                                SparseBackend backend = SparseBackend::kAuto);

}  // namespace saes::dictionaries::detail

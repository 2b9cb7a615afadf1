// Sparse feature activations (CSR over tokens) and the kernels of the sparse SAE step: decode
// by gathering decoder rows, per-entry dot products (∂L/∂f at the active entries only) and the
// scatter-add weight gradient. CPU: hand-written kernels; other devices: LibTorch ops.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace saes::dictionaries {

/// Feature activations of n_rows tokens over n_features features, only the listed entries.
/// Entries are grouped by token in ascending order: token t owns entries row_ptr[t]..row_ptr[t+1].
struct SparseActs {
  at::Tensor row_ptr;  ///< [n_rows + 1] int64
  at::Tensor rows;     ///< [nnz] int64, token of each entry (row_ptr expanded)
  at::Tensor indices;  ///< [nnz] int64, feature of each entry
  at::Tensor values;   ///< [nnz] float, the activation (0 for an entry that is not active)
  std::int64_t n_rows = 0;
  std::int64_t n_features = 0;

  std::int64_t nnz() const { return indices.numel(); }
  bool defined() const { return indices.defined(); }
  /// Dense [n_rows, n_features] copy (tests, callers that need the full matrix).
  at::Tensor to_dense() const;
};

/// Which implementation the kernels use. kAuto: hand-written kernels for float/double on CPU,
/// LibTorch ops otherwise; kOps: always the ops (the CUDA path; also runs on CPU, for tests).
enum class SparseBackend { kAuto, kOps };

/// SparseActs from per-token columns `indices` [n_rows, k] and `values` [n_rows, k] (TopK).
SparseActs sparse_from_topk(const at::Tensor& indices, const at::Tensor& values,
                            std::int64_t n_features);
/// SparseActs from flat positions row·n_features + feature in ascending order, with `values`.
SparseActs sparse_from_flat(const at::Tensor& flat, const at::Tensor& values, std::int64_t n_rows,
                            std::int64_t n_features);
/// SparseActs from entries already grouped by row (rows ascending), with the row pointers.
SparseActs sparse_from_coo(at::Tensor rows, at::Tensor indices, at::Tensor values,
                           std::int64_t n_rows, std::int64_t n_features);
/// The non-zero entries of a dense [n_rows, n_features] tensor.
SparseActs sparse_from_dense(const at::Tensor& dense);

/// x̂[t] = Σ_e values[e]·W[indices[e]] (+ bias): [n_rows, d]. W: [n_features, d] rows; bias
/// [d] or undefined.
at::Tensor sparse_decode(const SparseActs& a, const at::Tensor& W, const at::Tensor& bias,
                         SparseBackend backend = SparseBackend::kAuto);

/// out[e] = ⟨G[rows[e]], W[indices[e]]⟩: [nnz]. G: [n_rows, d]; W: [n_features, d].
at::Tensor sparse_row_dot(const SparseActs& a, const at::Tensor& G, const at::Tensor& W,
                          SparseBackend backend = SparseBackend::kAuto);

/// Weight gradient by scatter-add, never forming a dense [tokens × features] matrix:
///   out[i] = Σ_{e: indices[e] = i} values[e]·G[rows[e]]   (rows of unused features are zeroed).
/// rows, indices, values: [nnz] in any order (COO); G: [n_G, d]; out: [n_features, d], any
/// strides (a transposed view of a [d, n_features] tensor is written column-block-wise).
void sparse_weight_grad(const at::Tensor& out, const at::Tensor& rows, const at::Tensor& indices,
                        const at::Tensor& values, const at::Tensor& G,
                        SparseBackend backend = SparseBackend::kAuto);

/// Σ over entries per feature: [n_features] (index_add of `values` at `indices`).
at::Tensor sparse_feature_sum(const at::Tensor& indices, const at::Tensor& values,
                              std::int64_t n_features);

}  // namespace saes::dictionaries

// Sparse-dictionary configs (spec §1.2): SparseDictionaryConfig with the SAE fields, and
// PretrainedSaeConfig for loading a trained dictionary. Names and defaults follow the original.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "saes/core/dtype.h"

namespace saes::dictionaries {

/// Dictionary variant; the registry dispatches on it explicitly (sae, clt and lorsa are
/// implemented).
enum class SaeType { kSae, kCrosscoder, kClt, kLorsa, kMolt };
inline constexpr std::array<std::string_view, 5> kSaeTypeNames = {"sae", "crosscoder", "clt",
                                                                  "lorsa", "molt"};
constexpr std::span<const std::string_view> enum_names(SaeType) { return kSaeTypeNames; }

/// Activation function; `batchlayertopk` and `layertopk` are CLT-only upstream.
enum class ActFn { kRelu, kJumpRelu, kTopK, kBatchTopK, kBatchLayerTopK, kLayerTopK };
inline constexpr std::array<std::string_view, 6> kActFnNames = {
    "relu", "jumprelu", "topk", "batchtopk", "batchlayertopk", "layertopk"};
constexpr std::span<const std::string_view> enum_names(ActFn) { return kActFnNames; }

/// True for the TopK family (k-sparse activation functions).
constexpr bool is_topk_family(ActFn act_fn) {
  return act_fn == ActFn::kTopK || act_fn == ActFn::kBatchTopK ||
         act_fn == ActFn::kBatchLayerTopK || act_fn == ActFn::kLayerTopK;
}

/// How input activations are scaled before the dictionary (spec §2.1).
enum class NormActivation { kTokenWise, kBatchWise, kDatasetWise, kInference };
inline constexpr std::array<std::string_view, 4> kNormActivationNames = {
    "token-wise", "batch-wise", "dataset-wise", "inference"};
constexpr std::span<const std::string_view> enum_names(NormActivation) {
  return kNormActivationNames;
}

/// Sparse kernels of the SAE training step and decode (docs/dictionaries.md): `auto` uses them
/// when the measured density of the activations is at most kSparseMaxDensity, `on` wherever they
/// apply, `off` never.
enum class SparseKernels { kAuto, kOn, kOff };
inline constexpr std::array<std::string_view, 3> kSparseKernelsNames = {"auto", "on", "off"};
constexpr std::span<const std::string_view> enum_names(SparseKernels) {
  return kSparseKernelsNames;
}
/// `sparse_kernels: auto` switches to the sparse path at or below this fraction of active entries.
inline constexpr double kSparseMaxDensity = 0.05;

/// Common dictionary fields plus the SAE/transcoder ones (`hook_point_in/out`, `use_glu_encoder`)
/// and the cross-layer transcoder's (`hook_points_in/out`, spec §2.4).
struct SparseDictionaryConfig {
  SaeType sae_type = SaeType::kSae;
  std::int64_t d_model = 0;
  double expansion_factor = 0.0;
  bool use_decoder_bias = true;
  ActFn act_fn = ActFn::kRelu;
  NormActivation norm_activation = NormActivation::kDatasetWise;
  bool sparsity_include_decoder_norm = true;
  std::int64_t top_k = 50;
  std::optional<std::string> sae_pretrained_name_or_path;
  bool strict_loading = true;
  double jumprelu_threshold_window = 2.0;
  std::string hook_point_in;
  std::string hook_point_out;
  bool use_glu_encoder = false;
  std::vector<std::string> hook_points;      ///< crosscoder: the H hooks it reads and rebuilds
  std::vector<std::string> hook_points_in;   ///< clt: one input hook per layer
  std::vector<std::string> hook_points_out;  ///< clt: one output hook per layer (same length)
  bool init_cross_layer_decoder_all_zero = false;
  bool decode_with_csr = false;
  double sparsity_threshold_for_csr = 0.05;
  SparseKernels sparse_kernels = SparseKernels::kAuto;
  // ---- lorsa (spec §2.6; names and defaults as the original's LorsaConfig) ----
  std::int64_t n_qk_heads = 0;  ///< lorsa: QK heads; d_sae / n_qk_heads OV heads share each
  std::int64_t d_qk_head = 0;
  std::string positional_embedding_type = "rotary";  ///< rotary | none
  std::int64_t rotary_dim = 0;
  double rotary_base = 10000.0;
  bool rotary_adjacent_pairs = true;  ///< GPT-J pairs (2i, 2i+1); false: NeoX halves
  std::int64_t rotary_scale = 1;
  bool use_NTK_by_parts_rope = false;
  double NTK_by_parts_factor = 1.0;
  double NTK_by_parts_low_freq_factor = 1.0;
  double NTK_by_parts_high_freq_factor = 1.0;
  std::int64_t old_context_len = 2048;
  std::int64_t n_ctx = 0;
  std::optional<double> attn_scale;  ///< null: sqrt(d_qk_head); scores are divided by it
  bool use_post_qk_ln = false;
  std::optional<std::string> normalization_type;  ///< with use_post_qk_ln: RMS
  double eps = 1e-6;
  // ---- molt (spec §2.5) ----
  /// molt: transforms per rank ({"1": 512, "4": 128}, ascending rank order); d_sae = Σ counts.
  std::map<std::string, std::int64_t> rank_counts;
  std::string device = "cpu";
  DType dtype = DType::kFloat32;

  /// Number of features: int(d_model * expansion_factor); a MoLT's Σ rank_counts.
  std::int64_t d_sae() const {
    if (sae_type == SaeType::kMolt && !rank_counts.empty()) {
      std::int64_t n = 0;
      for (const auto& [rank, count] : rank_counts) n += count;
      return n;
    }
    return static_cast<std::int64_t>(static_cast<double>(d_model) * expansion_factor);
  }

  template <class V>
  void visit_fields(V& v) {
    v.required("sae_type", sae_type,
               "dictionary variant: sae (also a transcoder), crosscoder, clt, lorsa, molt");
    v.required("d_model", d_model, "activation width");
    v.required("expansion_factor", expansion_factor,
               "d_sae = int(d_model * expansion_factor) (molt: within 0.1 of Σ rank_counts / "
               "d_model)");
    v("use_decoder_bias", use_decoder_bias, "add the decoder bias b_D");
    v("act_fn", act_fn, "activation function");
    v("norm_activation", norm_activation, "activation scaling before encoding (spec §2.1)");
    v("sparsity_include_decoder_norm", sparsity_include_decoder_norm,
      "gate and penalise features by h_i * ||W_D,i|| instead of h_i");
    v("top_k", top_k, "k of the TopK family");
    v("sae_pretrained_name_or_path", sae_pretrained_name_or_path,
      "load weights from this checkpoint instead of initializing");
    v("strict_loading", strict_loading, "require an exact tensor-name match when loading");
    v("jumprelu_threshold_window", jumprelu_threshold_window,
      "JumpReLU straight-through rectangle width epsilon");
    v("hook_point_in", hook_point_in, "sae: hook point the dictionary encodes (required)");
    v("hook_point_out", hook_point_out,
      "sae: hook point it reconstructs (required; equal to hook_point_in for an SAE, different "
      "for a transcoder)");
    v("use_glu_encoder", use_glu_encoder, "gate the encoder with a second (GLU) projection");
    v("hook_points", hook_points,
      "crosscoder: the H hook points (heads) it encodes into one latent and reconstructs, e.g. "
      "[blocks.1.hook_resid_post, blocks.2.hook_resid_post] (required)");
    v("hook_points_in", hook_points_in,
      "clt: the input hook of each layer, e.g. blocks.L.ln2.hook_normalized (required)");
    v("hook_points_out", hook_points_out,
      "clt: the output hook of each layer, e.g. blocks.L.hook_mlp_out (required, same length)");
    v("init_cross_layer_decoder_all_zero", init_cross_layer_decoder_all_zero,
      "clt: initialize the decoders from layer l into later layers t > l to zero");
    v("decode_with_csr", decode_with_csr,
      "clt: the original's switch for the sparse decode; true: sparse_kernels auto switches to "
      "the sparse kernels at or below sparsity_threshold_for_csr density instead of 0.05");
    v("sparsity_threshold_for_csr", sparsity_threshold_for_csr,
      "clt: with decode_with_csr, the density at or below which the sparse kernels are used");
    v("sparse_kernels", sparse_kernels,
      "sparse decode/backward for TopK, BatchTopK and sparse ReLU (auto: by measured density, "
      "and dense for 16-bit dtypes on CUDA, where tensor-core GEMMs win; on; off)");
    v("n_qk_heads", n_qk_heads, "lorsa: number of QK heads (required); d_sae must divide by it");
    v("d_qk_head", d_qk_head, "lorsa: width of a QK head (required)");
    v("positional_embedding_type", positional_embedding_type, "lorsa: rotary or none");
    v("rotary_dim", rotary_dim, "lorsa: rotated dims of each QK head (required with rotary)");
    v("rotary_base", rotary_base, "lorsa: RoPE base");
    v("rotary_adjacent_pairs", rotary_adjacent_pairs,
      "lorsa: rotate adjacent pairs (GPT-J, llama2.c); false: the two halves (NeoX, HF Llama)");
    v("rotary_scale", rotary_scale, "lorsa: the original's rotary_scale (only 1 is supported)");
    v("use_NTK_by_parts_rope", use_NTK_by_parts_rope,
      "lorsa: Llama-3 NTK-by-parts scaling of the RoPE frequencies");
    v("NTK_by_parts_factor", NTK_by_parts_factor, "lorsa: NTK-by-parts factor");
    v("NTK_by_parts_low_freq_factor", NTK_by_parts_low_freq_factor,
      "lorsa: NTK-by-parts low-frequency factor");
    v("NTK_by_parts_high_freq_factor", NTK_by_parts_high_freq_factor,
      "lorsa: NTK-by-parts high-frequency factor");
    v("old_context_len", old_context_len, "lorsa: NTK-by-parts original context length");
    v("n_ctx", n_ctx, "lorsa: longest context (size of the mask and rotary tables; required)");
    v("attn_scale", attn_scale, "lorsa: attention scores are divided by it (null: sqrt(d_qk_head))");
    v("use_post_qk_ln", use_post_qk_ln, "lorsa: normalize q and k per head (QK-norm)");
    v("normalization_type", normalization_type, "lorsa: the QK-norm (RMS)");
    v("eps", eps, "lorsa: epsilon of the QK-norm");
    v("rank_counts", rank_counts,
      "molt: number of transforms of each rank, e.g. {1: 512, 4: 128} (required; each count "
      "must divide by model_parallel_size)");
    v("device", device, "device of the parameters: cpu, cuda, cuda:N");
    v("dtype", dtype, "parameter dtype");
    v.unsupported("use_triton_kernel", "saes has no Triton kernels; remove it");
    v.unsupported("sparsity_threshold_for_triton_spmm_kernel",
                  "saes has no Triton kernels; remove it");
  }
  bool operator==(const SparseDictionaryConfig&) const = default;
};

/// A trained dictionary to load (analysis, conversion): upstream `PretrainedSAE`.
struct PretrainedSaeConfig {
  std::string pretrained_name_or_path;
  bool fold_activation_scale = true;
  bool strict_loading = true;
  std::string device = "cpu";
  DType dtype = DType::kFloat32;

  template <class V>
  void visit_fields(V& v) {
    v.required("pretrained_name_or_path", pretrained_name_or_path, "checkpoint folder or file");
    v("fold_activation_scale", fold_activation_scale,
      "fold dataset-wise scaling into the weights on load (a no-op if already folded)");
    v("strict_loading", strict_loading, "require an exact tensor-name match");
    v("device", device, "device of the parameters");
    v("dtype", dtype, "parameter dtype");
  }
  bool operator==(const PretrainedSaeConfig&) const = default;
};

}  // namespace saes::dictionaries

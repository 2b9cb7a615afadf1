// ConversionConfig: what `saes-convert` does to a checkpoint (spec §10, Appendix D "convert"):
// input/output layout, SAELens version, TopK -> JumpReLU, scale folding, dtype and the analysis
// database that SAELens' sparsity.safetensors is made from.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string_view>

#include "saes/core/dtype.h"

namespace saes::convert {

/// Output layout: saes' own checkpoint folder or a SAELens one.
enum class ConvertFormat { kNative, kSaeLens };
inline constexpr std::array<std::string_view, 2> kConvertFormatNames = {"native", "saelens"};
constexpr std::span<const std::string_view> enum_names(ConvertFormat) {
  return kConvertFormatNames;
}

/// Input layout: detected from the files present (`auto`), or forced. `lmsaes` is the original's
/// checkpoint folder (config.json + sae_weights.safetensors), `sparsify` EleutherAI's.
enum class InputFormat { kAuto, kNative, kSaeLens, kLmSaes, kSparsify };
inline constexpr std::array<std::string_view, 5> kInputFormatNames = {"auto", "native", "saelens",
                                                                      "lmsaes", "sparsify"};
constexpr std::span<const std::string_view> enum_names(InputFormat) { return kInputFormatNames; }

/// Dataset-wise activation scaling: leave as stored, fold into the weights, or unfold again.
enum class ScaleFolding { kKeep, kFold, kUnfold };
inline constexpr std::array<std::string_view, 3> kScaleFoldingNames = {"keep", "fold", "unfold"};
constexpr std::span<const std::string_view> enum_names(ScaleFolding) { return kScaleFoldingNames; }

struct ConversionConfig {
  ConvertFormat to = ConvertFormat::kNative;
  std::int64_t saelens_version = 6;
  bool topk_to_jumprelu = false;
  ScaleFolding fold_activation_scale = ScaleFolding::kKeep;
  std::optional<DType> dtype;
  InputFormat from = InputFormat::kAuto;
  bool overwrite = false;
  std::optional<std::filesystem::path> sparsity_from;
  std::optional<std::int64_t> clt_layer;

  template <class V>
  void visit_fields(V& v) {
    v("to", to, "output layout");
    v("saelens_version", saelens_version, "SAELens layout version written/read: 5 or 6");
    v("topk_to_jumprelu", topk_to_jumprelu,
      "turn a TopK dictionary into JumpReLU with thresholds measured on activation_factory");
    v("fold_activation_scale", fold_activation_scale, "dataset-wise scale: keep | fold | unfold");
    v("dtype", dtype, "cast parameters to this dtype (null: keep)");
    v("from", from, "input layout: auto (detected from the files) or forced");
    v("overwrite", overwrite, "replace an existing non-empty output folder");
    v("sparsity_from", sparsity_from,
      "analysis database (saes-analyze's default.sqlite) whose feature frequencies become "
      "SAELens' sparsity.safetensors; to: saelens only (null: none)");
    v("clt_layer", clt_layer,
      "clt: write this source layer as an SAE transcoder (its encoder and same-layer decoder; "
      "its writes into later layers are dropped, the log says how much); null: the whole CLT");
  }
  bool operator==(const ConversionConfig&) const = default;
};

}  // namespace saes::convert

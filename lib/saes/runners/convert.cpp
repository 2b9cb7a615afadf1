// run_convert (spec §10, Appendix D "convert"): read a dictionary in any known layout, fold or
// unfold, TopK → JumpReLU on activations, cast, and write native or SAELens (with
// sparsity.safetensors from an analysis database) into a staged folder.
#include <iterator>
#include <optional>
#include <string>

#include <ATen/core/Tensor.h>

#include "saes/config/config_loader.h"
#include "saes/convert/formats.h"
#include "saes/convert/sparsity.h"
#include "saes/convert/staged_output.h"
#include "saes/convert/transforms.h"
#include "saes/core/error.h"
#include "saes/distributed/communicator.h"
#include "saes/io/atomic_file.h"
#include "saes/runners/activation_input.h"
#include "saes/runners/runners.h"

namespace saes::runners {
namespace {

namespace fs = std::filesystem;
using config::ConvertSettings;
using convert::ScaleFolding;
using dictionaries::SparseAutoEncoder;

/// Model/dataset facts of a saes-train run folder (config.resolved.yaml), for SAELens metadata.
convert::Provenance run_provenance(const fs::path& input, Logger& logger) {
  convert::Provenance p;
  const fs::path resolved = input / "config.resolved.yaml";
  if (!fs::is_regular_file(resolved)) return p;
  try {
    const auto t = config::parse_train_settings(io::read_file(resolved), resolved.string(), {},
                                                config::Validation::kOff);
    if (t.model_name) p.model_name = *t.model_name;
    if (t.model) {
      if (!p.model_name) p.model_name = t.model->model_name;
      p.prepend_bos = t.model->prepend_bos;
    }
    if (t.activation_factory.context_size) p.context_size = *t.activation_factory.context_size;
    if (!t.datasets.empty()) p.dataset_path = t.datasets.begin()->second.dataset_name_or_path;
  } catch (const Error& e) {
    logger.warn("{}: not read ({}); SAELens metadata stays empty", resolved.string(), e.what());
  }
  return p;
}

std::unique_ptr<dictionaries::SparseDictionary> to_jumprelu(
    const ConvertSettings& s, const dictionaries::SparseDictionary& dict, Logger& logger) {
  SAES_CHECK(s.activation_factory.has_value(), ConfigError,
             "topk_to_jumprelu measures thresholds on activations: set activation_factory (or "
             "--activations on the command line)");
  ActivationInputs in{*s.activation_factory, s.model, s.datasets, dict.config().d_model,
                      static_cast<std::uint64_t>(s.seed)};
  ActivationStreams streams(std::move(in), logger);
  auto stream = streams.make();
  auto first = stream->next();
  SAES_CHECK(first.has_value(), DataError,
             "the activation stream yielded no batch; check activation_factory.sources");
  auto second = stream->next();
  const dictionaries::HookActs fit = batch_hooks(*first, dict.input_hooks());
  const dictionaries::HookActs check = second ? batch_hooks(*second, dict.input_hooks()) : fit;
  convert::JumpReluReport report;
  auto out = convert::topk_to_jumprelu(dict, fit, check, &report);
  logger.info(
      "topk -> jumprelu: threshold {:.6g} from {} rows; L0 {:.2f} (topk {:.2f}), mean squared "
      "reconstruction difference {:.6g}{}",
      report.threshold, fit.begin()->second.size(0), report.l0, report.topk_l0, report.reconstruction_diff,
      second ? "" : " (measured on the fitting batch: the stream had one batch)");
  return out;
}

/// The sparsity tensor the SAELens output gets: from sparsity_from, else the input's own
/// sparsity.safetensors while the activation function is unchanged, else none (undefined).
at::Tensor output_sparsity(const ConvertSettings& s, const at::Tensor& imported, std::int64_t d_sae,
                           Logger& logger) {
  if (s.conversion.sparsity_from) {
    at::Tensor out = convert::sparsity_from_analysis(*s.conversion.sparsity_from, d_sae);
    logger.info("sparsity.safetensors from {} ({} features)", s.conversion.sparsity_from->string(),
                d_sae);
    return out;
  }
  if (!imported.defined()) return {};
  if (s.conversion.to != convert::ConvertFormat::kSaeLens) {
    logger.info("{} is not part of the native layout; not carried over",
                convert::kSaeLensSparsityFile);
    return {};
  }
  if (s.conversion.topk_to_jumprelu) {
    logger.info("{} of the input not carried over: topk_to_jumprelu changes which features fire",
                convert::kSaeLensSparsityFile);
    return {};
  }
  return imported;
}

}  // namespace

/// `inner` is `outer` or lies inside it (both made absolute, `..` and symlinks resolved as far
/// as they exist).
bool within(const fs::path& inner, const fs::path& outer) {
  const fs::path a = fs::weakly_canonical(fs::absolute(inner));
  const fs::path b = fs::weakly_canonical(fs::absolute(outer));
  auto ai = a.begin();
  for (auto bi = b.begin(); bi != b.end(); ++bi, ++ai) {
    if (bi->empty() && std::next(bi) == b.end()) break;  // a trailing separator
    if (ai == a.end() || *ai != *bi) return false;
  }
  return true;
}

/// The output never replaces or lands inside what is converted (with --overwrite it would
/// delete it): refused when it is the input, inside an input folder, or holds the input.
void check_output_apart(const ConvertSettings& s) {
  const bool folder = fs::is_directory(s.input);
  SAES_CHECK(!within(s.input, s.output) && !(folder && within(s.output, s.input)), ConfigError,
             "output {}: {} the input {}; write the conversion to another folder",
             s.output.string(),
             within(s.output, s.input) ? "is, or lies inside," : "contains", s.input.string());
}

int run_convert(const ConvertSettings& s, RunContext& context) {
  SAES_CHECK(context.world.size() == 1, UnsupportedError,
             "saes-convert runs as one process; got {} processes", context.world.size());
  const auto& par = s.parallelism;
  SAES_CHECK(
      par.data_parallel_size == 1 && par.model_parallel_size == 1 && par.head_parallel_size == 1,
      UnsupportedError,
      "data/model/head_parallel_size ({}/{}/{}): saes-convert runs as one process on whole "
      "checkpoints; set them to 1 (the original's key is accepted, not used)",
      par.data_parallel_size, par.model_parallel_size, par.head_parallel_size);
  SAES_CHECK(
      !s.conversion.sparsity_from || s.conversion.to == convert::ConvertFormat::kSaeLens,
      ConfigError,
      "sparsity_from: sparsity.safetensors belongs to the SAELens layout: needs to: saelens");
  check_output_apart(s);
  Logger& logger = context.logger;
  convert::StagedOutput out(s.output, s.conversion.overwrite);
  convert::Imported in = convert::read_dictionary(s.input, s.conversion.from, s.device);
  const auto& c = in.dict->config();
  logger.info("read {} ({} layout): act_fn {}, d_model {}, d_sae {}, {}", s.input.string(),
              convert::kInputFormatNames[static_cast<std::size_t>(in.format)],
              dictionaries::kActFnNames[static_cast<std::size_t>(c.act_fn)], c.d_model,
              in.dict->d_sae(), in.dict->folded() ? "folded" : "not folded");
  if (in.sparsity.defined()) {
    logger.info("{}: {} present (float32 [{}])", s.input.string(), convert::kSaeLensSparsityFile,
                in.sparsity.size(0));
  }
  const at::Tensor sparsity = output_sparsity(s, in.sparsity, in.dict->d_sae(), logger);
  convert::Provenance provenance = in.provenance;
  if (in.format == convert::InputFormat::kNative && fs::is_directory(s.input)) {
    provenance = run_provenance(s.input, logger);
  }
  if (s.model_name) provenance.model_name = *s.model_name;

  std::unique_ptr<dictionaries::SparseDictionary> dict = std::move(in.dict);
  if (s.conversion.fold_activation_scale == ScaleFolding::kFold) dict->fold_activation_scale();
  if (s.conversion.fold_activation_scale == ScaleFolding::kUnfold) dict->unfold_activation_scale();
  // The SAELens layout is written for SAEs/transcoders.
  const auto sae_only = [&](const char* what) -> SparseAutoEncoder& {
    auto* sae = dynamic_cast<SparseAutoEncoder*>(dict.get());
    SAES_CHECK(sae != nullptr, UnsupportedError,
               "{}: not implemented for sae_type {} yet (fold, unfold, topk_to_jumprelu, dtype and "
               "--to native are)",
               what,
               dictionaries::kSaeTypeNames[static_cast<std::size_t>(dict->config().sae_type)]);
    return *sae;
  };
  if (s.conversion.topk_to_jumprelu) dict = to_jumprelu(s, *dict, logger);
  if (s.conversion.clt_layer) {
    double dropped = 0.0;
    dict = convert::clt_layer_transcoder(*dict, *s.conversion.clt_layer, &dropped);
    logger.warn(
        "clt_layer {}: wrote the layer as a transcoder {} -> {}; its writes into later layers "
        "({:.1f}% of the layer's squared decoder norm) have no place in it and are dropped",
        *s.conversion.clt_layer, dict->config().hook_point_in, dict->config().hook_point_out,
        100.0 * dropped);
  }
  if (s.conversion.dtype) dict = convert::cast_dtype(*dict, *s.conversion.dtype);

  if (s.conversion.to == convert::ConvertFormat::kNative) {
    convert::write_native(*dict, out.staging());
  } else {
    SparseAutoEncoder& sae = sae_only("to: saelens");
    convert::write_saelens(sae, provenance, out.staging(), s.conversion.saelens_version);
    if (sparsity.defined()) convert::write_saelens_sparsity(sparsity, out.staging());
  }
  out.commit();
  logger.info("wrote {} ({})", s.output.string(),
              convert::kConvertFormatNames[static_cast<std::size_t>(s.conversion.to)]);
  return 0;
}

}  // namespace saes::runners

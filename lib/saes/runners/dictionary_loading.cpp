// load_trained_dictionary: a saes-train run folder of any variant, or a saes-convert layout.
#include "saes/runners/dictionary_loading.h"

#include "saes/config/config_loader.h"
#include "saes/convert/formats.h"
#include "saes/core/error.h"
#include "saes/dictionaries/registry.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/io/atomic_file.h"
#include "saes/training/dictionary_module.h"

namespace saes::runners {

namespace fs = std::filesystem;

std::unique_ptr<dictionaries::SparseDictionary> load_trained_dictionary(
    const fs::path& path, const DictionaryLoad& options) {
  SAES_CHECK(fs::exists(path), IoError, "{} does not exist", path.string());
  fs::path weights = path;
  if (fs::is_directory(weights)) weights /= training::kWeightsFileName;
  const fs::path yaml = weights.parent_path() / config::kResolvedConfigName;
  if (fs::exists(weights) && fs::exists(yaml)) {
    const auto train = config::parse_train_settings(io::read_file(yaml), yaml.string(), {},
                                                    config::Validation::kOff);
    dictionaries::SparseDictionaryConfig cfg = train.sae;
    cfg.device = options.device;
    cfg.dtype = options.dtype;
    cfg.strict_loading = options.strict_loading;
    auto dict = dictionaries::make_dictionary(cfg, options.shard);
    dict->load(weights);
    return dict;
  }
  SAES_CHECK(!options.shard.sharded(), UnsupportedError,
             "{}: features split over ranks need a saes-train run folder (config.resolved.yaml "
             "and {})",
             path.string(), training::kWeightsFileName);
  convert::Imported imported =
      convert::read_dictionary(path, convert::InputFormat::kAuto, options.device);
  return std::move(imported.dict);
}

}  // namespace saes::runners

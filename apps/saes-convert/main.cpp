// saes-convert: SAELens export/import, other formats, TopK→JumpReLU, folding, dtype conversion.
// Two forms: `saes-convert INPUT OUTPUT [--to saelens] [flags]` and `saes-convert convert.yaml`.
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/convert/formats.h"
#include "saes/core/error.h"
#include "saes/runners/runners.h"

#include "common/cli.h"

namespace {

namespace fs = std::filesystem;

struct Args {
  std::vector<std::string> positional;
  std::string to = "native";
  std::string from = "auto";
  int saelens_version = 6;
  bool topk_to_jumprelu = false;
  std::string activations;
  int batch_size = 4096;
  bool fold = false;
  bool unfold = false;
  std::string dtype;
  std::string device = "cpu";
  std::string model_name;
  std::string sparsity;
  int clt_layer = -1;
  bool overwrite = false;
};

void add_options(CLI::App& app, Args& a, saes::cli::CommonOptions& o) {
  app.add_option("args", a.positional,
                 "INPUT OUTPUT (a run/checkpoint folder and the output "
                 "folder), or one YAML config file")
      ->expected(1, 2);
  app.add_option("--to", a.to, "output layout: native | saelens");
  app.add_option("--from", a.from, "input layout: auto | native | saelens | lmsaes | sparsify");
  app.add_option("--saelens-version", a.saelens_version, "SAELens cfg.json layout: 6 or 5");
  app.add_flag("--topk-to-jumprelu", a.topk_to_jumprelu,
               "turn TopK/BatchTopK into JumpReLU with thresholds from --activations");
  app.add_option("--activations", a.activations, "activation shard folder (saes-generate output)");
  app.add_option("--batch-size", a.batch_size, "rows per activation batch for --topk-to-jumprelu");
  auto* fold = app.add_flag("--fold", a.fold, "fold the dataset-wise scale into the weights");
  app.add_flag("--unfold", a.unfold, "undo a fold (restores dataset-wise scaling)")->excludes(fold);
  app.add_option("--dtype", a.dtype, "cast the parameters: float32 | bf16 | float16 | float64");
  app.add_option("--device", a.device, "device used for the conversion");
  app.add_option("--model-name", a.model_name, "model name written into SAELens metadata");
  app.add_option("--sparsity", a.sparsity,
                 "analysis database (saes-analyze's default.sqlite) whose feature frequencies "
                 "become sparsity.safetensors (--to saelens only)");
  app.add_option("--clt-layer", a.clt_layer,
                 "write one source layer of a CLT as an SAE transcoder (same-layer decoder only)");
  app.add_flag("--overwrite", a.overwrite, "replace an existing non-empty output folder");
  app.add_option("--set", o.overrides, "Override a config value (YAML form only)")
      ->allow_extra_args(false);
  app.add_flag("--print-config", o.print_config, "Print the resolved config as YAML and exit");
  app.add_flag("-v,--verbose", o.verbose, "Debug logging and full error backtraces");
  app.add_option("--log-level", o.log_level, "debug | info | warn | error");
  app.add_option("--threads", o.threads, "Torch threads (0 = all available cores)");
}

/// A YAML double-quoted scalar.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

bool is_yaml(const std::string& path) {
  const auto ext = fs::path(path).extension();
  return fs::is_regular_file(path) && (ext == ".yaml" || ext == ".yml");
}

/// The command-line form as config overrides, so both forms share parsing and validation.
std::vector<std::string> overrides_of(const Args& a) {
  SAES_CHECK(a.positional.size() == 2, saes::ConfigError,
             "expected INPUT OUTPUT (or one YAML config); got {} argument(s); see --help",
             a.positional.size());
  std::vector<std::string> o = {"input=" + quoted(a.positional[0]),
                                "output=" + quoted(a.positional[1]),
                                "to=" + quoted(a.to),
                                "from=" + quoted(a.from),
                                fmt::format("saelens_version={}", a.saelens_version),
                                fmt::format("topk_to_jumprelu={}", a.topk_to_jumprelu),
                                "fold_activation_scale=" + std::string(a.fold     ? "fold"
                                                                       : a.unfold ? "unfold"
                                                                                  : "keep"),
                                fmt::format("overwrite={}", a.overwrite),
                                "device=" + quoted(a.device)};
  if (!a.dtype.empty()) o.push_back("dtype=" + quoted(a.dtype));
  if (!a.model_name.empty()) o.push_back("model_name=" + quoted(a.model_name));
  if (!a.sparsity.empty()) o.push_back("sparsity_from=" + quoted(a.sparsity));
  if (a.clt_layer != -1) o.push_back(fmt::format("clt_layer={}", a.clt_layer));
  if (!a.activations.empty()) {
    const auto from = saes::convert::InputFormat::kAuto;
    const auto in = saes::convert::read_dictionary(a.positional[0], from, "cpu");
    std::vector<std::string> hooks;
    for (const auto& h : in.dict->hook_points()) hooks.push_back(quoted(h));
    o.push_back(fmt::format(
        "activation_factory={{sources: [{{type: activations, name: activations, path: {}}}], "
        "target: activations-1d, hook_points: [{}], batch_size: {}}}",
        quoted(a.activations), fmt::join(hooks, ", "), a.batch_size));
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  static const saes::cli::Tool kTool{
      "saes-convert",
      "Convert dictionaries between layouts (saes native, SAELens v5/v6, the original's "
      "checkpoints, sparsify), TopK→JumpReLU, fold/unfold the activation scale, cast dtypes. "
      "The input layout is detected; output is staged and renamed into place (docs/convert.md).",
      "  saes-convert results/run --to saelens out/saelens\n"
      "  saes-convert results/run --to saelens out/saelens --sparsity analysis/default.sqlite\n"
      "  saes-convert results/run --to saelens out/saelens-v5 --saelens-version 5\n"
      "  saes-convert out/saelens --to native out/native\n"
      "  saes-convert results/run --to saelens out/jr --topk-to-jumprelu --activations data/acts\n"
      "  saes-convert results/run out/bf16 --dtype bf16 --unfold\n"
      "  saes-convert configs/convert-saelens.yaml --set input=results/run\n"};
  auto app = saes::cli::make_app(kTool);
  Args args;
  saes::cli::CommonOptions options;
  add_options(*app, args, options);
  return saes::cli::run(kTool, *app, argc, argv, options.verbose, [&](saes::cli::Session& session) {
    SAES_CHECK(!args.positional.empty(), saes::ConfigError,
               "config is required: saes-convert INPUT OUTPUT or saes-convert CONFIG.yaml");
    saes::config::ConvertSettings settings;
    if (args.positional.size() == 1 && is_yaml(args.positional[0])) {
      settings = saes::config::load_convert_settings(args.positional[0], options.overrides);
    } else {
      auto overrides = overrides_of(args);
      overrides.insert(overrides.end(), options.overrides.begin(), options.overrides.end());
      settings = saes::config::parse_convert_settings("{}", "command line", overrides);
    }
    if (options.print_config) {
      session.print(saes::config::dump_yaml(settings));
      return 0;
    }
    auto context = session.configure(settings.logging, settings.threads, options);
    return saes::runners::run_convert(settings, context);
  });
}

// saes-generate: run a language model over text and write activation shards; `tokenize` and
// `probe` subcommands for checking tokenization and hook values.
#include <iostream>

#include "saes/core/error.h"
#include "saes/runners/generate_tools.h"
#include "saes/runners/runners.h"

#include "common/cli.h"

namespace {

using saes::runners::ProbeOptions;
using saes::runners::TokenizeOptions;

struct ProbeArgs {
  ProbeOptions options;
  std::string model_path;
  std::string tokenizer_path;
  std::string ids;
  std::string hooks;
  std::string dictionary;
  std::vector<std::string> checkpoints;
  std::string device = "cpu";
  std::string dtype = "float32";
};

void add_tokenize(CLI::App& app, TokenizeOptions& o) {
  auto* sub = app.add_subcommand("tokenize", "Print the token ids of a text (JSON lines)");
  sub->add_option("--tokenizer", o.tokenizer, "tokenizer file or folder")->required();
  auto* text = sub->add_option("--text", o.text, "text to tokenize");
  auto* input = sub->add_option("--input", o.input, "JSONL file, one {\"text\": ...} per line")
                    ->check(CLI::ExistingFile);
  text->excludes(input);
  sub->add_flag("--pieces", o.pieces, "also print the pieces");
}

void add_probe(CLI::App& app, ProbeArgs& a) {
  auto* sub = app.add_subcommand("probe", "Run the model on one text; save tokens, hooks, logits");
  sub->add_option("--model", a.model_path, "HF folder or llama2.c .bin")->required();
  sub->add_option("--tokenizer", a.tokenizer_path, "tokenizer (default: beside the model)");
  auto* text = sub->add_option("--text", a.options.text, "text (BOS is prepended)");
  auto* ids = sub->add_option("--ids", a.ids, "token ids, e.g. 1,403,407 (used as given)");
  text->excludes(ids);
  sub->add_option("--hooks", a.hooks, "hook points, comma-separated");
  sub->add_flag("--logits", a.options.logits, "also save the logits");
  sub->add_option("--dictionary", a.dictionary,
                  "a trained dictionary (saes-train run folder or a saes-convert layout): also "
                  "save its feature acts and reconstructions");
  sub->add_option("--checkpoint", a.checkpoints,
                  "NAME=PATH: another checkpoint of the model (repeatable); hooks are then "
                  "NAME:HOOK");
  sub->add_option("--output", a.options.output, "safetensors file to write")->required();
  sub->add_option("--device", a.device, "cpu | cuda | cuda:N");
  sub->add_option("--dtype", a.dtype, "float32 | float16 | bfloat16");
}

ProbeOptions resolve_probe(ProbeArgs& a) {
  ProbeOptions o = a.options;
  o.model.model_from_pretrained_path = a.model_path;
  if (!a.tokenizer_path.empty()) o.model.tokenizer_path = a.tokenizer_path;
  if (!a.ids.empty()) o.ids = saes::runners::parse_id_list(a.ids, "--ids");
  o.hooks = saes::runners::split_list(a.hooks);
  if (!a.dictionary.empty()) o.dictionary = a.dictionary;
  for (const auto& c : a.checkpoints) {
    auto [name, path] = saes::runners::parse_checkpoint_option(c);
    SAES_CHECK(o.model.checkpoints.emplace(name, path).second, saes::ConfigError,
               "--checkpoint: the name {} is given twice", name);
  }
  o.model.device = a.device;
  auto dtype = saes::try_parse_dtype(a.dtype);
  SAES_CHECK(dtype.has_value(), saes::ConfigError,
             "--dtype: expected float32, float16 or "
             "bfloat16, got \"{}\"",
             a.dtype);
  o.model.dtype = *dtype;
  return o;
}

int run_config(saes::cli::Session& session, const saes::cli::CommonOptions& options) {
  SAES_CHECK(!options.config.empty(), saes::ConfigError,
             "config is required: saes-generate CONFIG.yaml (or a subcommand; see --help)");
  auto settings = saes::config::load_generate_settings(options.config, options.overrides);
  if (options.print_config) {
    session.print(saes::config::dump_yaml(settings));
    return 0;
  }
  auto context = session.configure(settings.logging, settings.threads, options);
  return saes::runners::run_generate(settings, context);
}

}  // namespace

int main(int argc, char** argv) {
  static const saes::cli::Tool kTool{
      "saes-generate",
      "Run a language model over text and write the activations of the chosen hook points to "
      "compressed shards (docs/shard-format.md). Resumable; run under mpirun to split the text.",
      "  saes-generate configs/generate-stories260k.yaml\n"
      "  saes-generate run cfg.yaml --set total_tokens=1000000 --set model.device=cuda\n"
      "  mpirun --bind-to none -np 2 saes-generate cfg.yaml\n"
      "  saes-generate tokenize --tokenizer data/stories260K/tok512.bin --text 'Once upon' "
      "--pieces\n"
      "  saes-generate probe --model data/stories260K/stories260K.bin --text 'Once upon a time' "
      "--hooks blocks.3.hook_resid_post --logits --output probe.safetensors\n"};
  auto app = saes::cli::make_app(kTool);
  saes::cli::CommonOptions options;
  saes::cli::add_config_options(*app, options, false);
  saes::cli::CommonOptions run_options;
  auto* run =
      app->add_subcommand("run", "Generate activations from a config (same as no subcommand)");
  saes::cli::add_config_options(*run, run_options);
  TokenizeOptions tokenize;
  add_tokenize(*app, tokenize);
  ProbeArgs probe;
  add_probe(*app, probe);
  app->require_subcommand(0, 1);
  const bool& verbose = options.verbose;
  return saes::cli::run(kTool, *app, argc, argv, verbose, [&](saes::cli::Session& session) {
    if (app->got_subcommand("tokenize")) {
      return saes::runners::run_tokenize(tokenize, std::cout);
    }
    if (app->got_subcommand("probe")) {
      return saes::runners::run_probe(resolve_probe(probe), std::cout);
    }
    return run_config(session, app->got_subcommand("run") ? run_options : options);
  });
}

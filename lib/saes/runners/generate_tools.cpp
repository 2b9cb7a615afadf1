// saes-generate tokenize / probe.
#include "saes/runners/generate_tools.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/io/safetensors.h"
#include "saes/lm/hf_folder.h"
#include "saes/runners/dictionary_loading.h"

namespace saes::runners {
namespace fs = std::filesystem;
namespace {

std::string ids_json(const lm::Tokenizer& tokenizer, const std::vector<int64_t>& ids, bool pieces) {
  nlohmann::json line;
  line["ids"] = ids;
  if (pieces) {
    std::vector<std::string> list;
    for (int64_t id : ids) list.push_back(tokenizer.piece(id));
    line["pieces"] = list;
  }
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string text_of_line(const std::string& line, const std::string& where) {
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception&) {
    SAES_THROW(DataError, "{}: invalid JSON", where);
  }
  SAES_CHECK(value.is_object() && value.contains("text") && value["text"].is_string(), DataError,
             "{}: expected an object with a string \"text\"", where);
  return value["text"].get<std::string>();
}

std::string shape_text(const at::Tensor& t) {
  return fmt::format("[{}]", fmt::join(t.sizes().vec(), ", "));
}

}  // namespace

std::vector<int64_t> parse_id_list(std::string_view text, std::string_view what) {
  std::vector<int64_t> ids;
  for (const std::string& item : split_list(text)) {
    int64_t value = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    SAES_CHECK(ec == std::errc() && end == item.data() + item.size() && value >= 0, ConfigError,
               "{}: expected comma-separated non-negative token ids, got \"{}\"", what, item);
    ids.push_back(value);
  }
  SAES_CHECK(!ids.empty(), ConfigError, "{}: no token ids in \"{}\"", what, text);
  return ids;
}

std::pair<std::string, fs::path> parse_checkpoint_option(std::string_view text) {
  const std::size_t eq = text.find('=');
  const std::string name(text.substr(0, std::min(eq, text.size())));
  SAES_CHECK(eq != std::string_view::npos && eq > 0 && eq + 1 < text.size(), ConfigError,
             "--checkpoint: expected NAME=PATH, got \"{}\"", text);
  SAES_CHECK(name.find(lm::kCheckpointSeparator) == std::string::npos, ConfigError,
             "--checkpoint {}: a checkpoint name must not contain '{}'", text,
             lm::kCheckpointSeparator);
  return {name, fs::path(text.substr(eq + 1))};
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string item(text.substr(start, comma - start));
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

int run_tokenize(const TokenizeOptions& options, std::ostream& out) {
  SAES_CHECK(options.text.has_value() != options.input.has_value(), ConfigError,
             "tokenize: give exactly one of --text and --input");
  const auto tokenizer = lm::load_tokenizer(options.tokenizer);
  if (options.text) {
    out << ids_json(*tokenizer, tokenizer->encode(*options.text), options.pieces) << '\n';
    return 0;
  }
  std::ifstream in(*options.input);
  SAES_CHECK(in.good(), IoError, "tokenize: cannot read {}", options.input->string());
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string text =
        text_of_line(line, fmt::format("{}:{}", options.input->string(), number));
    out << ids_json(*tokenizer, tokenizer->encode(text), options.pieces) << '\n';
  }
  return 0;
}

int run_probe(const ProbeOptions& options, std::ostream& out) {
  SAES_CHECK(options.text.has_value() != options.ids.has_value(), ConfigError,
             "probe: give exactly one of --text and --ids");
  SAES_CHECK(!options.hooks.empty() || options.logits || options.dictionary, ConfigError,
             "probe: nothing to capture: give --hooks, --logits and/or --dictionary");
  // --ids needs no tokenizer (a model folder without one works)
  lm::LanguageModel lm = lm::load_language_model(options.model, !options.ids.has_value());
  std::vector<int64_t> ids;
  if (options.ids) {
    ids = *options.ids;
    for (int64_t id : ids) {
      SAES_CHECK(id < lm.model.spec().d_vocab, ConfigError,
                 "--ids: token id {} is outside the vocabulary (size {})", id,
                 lm.model.spec().d_vocab);
    }
  } else {
    if (options.model.prepend_bos && lm.special_ids.bos) ids.push_back(*lm.special_ids.bos);
    for (int64_t id : lm.tokenizer->encode(*options.text)) ids.push_back(id);
    SAES_CHECK(!ids.empty(), ConfigError, "--text: the text has no tokens");
  }
  const at::Tensor tokens =
      at::from_blob(ids.data(), {1, static_cast<int64_t>(ids.size())}, at::kLong).clone();
  std::vector<std::string> captured = options.hooks;
  std::unique_ptr<dictionaries::SparseDictionary> dict;
  std::string dict_name;
  if (options.dictionary) {
    dict = load_trained_dictionary(*options.dictionary,
                                   DictionaryLoad{options.model.device, DType::kFloat32, true, {}});
    const fs::path p = fs::weakly_canonical(*options.dictionary);
    dict_name = (fs::is_directory(p) ? p : p.parent_path()).filename().string();
    for (const auto& h : dict->hook_points()) {
      if (std::find(captured.begin(), captured.end(), h) == captured.end()) captured.push_back(h);
    }
  }
  std::vector<std::string> logits;  // each checkpoint's, named as its hooks
  if (options.logits && lm.checkpoints.empty()) logits.emplace_back("logits");
  for (const auto& [name, model] : lm.checkpoints) {
    if (options.logits) logits.push_back(name + lm::kCheckpointSeparator + "logits");
  }
  std::vector<std::string> wanted = captured;
  wanted.insert(wanted.end(), logits.begin(), logits.end());
  const auto values = lm.model_set().forward(tokens, nullptr, wanted);
  std::vector<std::pair<std::string, at::Tensor>> tensors = {{"tokens", tokens}};
  for (const auto& h : wanted) tensors.emplace_back(h, values.at(h));
  if (dict) {
    const auto n = static_cast<int64_t>(ids.size());
    dictionaries::HookActs raw;
    for (const auto& h : dict->hook_points()) {  // a Lorsa reads the whole [1, n, d] context
      raw[h] = dict->reads_sequences() ? values.at(h) : values.at(h).reshape({n, -1});
    }
    const at::Tensor input = dict->prepare_input(raw);
    at::Tensor f = dict->encode(input);
    const at::Tensor decoded = dict->reconstruct(input, f);
    f = dict->analysis_features(f);  // a crosscoder: the maximum over its heads
    if (dict->reads_sequences()) f = f.reshape({n, -1});  // [1, n, d_sae] → [n, d_sae]
    tensors.emplace_back(dict_name + ".feature_acts", f.unsqueeze(0).contiguous());
    const auto labels = dict->label_hooks();
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const at::Tensor r = labels.size() > 1 ? decoded[static_cast<int64_t>(i)]
                                             : decoded.reshape({n, -1});
      // back to the model's scale
      tensors.emplace_back(
          dict_name + ".reconstruction." + labels[i],
          (r / dict->normalization_factor(raw.at(labels[i]).reshape({n, -1}), labels[i]))
              .unsqueeze(0)
              .contiguous());
    }
  }
  for (const auto& [name, t] : tensors) {
    out << fmt::format("{:<40} {:<16} {:<8} norm {:.6g}\n", name, shape_text(t),
                       dtype_name(from_torch(t.scalar_type())),
                       t.to(at::kDouble).norm().item<double>());
  }
  io::save_safetensors(options.output, tensors,
                       {{"model", options.model.model_from_pretrained_path->string()}});
  out << fmt::format("wrote {}\n", options.output.string());
  return 0;
}

}  // namespace saes::runners

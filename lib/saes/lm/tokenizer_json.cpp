// tokenizer.json -> ByteLevelBpeOptions / SentencePieceBpeOptions, plus special ids from the HF
// config files.
#include "saes/lm/tokenizer_json.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/byte_level_bpe.h"
#include "saes/lm/sentencepiece_bpe.h"

namespace saes::lm {
namespace {

using Json = nlohmann::json;

/// A parsed tokenizer.json with the file name for messages.
struct Source {
  Json json;
  std::string name;
};

Json parse_json_file(const std::filesystem::path& path) {
  const std::string text = io::read_file(path);
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    SAES_THROW(DataError, "{}: not valid JSON: {}", path.string(), e.what());
  }
}

/// json[key] when present and not null, else nullptr.
const Json* member(const Json& json, const char* key) {
  if (!json.is_object()) return nullptr;
  const auto it = json.find(key);
  if (it == json.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string get_string(const Json& json, const char* key, const std::string& where,
                       const std::string& fallback) {
  const Json* value = member(json, key);
  if (value == nullptr) return fallback;
  SAES_CHECK(value->is_string(), DataError, "{}: \"{}\" must be a string, got {}", where, key,
             value->dump());
  return value->get<std::string>();
}

bool get_bool(const Json& json, const char* key, bool fallback) {
  const Json* value = member(json, key);
  return value != nullptr && value->is_boolean() ? value->get<bool>() : fallback;
}

std::string type_of(const Json& json, const std::string& where, const char* section) {
  SAES_CHECK(json.is_object() && json.contains("type") && json["type"].is_string(), DataError,
             "{}: \"{}\" must be an object with a string \"type\", got {}", where, section,
             json.dump().substr(0, 200));
  return json["type"].get<std::string>();
}

BpeVocab parse_bpe_model(const Source& src) {
  const Json* model = member(src.json, "model");
  SAES_CHECK(model != nullptr && model->is_object(), DataError, "{}: missing object \"model\"",
             src.name);
  const std::string type = model->contains("type") ? type_of(*model, src.name, "model") : "BPE";
  SAES_CHECK(type == "BPE", UnsupportedError,
             "{}: model type \"{}\" is not supported (supported: BPE)", src.name, type);
  const Json* dropout = member(*model, "dropout");
  SAES_CHECK(dropout == nullptr || (dropout->is_number() && dropout->get<double>() == 0.0),
             UnsupportedError, "{}: BPE dropout {} is not supported", src.name,
             dropout ? dropout->dump() : "");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    SAES_CHECK(get_string(*model, key, src.name, "").empty(), UnsupportedError,
               "{}: model.{} is not supported", src.name, key);
  BpeVocab vocab;
  const Json* entries = member(*model, "vocab");
  SAES_CHECK(entries != nullptr && entries->is_object(), DataError,
             "{}: model.vocab must be an object", src.name);
  for (const auto& [token, id_json] : entries->items()) {
    SAES_CHECK(id_json.is_number_integer(), DataError,
               "{}: model.vocab[\"{}\"] = {}, expected a non-negative integer", src.name, token,
               id_json.dump());
    vocab.place(token, id_json.get<int64_t>(), entries->size(), src.name + " model.vocab");
  }
  const Json* merges = member(*model, "merges");
  SAES_CHECK(merges != nullptr && merges->is_array(), DataError,
             "{}: model.merges must be an array", src.name);
  vocab.merges.reserve(merges->size());
  for (std::size_t i = 0; i < merges->size(); ++i) {
    const Json& merge = (*merges)[i];
    if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      vocab.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      continue;
    }
    const std::string text = merge.is_string() ? merge.get<std::string>() : std::string();
    const auto space = text.find(' ');
    SAES_CHECK(
        space != std::string::npos && space > 0 && text.find(' ', space + 1) == std::string::npos,
        DataError, "{}: model.merges[{}] = {}, expected \"a b\" or [\"a\", \"b\"]", src.name, i,
        merge.dump());
    vocab.merges.emplace_back(text.substr(0, space), text.substr(space + 1));
  }
  vocab.ignore_merges = get_bool(*model, "ignore_merges", false);
  return vocab;
}

std::vector<AddedToken> parse_added_tokens(const Source& src) {
  std::vector<AddedToken> tokens;
  const Json* list = member(src.json, "added_tokens");
  if (list == nullptr) return tokens;
  SAES_CHECK(list->is_array(), DataError, "{}: added_tokens must be an array", src.name);
  for (const Json& entry : *list) {
    SAES_CHECK(entry.is_object() && entry.contains("id") && entry["id"].is_number_integer() &&
                   entry.contains("content") && entry["content"].is_string(),
               DataError,
               "{}: added_tokens entry {} needs an integer \"id\" and a string \"content\"",
               src.name, entry.dump());
    const auto id = entry["id"].get<int64_t>();
    SAES_CHECK(id >= 0 && id < (int64_t{1} << 31), DataError,
               "{}: added_tokens entry {} has id {}, expected an id in [0, 2^31)", src.name,
               entry.dump(), id);
    tokens.push_back(AddedToken{entry["content"].get<std::string>(), id,
                                get_bool(entry, "special", false), get_bool(entry, "lstrip", false),
                                get_bool(entry, "rstrip", false),
                                get_bool(entry, "single_word", false)});
  }
  return tokens;
}

void parse_normalizer(const Json& json, const std::string& where,
                      std::vector<NormalizerStep>& steps) {
  using Kind = NormalizerStep::Kind;
  const std::string type = type_of(json, where, "normalizer");
  if (type == "Sequence") {
    for (const Json& child : json.value("normalizers", Json::array()))
      parse_normalizer(child, where, steps);
  } else if (type == "NFC" || type == "NFKC" || type == "NFD" || type == "NFKD") {
    const Kind kind = type == "NFC"    ? Kind::kNfc
                      : type == "NFKC" ? Kind::kNfkc
                      : type == "NFD"  ? Kind::kNfd
                                       : Kind::kNfkd;
    steps.push_back({kind, "", ""});
  } else if (type == "Lowercase") {
    steps.push_back({Kind::kLowercase, "", ""});
  } else if (type == "Prepend") {
    steps.push_back({Kind::kPrepend, "", get_string(json, "prepend", where, "")});
  } else if (type == "Replace") {
    const Json* pattern = member(json, "pattern");
    SAES_CHECK(pattern != nullptr && pattern->contains("String"), UnsupportedError,
               "{}: normalizer Replace with pattern {} is not supported (only {{\"String\": ...}})",
               where, pattern ? pattern->dump() : "null");
    steps.push_back({Kind::kReplace, (*pattern)["String"].get<std::string>(),
                     get_string(json, "content", where, "")});
  } else {
    SAES_THROW(UnsupportedError,
               "{}: normalizer type \"{}\" is not supported (supported: NFC, NFKC, NFD, NFKD, "
               "Lowercase, Prepend, "
               "Replace, Sequence)",
               where, type);
  }
}

/// The pre-tokenizer chain, flattened.
struct PreTokenizers {
  std::optional<bool> byte_level_use_regex;  ///< set when a ByteLevel step is present
  bool byte_level_add_prefix_space = false;
  std::optional<std::string> split_regex;
  std::optional<MetaspaceOptions> metaspace;
};

MetaspaceOptions parse_metaspace(const Json& json, const std::string& where) {
  MetaspaceOptions meta;
  meta.replacement = get_string(json, "replacement", where, std::string(kMetaspace));
  const std::string scheme = get_string(json, "prepend_scheme", where, "");
  if (scheme.empty()) {
    meta.prepend = get_bool(json, "add_prefix_space", true) ? MetaspaceOptions::Prepend::kAlways
                                                            : MetaspaceOptions::Prepend::kNever;
  } else {
    SAES_CHECK(scheme == "always" || scheme == "first" || scheme == "never", UnsupportedError,
               "{}: Metaspace prepend_scheme \"{}\" is not supported", where, scheme);
    meta.prepend = scheme == "always"  ? MetaspaceOptions::Prepend::kAlways
                   : scheme == "first" ? MetaspaceOptions::Prepend::kFirst
                                       : MetaspaceOptions::Prepend::kNever;
  }
  meta.split = get_bool(json, "split", true);
  return meta;
}

void parse_pre_tokenizer(const Json& json, const std::string& where, PreTokenizers& out) {
  const std::string type = type_of(json, where, "pre_tokenizer");
  if (type == "Sequence") {
    for (const Json& child : json.value("pretokenizers", Json::array()))
      parse_pre_tokenizer(child, where, out);
  } else if (type == "ByteLevel") {
    out.byte_level_use_regex = get_bool(json, "use_regex", true);
    out.byte_level_add_prefix_space = get_bool(json, "add_prefix_space", false);
  } else if (type == "Split") {
    const std::string behavior = get_string(json, "behavior", where, "Isolated");
    SAES_CHECK(behavior == "Isolated" && !get_bool(json, "invert", false) && !out.split_regex,
               UnsupportedError,
               "{}: pre_tokenizer Split with behavior \"{}\" (invert={}), or more than one Split, "
               "is not supported "
               "(supported: one Split, behavior Isolated)",
               where, behavior, get_bool(json, "invert", false));
    const Json* pattern = member(json, "pattern");
    SAES_CHECK(pattern != nullptr && pattern->is_object(), DataError,
               "{}: pre_tokenizer Split needs a pattern", where);
    if (pattern->contains("Regex")) {
      out.split_regex = (*pattern)["Regex"].get<std::string>();
    } else {
      out.split_regex = "\\Q" + (*pattern).value("String", std::string()) + "\\E";
    }
  } else if (type == "Metaspace") {
    out.metaspace = parse_metaspace(json, where);
  } else {
    SAES_THROW(UnsupportedError,
               "{}: pre_tokenizer type \"{}\" is not supported (supported: ByteLevel, Split, "
               "Metaspace, Sequence)",
               where, type);
  }
}

/// Looks a token string up among added tokens, then the model vocabulary.
std::optional<int64_t> lookup_token(const std::string& token, const std::vector<AddedToken>& added,
                                    const BpeVocab& vocab) {
  for (const auto& t : added)
    if (t.content == token) return t.id;
  const auto it = std::find(vocab.tokens.begin(), vocab.tokens.end(), token);
  if (it == vocab.tokens.end()) return std::nullopt;
  return it - vocab.tokens.begin();
}

/// bos/eos/pad from tokenizer_config.json, then special_tokens_map.json, then well-known token
/// names.
SpecialTokenIds resolve_special_ids(const std::filesystem::path& folder,
                                    const std::vector<AddedToken>& added, const BpeVocab& vocab) {
  std::optional<std::string> names[3];
  const char* keys[3] = {"bos_token", "eos_token", "pad_token"};
  for (const char* file : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const auto path = folder / file;
    if (!std::filesystem::is_regular_file(path)) continue;
    const Json config = parse_json_file(path);
    for (int k = 0; k < 3; ++k) {
      const Json* value = member(config, keys[k]);
      if (names[k] || value == nullptr) continue;
      if (value->is_string()) names[k] = value->get<std::string>();
      if (value->is_object() && value->contains("content"))
        names[k] = (*value)["content"].get<std::string>();
    }
  }
  const auto pick = [&](int k,
                        std::initializer_list<const char*> fallbacks) -> std::optional<int64_t> {
    if (names[k]) return lookup_token(*names[k], added, vocab);
    for (const char* name : fallbacks)
      if (auto id = lookup_token(name, added, vocab)) return id;
    return std::nullopt;
  };
  return SpecialTokenIds{pick(0, {"<s>", "<|begin_of_text|>", "<|endoftext|>"}),
                         pick(1, {"</s>", "<|end_of_text|>", "<|endoftext|>"}),
                         pick(2, {"<pad>", "<|padding|>"})};
}

/// Leading spaces the decoder strips: Strip{start} (Llama) or 1 for a Metaspace decoder that
/// prepends.
int parse_decoder_strip(const Json* decoder, const std::string& where) {
  if (decoder == nullptr) return 0;
  const std::string type = type_of(*decoder, where, "decoder");
  if (type == "Sequence") {
    int strip = 0;
    for (const Json& child : decoder->value("decoders", Json::array()))
      strip += parse_decoder_strip(&child, where);
    return strip;
  }
  if (type == "Strip")
    return get_string(*decoder, "content", where, " ") == " " ? decoder->value("start", 0) : 0;
  if (type == "Metaspace")
    return parse_metaspace(*decoder, where).prepend != MetaspaceOptions::Prepend::kNever;
  return 0;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::filesystem::path& tokenizer_json) {
  Source src{parse_json_file(tokenizer_json), tokenizer_json.string()};
  SAES_CHECK(src.json.is_object(), DataError, "{}: expected a JSON object, got {}", src.name,
             src.json.type_name());
  BpeVocab vocab = parse_bpe_model(src);
  std::vector<AddedToken> added = parse_added_tokens(src);
  std::vector<NormalizerStep> normalizers;
  if (const Json* normalizer = member(src.json, "normalizer"))
    parse_normalizer(*normalizer, src.name, normalizers);
  PreTokenizers pre;
  if (const Json* pre_tokenizer = member(src.json, "pre_tokenizer"))
    parse_pre_tokenizer(*pre_tokenizer, src.name, pre);
  const SpecialTokenIds special = resolve_special_ids(tokenizer_json.parent_path(), added, vocab);
  const Json* decoder = member(src.json, "decoder");
  const bool byte_level =
      pre.byte_level_use_regex.has_value() ||
      (decoder != nullptr && decoder->value("type", std::string()) == "ByteLevel");
  if (byte_level) {
    SAES_CHECK(!(pre.split_regex && pre.byte_level_use_regex.value_or(false)), UnsupportedError,
               "{}: a Split pre-tokenizer together with ByteLevel(use_regex=true) is not supported",
               src.name);
    SAES_CHECK(!pre.metaspace, UnsupportedError,
               "{}: Metaspace together with ByteLevel is not supported", src.name);
    ByteLevelBpeOptions options;
    options.vocab = std::move(vocab);
    options.added_tokens = std::move(added);
    options.normalizers = std::move(normalizers);
    options.split_pattern = pre.split_regex ? *pre.split_regex
                            : pre.byte_level_use_regex.value_or(true)
                                ? std::string(kGpt2SplitPattern)
                                : std::string();
    options.add_prefix_space = pre.byte_level_add_prefix_space;
    options.special_ids = special;
    options.source = src.name;
    return std::make_unique<ByteLevelBpeTokenizer>(std::move(options));
  }
  SAES_CHECK(!pre.split_regex, UnsupportedError,
             "{}: a Split pre-tokenizer without ByteLevel is not supported", src.name);
  const Json& model = src.json["model"];
  SentencePieceBpeOptions options;
  options.unknown.byte_fallback = get_bool(model, "byte_fallback", false);
  options.unknown.fuse_unk = get_bool(model, "fuse_unk", false);
  if (const std::string unk = get_string(model, "unk_token", src.name, ""); !unk.empty()) {
    const auto id = lookup_token(unk, added, vocab);
    SAES_CHECK(id.has_value(), DataError, "{}: model.unk_token \"{}\" is not in the vocabulary",
               src.name, unk);
    options.unknown.unk_id = static_cast<int32_t>(*id);
  }
  options.vocab = std::move(vocab);
  options.added_tokens = std::move(added);
  options.normalizers = std::move(normalizers);
  options.metaspace = pre.metaspace;
  if (pre.metaspace) options.decode_replacement = pre.metaspace->replacement;
  options.decode_strip_leading_spaces = parse_decoder_strip(decoder, src.name);
  options.special_ids = special;
  options.source = src.name;
  return std::make_unique<SentencePieceBpeTokenizer>(std::move(options));
}

}  // namespace saes::lm

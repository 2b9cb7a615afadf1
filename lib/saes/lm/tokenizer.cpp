// load_tokenizer(): picks the tokenizer format from a file name or a folder's contents.
#include "saes/lm/tokenizer.h"

#include "saes/core/error.h"
#include "saes/lm/byte_level_bpe.h"
#include "saes/lm/llama2c_tokenizer.h"
#include "saes/lm/sentencepiece_model.h"
#include "saes/lm/tokenizer_json.h"

namespace saes::lm {
namespace {

namespace fs = std::filesystem;

constexpr const char* kLookedFor =
    "tokenizer.json, vocab.json + merges.txt, encoder.json + vocab.bpe, tokenizer.model, "
    "tokenizer.bin";

/// GPT-2's two-file form: `file` is either member of a {vocab, merges} pair.
std::unique_ptr<Tokenizer> load_pair(const fs::path& folder, const char* vocab_name,
                                     const char* merges_name) {
  const fs::path vocab = folder / vocab_name, merges = folder / merges_name;
  for (const auto& needed : {vocab, merges})
    SAES_CHECK(fs::is_regular_file(needed), IoError,
               "{}: missing; GPT-2 tokenizers need both {} and {}", needed.string(), vocab_name,
               merges_name);
  return load_gpt2_bpe(vocab, merges);
}

std::unique_ptr<Tokenizer> load_folder(const fs::path& folder) {
  if (fs::is_regular_file(folder / "tokenizer.json"))
    return load_hf_tokenizer_json(folder / "tokenizer.json");
  if (fs::is_regular_file(folder / "vocab.json") && fs::is_regular_file(folder / "merges.txt"))
    return load_pair(folder, "vocab.json", "merges.txt");
  if (fs::is_regular_file(folder / "encoder.json") && fs::is_regular_file(folder / "vocab.bpe"))
    return load_pair(folder, "encoder.json", "vocab.bpe");
  if (fs::is_regular_file(folder / "tokenizer.model"))
    return std::make_unique<SentencePieceModelTokenizer>(folder / "tokenizer.model");
  if (fs::is_regular_file(folder / "tokenizer.bin"))
    return std::make_unique<Llama2cTokenizer>(folder / "tokenizer.bin");
  SAES_THROW(IoError, "{}: no tokenizer in this folder; looked for {}", folder.string(),
             kLookedFor);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path) {
  SAES_CHECK(fs::exists(path), IoError, "{}: no such tokenizer file or folder", path.string());
  if (fs::is_directory(path)) return load_folder(path);
  const std::string name = path.filename().string();
  const std::string ext = path.extension().string();
  const fs::path folder = path.parent_path();
  if (name == "vocab.json" || name == "merges.txt")
    return load_pair(folder, "vocab.json", "merges.txt");
  if (name == "encoder.json" || name == "vocab.bpe")
    return load_pair(folder, "encoder.json", "vocab.bpe");
  if (ext == ".json") return load_hf_tokenizer_json(path);
  if (ext == ".model") return std::make_unique<SentencePieceModelTokenizer>(path);
  if (ext == ".bin") return std::make_unique<Llama2cTokenizer>(path);
  SAES_THROW(DataError,
             "{}: not a known tokenizer file; expected one of {}, a *.model or a llama2.c *.bin",
             path.string(), kLookedFor);
}

}  // namespace saes::lm

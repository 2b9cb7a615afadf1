// Tokenizer tests: llama.cpp's vocab test vectors (GPT-2, GPT-NeoX, tok512.model), llama2.c's
// prompt ids, decode(encode(x)) on real corpora, hand-built tokenizer.json fixtures and the
// loader's error contracts.
#include "saes/lm/tokenizer.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/lm/unicode.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using saes::lm::load_tokenizer;
using saes::lm::Tokenizer;

namespace {

std::vector<std::string> vector_inputs(const fs::path& assets) {
  const std::string text =
      saes::io::read_file(assets / "tokenizers/test-vectors/ggml-vocab-test.inp");
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  std::size_t pos = 0;
  for (std::size_t hit; (hit = text.find(separator, pos)) != std::string::npos;
       pos = hit + separator.size())
    inputs.push_back(text.substr(pos, hit - pos));
  return inputs;
}

std::vector<std::vector<int64_t>> vector_outputs(const fs::path& file) {
  std::istringstream lines(saes::io::read_file(file));
  std::vector<std::vector<int64_t>> outputs;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream ids(line);
    outputs.emplace_back(std::istream_iterator<int64_t>(ids), std::istream_iterator<int64_t>());
  }
  return outputs;
}

/// Number of test strings whose encoding equals the expected ids; reports the first few that
/// differ.
int count_matches(const Tokenizer& tokenizer, const fs::path& assets, const std::string& out_name) {
  const auto inputs = vector_inputs(assets);
  const auto expected = vector_outputs(assets / "tokenizers/test-vectors" / out_name);
  REQUIRE(inputs.size() == 46);
  REQUIRE(expected.size() == inputs.size());
  int matches = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const auto ids = tokenizer.encode(inputs[i]);
    if (ids == expected[i]) {
      ++matches;
    } else {
      UNSCOPED_INFO(out_name << " string " << i << " differs: got "
                             << ::Catch::Detail::stringify(ids) << ", expected "
                             << ::Catch::Detail::stringify(expected[i]));
    }
  }
  return matches;
}

/// The first ~20 KB of `file`, cut at a character boundary.
std::string corpus_head(const fs::path& file) {
  std::string text = saes::io::read_file(file);
  std::size_t cut = std::min<std::size_t>(text.size(), 20000);
  while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut);
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

/// A Llama-2-style SentencePiece BPE vocabulary: <unk>, <s>, </s>, 256 byte tokens, then words.
nlohmann::json sentencepiece_bpe_fixture() {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) vocab[fmt::format("<0x{:02X}>", b)] = 3 + b;
  const std::vector<std::string> words = {"▁",      "h",  "e",  "l",    "o",     "w",
                                          "r",      "d",  "▁h", "ll",   "▁he",   "▁hell",
                                          "▁hello", "▁w", "or", "▁wor", "▁worl", "▁world"};
  for (std::size_t i = 0; i < words.size(); ++i) vocab[words[i]] = 259 + static_cast<int>(i);
  nlohmann::json merges = {"▁ h", "l l", "▁h e",  "▁he ll", "▁hell o",
                           "▁ w", "o r", "▁w or", "▁wor l", "▁worl d"};
  nlohmann::json added = nlohmann::json::array();
  for (const auto& [content, id] : {std::pair{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}})
    added.push_back({{"id", id}, {"content", content}, {"special", true}, {"normalized", false}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", "▁"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}}},
          {"pre_tokenizer", nullptr},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"unk_token", "<unk>"},
            {"byte_fallback", true},
            {"fuse_unk", true},
            {"vocab", vocab},
            {"merges", merges}}}};
}

}  // namespace

TEST_CASE("GPT-2 encoder.json + vocab.bpe reproduces every gpt2.out test vector", "[tokenizer]") {
  SAES_REQUIRE_ASSETS();
  const auto assets = saes::testing::test_assets_dir();
  const auto tokenizer = load_tokenizer(assets / "tokenizers/gpt2/encoder.json");
  CHECK(tokenizer->kind() == "byte_level_bpe");
  CHECK(tokenizer->vocab_size() == 50257);
  CHECK(tokenizer->eos_id() == 50256);
  CHECK(tokenizer->bos_id() == 50256);
  CHECK(count_matches(*tokenizer, assets, "gpt2.out") == 46);
  CHECK(tokenizer->encode("a<|endoftext|>b") == std::vector<int64_t>{64, 50256, 65});
}

TEST_CASE("GPT-NeoX 20B_tokenizer.json reproduces every gpt-neox-20b.out test vector",
          "[tokenizer]") {
  SAES_REQUIRE_ASSETS();
  const auto assets = saes::testing::test_assets_dir();
  const auto tokenizer = load_tokenizer(assets / "tokenizers/gpt-neox-20b/20B_tokenizer.json");
  CHECK(tokenizer->kind() == "byte_level_bpe");
  CHECK(tokenizer->vocab_size() == 50277);
  CHECK(tokenizer->eos_id() == 0);
  CHECK(tokenizer->pad_id() == 1);
  CHECK(count_matches(*tokenizer, assets, "gpt-neox-20b.out") == 46);
}

TEST_CASE("SentencePiece tok512.model reproduces every tok512.out test vector", "[tokenizer]") {
  SAES_REQUIRE_ASSETS();
  const auto assets = saes::testing::test_assets_dir();
  const auto tokenizer = load_tokenizer(assets / "llama2c-stories260K/tok512.model");
  CHECK(tokenizer->kind() == "sentencepiece_model");
  CHECK(tokenizer->vocab_size() == 512);
  CHECK(tokenizer->bos_id() == 1);
  CHECK(tokenizer->eos_id() == 2);
  CHECK(count_matches(*tokenizer, assets, "tok512.out") == 46);
  CHECK(tokenizer->decode(tokenizer->encode("Once upon a time")) == "Once upon a time");
}

TEST_CASE("a SentencePiece model whose unk_id names no piece is refused (fuzz finding)",
          "[tokenizer]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir dir;
  // tok512.model + a second trainer_spec (protobuf merges it): model_type 2 (BPE), unk_id 1000.
  std::string bytes =
      saes::io::read_file(saes::testing::test_assets_dir() / "llama2c-stories260K/tok512.model");
  bytes += std::string("\x12\x06\x18\x02\xc0\x02\xe8\x07", 8);
  write_text(dir / "bad.model", bytes);
  REQUIRE_THROWS_AS(load_tokenizer(dir / "bad.model"), saes::DataError);
  REQUIRE_THROWS_WITH(load_tokenizer(dir / "bad.model"),
                      Catch::Contains("trainer_spec.unk_id 1000 is not a piece id (the model has "
                                      "512 pieces)"));
}

TEST_CASE("llama2.c tok512.bin encodes the stories260K prompt to the reference ids",
          "[tokenizer]") {
  SAES_REQUIRE_ASSETS();
  const auto assets = saes::testing::test_assets_dir();
  const auto reference = nlohmann::json::parse(
      saes::io::read_file(assets / "llama2c-stories260K/stories260K_ref_activations.json"));
  const auto tokenizer = load_tokenizer(assets / "llama2c-stories260K/tok512.bin");
  REQUIRE(tokenizer->kind() == "llama2c");
  CHECK(tokenizer->vocab_size() == 512);
  std::vector<int64_t> ids = {*tokenizer->bos_id()};
  const auto text = reference["prompt"].get<std::string>();
  for (const int64_t id : tokenizer->encode(text)) ids.push_back(id);
  CHECK(ids == reference["prompt_tokens"].get<std::vector<int64_t>>());
  CHECK(tokenizer->decode(ids) == text);
  CHECK(tokenizer->piece(3) == "<0x00>");
}

TEST_CASE("tok512.bin (run.c) equals tok512.model once runs of spaces are collapsed",
          "[tokenizer]") {
  SAES_REQUIRE_ASSETS();
  const auto assets = saes::testing::test_assets_dir();
  const auto bin = load_tokenizer(assets / "llama2c-stories260K/tok512.bin");
  const auto model = load_tokenizer(assets / "llama2c-stories260K/tok512.model");
  int same_without_collapsing = 0;
  for (const auto& input : vector_inputs(assets)) {
    // tok512.model's remove_extra_whitespaces: drop leading/trailing spaces, collapse runs of ' '
    // (only U+0020; tabs and newlines stay). run.c keeps every space as a token.
    std::string collapsed;
    for (const char c : input)
      if (c != ' ' || (!collapsed.empty() && collapsed.back() != ' ')) collapsed += c;
    while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
    const auto expected = model->encode(input);
    CHECK(bin->encode(collapsed) == expected);
    same_without_collapsing += bin->encode(input) == expected;
    CHECK(bin->decode(bin->encode(input)) == saes::lm::repair_utf8(input));
  }
  CHECK(same_without_collapsing ==
        30);  // the other 16 strings have leading, trailing or repeated spaces
}

TEST_CASE("byte-level BPE decode inverts encode on the test strings and on real corpora",
          "[tokenizer]") {
  SAES_REQUIRE_ASSETS();
  const auto assets = saes::testing::test_assets_dir();
  const auto gpt2 = load_tokenizer(assets / "tokenizers/gpt2");
  const auto neox = load_tokenizer(assets / "tokenizers/gpt-neox-20b/20B_tokenizer.json");
  std::vector<std::string> texts = vector_inputs(assets);
  for (const auto& entry : fs::recursive_directory_iterator(assets / "corpora"))
    if (entry.is_regular_file() && entry.path().extension() == ".txt")
      texts.push_back(corpus_head(entry.path()));
  REQUIRE(texts.size() > 46 + 10);
  std::size_t tokens = 0;
  for (const auto& text : texts) {
    const std::string valid = saes::lm::repair_utf8(text);
    const auto ids = gpt2->encode(text);
    tokens += ids.size();
    CHECK(gpt2->decode(ids) == valid);
    CHECK(neox->decode(neox->encode(text)) ==
          saes::lm::normalize_unicode(valid, saes::lm::NormalForm::kNfc));
  }
  CHECK(tokens > 50000);
}

TEST_CASE(
    "SentencePiece-style tokenizer.json merges, falls back to bytes and strips the prefix space",
    "[tokenizer]") {
  saes::testing::TempDir dir;
  auto json = sentencepiece_bpe_fixture();
  SECTION("Llama 2 normalizers (Prepend + Replace)") {}
  SECTION("older Metaspace pre-tokenizer") {
    json["normalizer"] = nullptr;
    json["pre_tokenizer"] = {
        {"type", "Metaspace"}, {"replacement", "▁"}, {"add_prefix_space", true}};
    json["decoder"] = {{"type", "Metaspace"}, {"replacement", "▁"}, {"add_prefix_space", true}};
  }
  write_text(dir / "tokenizer.json", json.dump());
  write_text(dir / "tokenizer_config.json",
             R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}})");
  const auto tokenizer = load_tokenizer(dir.path());
  CHECK(tokenizer->kind() == "sentencepiece_bpe");
  CHECK(tokenizer->bos_id() == 1);
  CHECK(tokenizer->eos_id() == 2);
  CHECK_FALSE(tokenizer->pad_id().has_value());
  CHECK(tokenizer->encode("hello world") == std::vector<int64_t>{271, 276});
  CHECK(tokenizer->encode("hello\n") == std::vector<int64_t>{271, 3 + 0x0A});
  CHECK(tokenizer->encode("hé") == std::vector<int64_t>{267, 3 + 0xC3, 3 + 0xA9});
  CHECK(tokenizer->encode("hello</s>") == std::vector<int64_t>{271, 2});
  CHECK(tokenizer->decode(std::vector<int64_t>{271, 276, 3 + 0x0A}) == "hello world\n");
  CHECK(tokenizer->decode(tokenizer->encode("hé world")) == "hé world");
  CHECK(tokenizer->piece(271) == "▁hello");
}

TEST_CASE("byte-level tokenizer.json takes its pre-tokenizer regex from a Split step",
          "[tokenizer]") {
  saes::testing::TempDir dir;
  nlohmann::json vocab;
  const auto& alphabet = saes::lm::byte_to_unicode();
  for (int b = 0; b < 256; ++b) vocab[alphabet[static_cast<std::size_t>(b)]] = b;
  vocab["12"] = 256;
  vocab["ab"] = 257;
  const nlohmann::json json = {
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", nlohmann::json::array({nlohmann::json::array({"1", "2"}), "a b"})}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", "\\p{N}|[^\\p{N}]+"}}},
           {"behavior", "Isolated"}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}}};
  write_text(dir / "tokenizer.json", json.dump());
  const auto tokenizer = load_tokenizer(dir / "tokenizer.json");
  CHECK(tokenizer->encode("ab12") == std::vector<int64_t>{257, '1', '2'});
  CHECK(tokenizer->decode(tokenizer->encode("ab12 x")) == "ab12 x");
}

TEST_CASE("load_tokenizer reports missing, malformed and unsupported tokenizer files",
          "[tokenizer]") {
  saes::testing::TempDir dir;
  SECTION("missing path") { REQUIRE_THROWS_AS(load_tokenizer(dir / "nope.json"), saes::IoError); }
  SECTION("folder without a tokenizer lists what it looked for") {
    REQUIRE_THROWS_WITH(load_tokenizer(dir.path()),
                        Catch::Contains("tokenizer.json") && Catch::Contains("vocab.bpe"));
  }
  SECTION("malformed JSON names the file and the JSON problem") {
    write_text(dir / "tokenizer.json", R"({"model": {"type": "BPE", )");
    REQUIRE_THROWS_AS(load_tokenizer(dir.path()), saes::DataError);
    REQUIRE_THROWS_WITH(load_tokenizer(dir.path()),
                        Catch::Contains("tokenizer.json") && Catch::Contains("JSON"));
  }
  SECTION("unsupported model type is named") {
    write_text(dir / "tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
    REQUIRE_THROWS_AS(load_tokenizer(dir / "tokenizer.json"), saes::UnsupportedError);
    REQUIRE_THROWS_WITH(load_tokenizer(dir / "tokenizer.json"), Catch::Contains("WordPiece"));
  }
  SECTION("a merge with an unknown token names the merge") {
    write_text(
        dir / "tokenizer.json",
        R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a zz"]}, "pre_tokenizer": null})");
    REQUIRE_THROWS_WITH(load_tokenizer(dir / "tokenizer.json"), Catch::Contains("a zz"));
  }
  SECTION("GPT-2 vocab.json without merges.txt names the missing file") {
    write_text(dir / "vocab.json", R"({"a": 0})");
    REQUIRE_THROWS_WITH(load_tokenizer(dir / "vocab.json"), Catch::Contains("merges.txt"));
  }
  SECTION("truncated llama2.c tokenizer") {
    write_text(dir / "tok.bin", std::string("\x07\x00\x00\x00\x00\x00\x00\x00\x05\x00", 10));
    REQUIRE_THROWS_AS(load_tokenizer(dir / "tok.bin"), saes::DataError);
  }
  SECTION("Unigram SentencePiece model is unsupported and named") {
    // ModelProto{pieces: [{piece: "a"}], trainer_spec: {model_type: UNIGRAM}}
    write_text(dir / "uni.model", std::string("\x0a\x03\x0a\x01\x61\x12\x02\x18\x01", 9));
    REQUIRE_THROWS_AS(load_tokenizer(dir / "uni.model"), saes::UnsupportedError);
    REQUIRE_THROWS_WITH(load_tokenizer(dir / "uni.model"), Catch::Contains("UNIGRAM"));
  }
  SECTION("an empty user-defined SentencePiece piece is refused (fuzz finding: encode looped)") {
    // ModelProto{pieces: [{piece: "a"}, {piece: "", type: USER_DEFINED}], trainer_spec: {BPE}};
    // fuzz/corpus/sentencepiece/regression-empty-user-piece.model.
    write_text(dir / "empty.model",
               std::string("\x0a\x03\x0a\x01\x61\x0a\x04\x0a\x00\x18\x04\x12\x02\x18\x02", 15));
    REQUIRE_THROWS_AS(load_tokenizer(dir / "empty.model"), saes::DataError);
    REQUIRE_THROWS_WITH(load_tokenizer(dir / "empty.model"), Catch::Contains("piece 1 is empty"));
  }
  SECTION("a vocabulary id far past the entries is refused (fuzz finding: 5e18 strings)") {
    write_text(dir / "tokenizer.json",
               R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 5000000000000000000},
                   "merges": []}})");
    REQUIRE_THROWS_AS(load_tokenizer(dir / "tokenizer.json"), saes::DataError);
    REQUIRE_THROWS_WITH(load_tokenizer(dir / "tokenizer.json"),
                        Catch::Contains("model.vocab: token \"b\" has id 5000000000000000000"));
    write_text(dir / "tokenizer.json",
               R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                   "added_tokens": [{"id": -3, "content": "<x>"}]})");
    REQUIRE_THROWS_WITH(load_tokenizer(dir / "tokenizer.json"), Catch::Contains("has id -3"));
  }
  SECTION("not a SentencePiece model") {
    write_text(dir / "tokenizer.model", "garbage");
    REQUIRE_THROWS_AS(load_tokenizer(dir.path()), saes::DataError);
  }
}

TEST_CASE("decode rejects ids outside the vocabulary", "[tokenizer]") {
  SAES_REQUIRE_ASSETS();
  const auto tokenizer = load_tokenizer(saes::testing::test_assets_dir() / "tokenizers/gpt2");
  REQUIRE_THROWS_AS(tokenizer->decode(std::vector<int64_t>{50257}), saes::DataError);
  REQUIRE_THROWS_AS(tokenizer->piece(-1), saes::DataError);
}

// Hidden: compares with JavaScript peers' ids written by tests/reference/tokenize_peer.mjs into
// $SAES_PEER_DIR (see tests/reference/README.md). Prints, per peer, the tokens compared and
// mismatches.
TEST_CASE("tokenizers agree with the JavaScript peers on real corpora", "[.][tokenizer-peer]") {
  const char* peer_dir = std::getenv("SAES_PEER_DIR");
  if (peer_dir == nullptr) {
    WARN("SKIPPED: set SAES_PEER_DIR to the output folder of tests/reference/tokenize_peer.mjs");
    return;
  }
  std::map<std::string, std::unique_ptr<Tokenizer>> tokenizers;
  struct Tally {
    std::size_t files = 0, tokens = 0, files_differing = 0, tokens_differing = 0;
  };
  std::map<std::string, Tally> tallies;
  std::istringstream manifest(saes::io::read_file(fs::path(peer_dir) / "manifest.tsv"));
  for (std::string line; std::getline(manifest, line);) {
    std::istringstream fields(line);
    std::string peer, tokenizer_path, corpus, ids_file;
    std::getline(fields, peer, '\t');
    std::getline(fields, tokenizer_path, '\t');
    std::getline(fields, corpus, '\t');
    std::getline(fields, ids_file, '\t');
    auto& tokenizer = tokenizers[tokenizer_path];
    if (!tokenizer) tokenizer = load_tokenizer(tokenizer_path);
    std::istringstream id_stream(saes::io::read_file(ids_file));
    const std::vector<int64_t> expected{std::istream_iterator<int64_t>(id_stream),
                                        std::istream_iterator<int64_t>()};
    const auto ids = tokenizer->encode(saes::io::read_file(corpus));
    Tally& tally = tallies[peer];
    ++tally.files;
    tally.tokens += expected.size();
    if (ids != expected) {
      const auto first = std::mismatch(ids.begin(), ids.end(), expected.begin(), expected.end());
      ++tally.files_differing;
      for (std::size_t i = 0; i < std::min(ids.size(), expected.size()); ++i)
        tally.tokens_differing += ids[i] != expected[i];
      WARN(peer << " on " << corpus << ": " << ids.size() << " vs " << expected.size()
                << " tokens, first difference at " << (first.first - ids.begin()));
    }
  }
  for (const auto& [peer, tally] : tallies) {
    WARN(peer << ": " << tally.files << " files, " << tally.tokens << " peer tokens, "
              << tally.files_differing << " files differ (" << tally.tokens_differing
              << " positions)");
    CHECK(tally.files_differing == 0);
  }
}

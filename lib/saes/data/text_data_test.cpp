// Tests of TextSource (files, globs, separators, JSONL, rank slices) and TokenBatcher (packing,
// padding, masks, provenance) on temp files and the real TinyStories / Gutenberg samples.
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/data/text_source.h"
#include "saes/data/token_batcher.h"

#include "support/temp_dir.h"

namespace saes::data {
namespace {

using Catch::Matchers::Contains;
using saes::testing::TempDir;

constexpr int64_t kPad = 0;
constexpr int64_t kBos = 1;
constexpr int64_t kEos = 2;
constexpr int64_t kByteOffset = 3;

void write_file(const std::filesystem::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

/// Byte-level tokenizer: one token per byte, id = byte + 3, so ids encode their character.
std::vector<int64_t> encode_bytes(std::string_view text) {
  std::vector<int64_t> ids;
  for (unsigned char c : text) ids.push_back(static_cast<int64_t>(c) + kByteOffset);
  return ids;
}

const SpecialTokenIds kSpecialIds{kBos, kEos, kPad};

std::vector<TextDocument> read_all(TextSource source) {
  std::vector<TextDocument> docs;
  while (auto doc = source.next()) docs.push_back(std::move(*doc));
  return docs;
}

std::vector<std::string> texts(const std::vector<TextDocument>& docs) {
  std::vector<std::string> out;
  for (const auto& doc : docs) out.push_back(doc.text);
  return out;
}

TextSourceOptions text_options(std::vector<std::string> paths) {
  TextSourceOptions options;
  options.paths = std::move(paths);
  return options;
}

std::vector<TokenBatch> all_batches(TokenBatcher& batcher, int64_t batch_size) {
  std::vector<TokenBatch> batches;
  while (auto batch = batcher.next_batch(batch_size)) batches.push_back(std::move(*batch));
  return batches;
}

/// Every real token points back to its character; a packed EOS points one past its document.
void check_provenance(const TokenBatch& batch, const std::vector<TextDocument>& docs) {
  const int64_t rows = batch.tokens.size(0);
  const int64_t cols = batch.tokens.size(1);
  const auto tokens = batch.tokens.accessor<int64_t, 2>();
  const auto doc_index = batch.document_index.accessor<int64_t, 2>();
  const auto position = batch.position.accessor<int32_t, 2>();
  const auto attention = batch.attention_mask.accessor<int32_t, 2>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t token = tokens[r][c];
      if (token == kBos || attention[r][c] == 0) {
        REQUIRE(doc_index[r][c] == -1);
        REQUIRE(position[r][c] == -1);
        continue;
      }
      const std::string& text = docs.at(static_cast<size_t>(doc_index[r][c])).text;
      if (token == kEos) {
        REQUIRE(position[r][c] == static_cast<int32_t>(text.size()));
      } else {
        REQUIRE(static_cast<unsigned char>(text.at(static_cast<size_t>(position[r][c]))) ==
                token - kByteOffset);
      }
    }
  }
}

}  // namespace

TEST_CASE("text source splits files at separator lines in sorted glob order", "[data]") {
  TempDir dir;
  write_file(dir / "b.txt", "third\n<|endoftext|>\n\n  \nfourth line 1\n\nline 2\n\n");
  write_file(dir / "a.txt", "\nfirst\r\n<|endoftext|>\r\n<|endoftext|>\nsecond\n<|endoftext|>");
  write_file(dir / "c.md", "not matched");
  const auto docs = read_all(TextSource(text_options({(dir / "*.txt").string()})));
  REQUIRE(texts(docs) ==
          std::vector<std::string>{"first", "second", "third", "fourth line 1\n\nline 2"});
  for (size_t i = 0; i < docs.size(); ++i) CHECK(docs[i].index == static_cast<int64_t>(i));
  CHECK(docs[0].source == (dir / "a.txt").string());
  CHECK(docs[0].line == 2);
  CHECK(docs[1].line == 5);
  CHECK(docs[3].source == (dir / "b.txt").string());
  CHECK(docs[3].line == 5);

  SECTION("an empty separator makes each file one document") {
    auto options = text_options({(dir / "b.txt").string(), (dir / "a.txt").string()});
    options.separator = "";
    const auto whole = read_all(TextSource(options));
    REQUIRE(texts(whole) ==
            std::vector<std::string>{"third\n<|endoftext|>\n\n  \nfourth line 1\n\nline 2",
                                     "first\n<|endoftext|>\n<|endoftext|>\nsecond\n<|endoftext|>"});
  }
  SECTION("max_documents stops the global stream") {
    auto options = text_options({(dir / "*.txt").string()});
    options.max_documents = 3;
    CHECK(read_all(TextSource(options)).size() == 3);
    options.max_documents = 0;
    CHECK(read_all(TextSource(options)).empty());
  }
}

TEST_CASE("rank slices of a text source are disjoint round-robin and cover every document",
          "[data]") {
  TempDir dir;
  std::string content;
  for (int i = 0; i < 11; ++i) content += "doc " + std::to_string(i) + "\n<|endoftext|>\n";
  write_file(dir / "docs.txt", content);
  auto options = text_options({(dir / "docs.txt").string()});
  options.max_documents = GENERATE(std::optional<int64_t>{}, std::optional<int64_t>{7});
  const auto everything = read_all(TextSource(options));
  const int64_t world_size = GENERATE(1, 2, 3, 4);
  std::set<int64_t> seen;
  for (int64_t rank = 0; rank < world_size; ++rank) {
    for (const auto& doc : read_all(TextSource(options, rank, world_size))) {
      CHECK(doc.index % world_size == rank);
      CHECK(doc.text == everything.at(static_cast<size_t>(doc.index)).text);
      CHECK(seen.insert(doc.index).second);
    }
  }
  CHECK(seen.size() == everything.size());
  CHECK(everything.size() == (options.max_documents ? 7u : 11u));
}

TEST_CASE("text source reports missing files, empty globs, directories and duplicates", "[data]") {
  TempDir dir;
  write_file(dir / "a.txt", "x");
  const std::string missing = (dir / "nope.txt").string();
  REQUIRE_THROWS_AS(TextSource(text_options({missing})), DataError);
  REQUIRE_THROWS_WITH(TextSource(text_options({missing})), Contains(missing));
  const std::string empty_glob = (dir / "*.jsonl").string();
  REQUIRE_THROWS_WITH(TextSource(text_options({empty_glob})), Contains(empty_glob));
  REQUIRE_THROWS_WITH(TextSource(text_options({dir.path().string()})), Contains("directory"));
  REQUIRE_THROWS_WITH(TextSource(text_options({(dir / "a.txt").string(), (dir / "*").string()})),
                      Contains("listed twice"));
  REQUIRE_THROWS_AS(TextSource(text_options({})), ConfigError);
  REQUIRE_THROWS_AS(TextSource(text_options({(dir / "a.txt").string()}), 2, 2), ConfigError);
}

TEST_CASE("jsonl source reads the configured text field and names bad lines", "[data]") {
  TempDir dir;
  const std::string path = (dir / "d.jsonl").string();
  write_file(path,
             "{\"body\": \"alpha\\nbeta\", \"id\": 1}\n\n{\"body\": \"\"}\r\n{\"body\": \"γ\"}\n");
  TextSourceOptions options = text_options({path});
  options.format = TextFormat::kJsonl;
  options.text_field = "body";
  const auto docs = read_all(TextSource(options));
  REQUIRE(texts(docs) == std::vector<std::string>{"alpha\nbeta", "", "γ"});
  CHECK(docs[1].line == 3);
  CHECK(docs[2].index == 2);
  CHECK(docs[2].line == 4);
  const auto rank1 = read_all(TextSource(options, 1, 2));
  REQUIRE(rank1.size() == 1);
  CHECK(rank1[0].index == 1);
  CHECK(rank1[0].line == 3);

  const auto error_of = [&](const std::string& content) {
    write_file(path, content);
    try {
      read_all(TextSource(options));
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error_of("{\"body\": \"a\"}\n{\"body\": \"b\"\n"),
             Contains(path + ":2: invalid JSON"));
  CHECK_THAT(error_of("{\"body\": \"a\"}\n\n{\"text\": \"b\"}\n"),
             Contains(path + ":3: text field \"body\" is missing"));
  CHECK_THAT(error_of("{\"body\": 5}\n"), Contains(path + ":1: text field \"body\" is a number"));
  CHECK_THAT(error_of("[1, 2]\n"), Contains(path + ":1: expected a JSON object, got array"));

  CHECK(try_parse_text_format("jsonl") == TextFormat::kJsonl);
  CHECK(try_parse_text_format("text") == TextFormat::kText);
  CHECK_FALSE(try_parse_text_format("csv"));
  CHECK(text_format_name(TextFormat::kJsonl) == "jsonl");
}

TEST_CASE("packing starts rows with BOS, separates documents with EOS and keeps provenance",
          "[data]") {
  TempDir dir;
  write_file(dir / "p.txt", "hello world\n<|endoftext|>\nab\n<|endoftext|>\nthe third document\n");
  const auto docs = read_all(TextSource(text_options({(dir / "p.txt").string()})));
  TokenBatcherOptions options;
  options.context_size = 8;
  options.packing = true;
  TokenBatcher batcher(TextSource(text_options({(dir / "p.txt").string()})), encode_bytes,
                       kSpecialIds, options);
  const auto batches = all_batches(batcher, 3);
  // 11 + 1 + 2 + 1 + 18 + 1 = 34 stream tokens, 7 per row → 5 rows: batches of 3 and 2.
  REQUIRE(batches.size() == 2);
  CHECK(batches[0].tokens.size(0) == 3);
  CHECK(batches[1].tokens.size(0) == 2);

  std::vector<int64_t> stream;
  for (const auto& batch : batches) {
    check_provenance(batch, docs);
    const auto tokens = batch.tokens.accessor<int64_t, 2>();
    const auto mask = batch.mask.accessor<int32_t, 2>();
    const auto attention = batch.attention_mask.accessor<int32_t, 2>();
    for (int64_t r = 0; r < batch.tokens.size(0); ++r) {
      CHECK(tokens[r][0] == kBos);
      CHECK(mask[r][0] == 0);
      for (int64_t c = 1; c < 8; ++c) {
        CHECK(mask[r][c] == attention[r][c]);  // EOS is kept, pad is not
        if (attention[r][c] == 1) stream.push_back(tokens[r][c]);
      }
    }
  }
  std::vector<int64_t> expected;
  for (const auto& doc : docs) {
    for (int64_t id : encode_bytes(doc.text)) expected.push_back(id);
    expected.push_back(kEos);
  }
  CHECK(stream == expected);
  const auto last = batches[1].attention_mask.accessor<int32_t, 2>();
  CHECK(last[1][6] == 1);  // the final EOS
  CHECK(last[1][7] == 0);  // one pad

  SECTION("the 1-D view holds exactly the kept tokens with their provenance") {
    const TokenBatch flat = flatten_kept_tokens(batches[0]);
    REQUIRE(flat.tokens.dim() == 1);
    CHECK(flat.tokens.size(0) == 21);
    CHECK(flat.mask.sum().item<int64_t>() == 21);
    const auto index = flat.document_index.accessor<int64_t, 1>();
    const auto position = flat.position.accessor<int32_t, 1>();
    const auto tokens = flat.tokens.accessor<int64_t, 1>();
    for (int64_t i = 0; i < 21; ++i) {
      CHECK(tokens[i] == expected[static_cast<size_t>(i)]);
      CHECK(index[i] >= 0);
      CHECK(position[i] >= 0);
    }
  }
}

TEST_CASE("pad mode puts one truncated document per row and masks BOS and padding", "[data]") {
  TempDir dir;
  write_file(dir / "p.txt", "abcdefghij\n<|endoftext|>\nxyz\n");
  TokenBatcherOptions options;
  options.context_size = 6;
  const auto make = [&](SpecialTokenIds ids, TokenBatcherOptions opts, EncodeFn encode) {
    return TokenBatcher(TextSource(text_options({(dir / "p.txt").string()})), std::move(encode),
                        ids, opts);
  };
  TokenBatcher batcher = make(kSpecialIds, options, encode_bytes);
  auto batch = batcher.next_batch(4);
  REQUIRE(batch);
  CHECK_FALSE(batcher.next_batch(4));
  REQUIRE(batch->tokens.size(0) == 2);
  const std::vector<int64_t> row0{kBos, 'a' + 3, 'b' + 3, 'c' + 3, 'd' + 3, 'e' + 3};
  const std::vector<int64_t> row1{kBos, 'x' + 3, 'y' + 3, 'z' + 3, kPad, kPad};
  const at::Tensor tokens = batch->tokens.contiguous();
  CHECK(std::vector<int64_t>(tokens.data_ptr<int64_t>(), tokens.data_ptr<int64_t>() + 6) == row0);
  CHECK(std::vector<int64_t>(tokens.data_ptr<int64_t>() + 6, tokens.data_ptr<int64_t>() + 12) ==
        row1);
  const at::Tensor mask = batch->mask.contiguous();
  CHECK(std::vector<int32_t>(mask.data_ptr<int32_t>(), mask.data_ptr<int32_t>() + 12) ==
        std::vector<int32_t>{0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0});
  const at::Tensor attention = batch->attention_mask.contiguous();
  CHECK(std::vector<int32_t>(attention.data_ptr<int32_t>(), attention.data_ptr<int32_t>() + 12) ==
        std::vector<int32_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0});
  CHECK(batch->document_index[1][1].item<int64_t>() == 1);
  CHECK(batch->position[1][3].item<int32_t>() == 2);

  SECTION("without a pad id rows are padded with EOS, which the mask still excludes") {
    TokenBatcher no_pad = make(SpecialTokenIds{kBos, kEos, std::nullopt}, options, encode_bytes);
    auto b = no_pad.next_batch(2);
    REQUIRE(b);
    CHECK(b->tokens[1][5].item<int64_t>() == kEos);
    CHECK(b->mask[1][5].item<int32_t>() == 0);
  }
  SECTION("a BOS from the tokenizer is not doubled, and prepend_bos false strips it") {
    const EncodeFn with_bos = [](std::string_view text) {
      auto ids = encode_bytes(text);
      ids.insert(ids.begin(), kBos);
      return ids;
    };
    auto b = make(kSpecialIds, options, with_bos).next_batch(1);
    CHECK(b->tokens[0][1].item<int64_t>() == 'a' + 3);
    options.prepend_bos = false;
    b = make(kSpecialIds, options, with_bos).next_batch(1);
    CHECK(b->tokens[0][0].item<int64_t>() == 'a' + 3);
    CHECK(b->position[0][5].item<int32_t>() == 5);
    CHECK(b->mask.sum().item<int64_t>() == 6);
  }
  SECTION("ignore_token_ids replaces the BOS rule but never unmasks padding") {
    options.ignore_token_ids = {'b' + 3, 'y' + 3};
    auto b = make(kSpecialIds, options, encode_bytes).next_batch(2);
    const at::Tensor m = b->mask.contiguous();
    CHECK(std::vector<int32_t>(m.data_ptr<int32_t>(), m.data_ptr<int32_t>() + 12) ==
          std::vector<int32_t>{1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 0});
  }
}

TEST_CASE("token batcher rejects options the tokenizer cannot serve", "[data]") {
  TempDir dir;
  write_file(dir / "p.txt", "abc\n");
  const auto make = [&](SpecialTokenIds ids, TokenBatcherOptions opts) {
    return TokenBatcher(TextSource(text_options({(dir / "p.txt").string()})), encode_bytes, ids,
                        opts);
  };
  TokenBatcherOptions options;
  CHECK_THROWS_WITH(make(SpecialTokenIds{std::nullopt, kEos, kPad}, options),
                    Contains("prepend_bos"));
  options.packing = true;
  CHECK_THROWS_WITH(make(SpecialTokenIds{kBos, std::nullopt, kPad}, options), Contains("packing"));
  options.context_size = 1;
  CHECK_THROWS_WITH(make(kSpecialIds, options), Contains("context_size"));
  options = TokenBatcherOptions{};
  options.prepend_bos = false;
  CHECK_THROWS_AS(make(SpecialTokenIds{}, options), ConfigError);
}

TEST_CASE("TinyStories sample splits into its stories and packs with exact provenance", "[data]") {
  SAES_REQUIRE_ASSETS();
  const std::string path =
      (saes::testing::test_assets_dir() / "corpora/tinystories/tinystories_sample.txt").string();
  const auto docs = read_all(TextSource(text_options({path})));
  REQUIRE(docs.size() == 5);  // five stories, each closed by an <|endoftext|> line
  CHECK(docs[0].text.rfind("Once upon a time there was a little boy named Ben.", 0) == 0);
  CHECK(docs[0].text.substr(docs[0].text.size() - 13) == "in the store!");
  CHECK(docs[4].line == 22);
  for (const auto& doc : docs) {
    CHECK(doc.text.find("<|endoftext|>") == std::string::npos);
    CHECK(doc.text.front() != '\n');
    CHECK(doc.text.back() != '\n');
  }

  std::set<int64_t> seen;
  for (int64_t rank = 0; rank < 3; ++rank) {
    for (const auto& doc : read_all(TextSource(text_options({path}), rank, 3))) {
      CHECK(doc.text == docs.at(static_cast<size_t>(doc.index)).text);
      CHECK(seen.insert(doc.index).second);
    }
  }
  CHECK(seen.size() == docs.size());

  TokenBatcherOptions options;
  options.context_size = 128;
  options.packing = true;
  TokenBatcher batcher(TextSource(text_options({path})), encode_bytes, kSpecialIds, options);
  size_t n_content = 0;
  for (const auto& batch : all_batches(batcher, 8)) {
    check_provenance(batch, docs);
    n_content += static_cast<size_t>(batch.attention_mask.sum().item<int64_t>() -
                                     batch.tokens.size(0));  // minus one BOS per row
  }
  size_t expected = 0;
  for (const auto& doc : docs) expected += doc.text.size() + 1;
  CHECK(n_content == expected);
}

TEST_CASE("Gutenberg books are one document per file in sorted order", "[data]") {
  SAES_REQUIRE_ASSETS();
  const auto dir = saes::testing::test_assets_dir() / "corpora/gutenberg-nltk";
  const auto docs = read_all(TextSource(text_options({(dir / "*.txt").string()})));
  REQUIRE(docs.size() == 13);
  CHECK(docs.front().source == (dir / "austen-emma.txt").string());
  CHECK(docs.back().source == (dir / "whitman-leaves.txt").string());
  for (const auto& doc : docs) {
    CHECK(doc.text.find('\r') == std::string::npos);  // Moby Dick's CRLF is normalized
    CHECK(doc.text.size() > 1000);
  }
}

}  // namespace saes::data

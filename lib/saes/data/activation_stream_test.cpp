// Tests of activation streams: fixtures whose values encode (source, row, column) prove coverage,
// shuffling, mixing proportions, rank slices, dtype handling, exact resume and the error messages;
// the live source on stories260K must equal the model's own forward.
#include "saes/data/activation_stream.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/any.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/flatten.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/ne.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/ones.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/core/logging.h"
#include "saes/data/activation_rows.h"
#include "saes/data/live_source.h"
#include "saes/io/safetensors.h"
#include "saes/io/shard_writer.h"
#include "saes/lm/hooks.h"
#include "saes/lm/llama2c_loader.h"
#include "saes/lm/tokenizer.h"
#include "saes/lm/transformer.h"

#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace saes;
using namespace saes::data;

constexpr std::int64_t kDModel = 8;
const std::vector<std::string> kHooks = {"blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"};

// Value of column `col` of hook `hook` for the row whose token is `token` (exact in float32/bf16
// for the column 0 check below: token ids stay < 2^24 and column values are small integers).
float encoded(std::int64_t token, std::size_t hook, std::int64_t col) {
  return static_cast<float>(token % 100000) +
         static_cast<float>(hook * 16 + static_cast<std::size_t>(col)) / 64.0f;
}

// Writes a 1-D run of `n_rows` rows whose tokens are source_id * 1e6 + row.
void write_run(const fs::path& dir, std::int64_t source_id, std::int64_t n_rows,
               std::int64_t rows_per_shard, std::int64_t d_model = kDModel) {
  io::ShardWriterOptions o;
  o.dir = dir;
  o.model_name = "fixture";
  o.hook_points = kHooks;
  o.dtype = DType::kFloat32;
  o.d_model = d_model;
  o.rows_per_shard = rows_per_shard;
  auto writer = io::ShardWriter::create(o);
  io::ShardBatch b;
  const auto longs = at::TensorOptions().dtype(at::kLong);
  b.tokens = at::empty({n_rows}, longs);
  b.doc_index = at::empty({n_rows}, longs);
  b.position = at::empty({n_rows}, longs);
  for (std::int64_t r = 0; r < n_rows; ++r) {
    b.tokens.data_ptr<std::int64_t>()[r] = source_id * 1000000 + r;
    b.doc_index.data_ptr<std::int64_t>()[r] = r;
    b.position.data_ptr<std::int64_t>()[r] = 0;
  }
  for (std::size_t h = 0; h < kHooks.size(); ++h) {
    at::Tensor act = at::empty({n_rows, d_model});
    for (std::int64_t r = 0; r < n_rows; ++r) {
      for (std::int64_t c = 0; c < d_model; ++c) {
        act.data_ptr<float>()[r * d_model + c] = encoded(source_id * 1000000 + r, h, c);
      }
    }
    b.activations.emplace(kHooks[h], act);
  }
  writer.append(b);
  writer.finish();
}

// The original's layout: <dir>/<hook>/chunk-%08d.safetensors, tokens source_id * 1e6 + row.
void write_legacy(const fs::path& dir, std::int64_t source_id, std::int64_t n_chunks,
                  std::int64_t rows_per_chunk) {
  for (std::int64_t chunk = 0; chunk < n_chunks; ++chunk) {
    at::Tensor tokens = at::empty({rows_per_chunk}, at::TensorOptions().dtype(at::kLong));
    for (std::int64_t r = 0; r < rows_per_chunk; ++r) {
      tokens.data_ptr<std::int64_t>()[r] = source_id * 1000000 + chunk * rows_per_chunk + r;
    }
    for (std::size_t h = 0; h < kHooks.size(); ++h) {
      at::Tensor act = at::empty({rows_per_chunk, kDModel});
      for (std::int64_t r = 0; r < rows_per_chunk; ++r) {
        for (std::int64_t c = 0; c < kDModel; ++c) {
          act.data_ptr<float>()[r * kDModel + c] =
              encoded(tokens.data_ptr<std::int64_t>()[r], h, c);
        }
      }
      const auto ones = at::ones({rows_per_chunk}, at::TensorOptions().dtype(at::kInt));
      fs::create_directories(dir / kHooks[h]);
      char name[64];
      std::snprintf(name, sizeof name, "chunk-%08lld.safetensors", static_cast<long long>(chunk));
      io::save_safetensors(
          dir / kHooks[h] / name,
          std::map<std::string, at::Tensor>{
              {"activation", act}, {"tokens", tokens}, {"mask", ones}, {"attention_mask", ones}});
    }
  }
}

ActivationSourceConfig cached(const std::string& name, const fs::path& dir, double weight = 1.0) {
  ActivationSourceConfig s;
  s.type = SourceType::kActivations;
  s.name = name;
  s.path.root = dir;
  s.sample_weights = weight;
  s.shuffle_shards = true;
  return s;
}

ActivationFactoryConfig factory(std::vector<ActivationSourceConfig> sources,
                                std::int64_t batch_size, std::optional<std::int64_t> buffer) {
  ActivationFactoryConfig c;
  c.sources = std::move(sources);
  c.target = ActivationTarget::kActivations1d;
  c.hook_points = kHooks;
  c.batch_size = batch_size;
  c.buffer_size = buffer;
  if (buffer) c.buffer_shuffle = BufferShuffleConfig{};
  c.prefetch_batches = 2;
  return c;
}

// (Designated initializers would trip GCC's -Wmissing-field-initializers.)
StreamInputs inputs_for(std::uint64_t seed, int rank = 0, int world = 1) {
  StreamInputs inputs;
  inputs.seed = seed;
  inputs.rank = rank;
  inputs.world = world;
  return inputs;
}

std::vector<ActivationBatch> drain(ActivationStream& stream, std::int64_t limit = -1) {
  std::vector<ActivationBatch> out;
  while (limit < 0 || static_cast<std::int64_t>(out.size()) < limit) {
    auto batch = stream.next();
    if (!batch) break;
    out.push_back(std::move(*batch));
  }
  return out;
}

std::vector<std::int64_t> tokens_of(const std::vector<ActivationBatch>& batches) {
  std::vector<std::int64_t> out;
  for (const auto& b : batches) {
    const auto* p = b.tokens.data_ptr<std::int64_t>();
    out.insert(out.end(), p, p + b.tokens.numel());
  }
  return out;
}

bool same_batches(const std::vector<ActivationBatch>& a, const std::vector<ActivationBatch>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!at::equal(a[i].tokens, b[i].tokens)) return false;
    for (const auto& [hook, act] : a[i].acts) {
      if (!at::equal(act, b[i].acts.at(hook))) return false;
    }
  }
  return true;
}

void check_values(const ActivationBatch& batch) {
  const auto* tok = batch.tokens.data_ptr<std::int64_t>();
  for (std::size_t h = 0; h < kHooks.size(); ++h) {
    const at::Tensor act = batch.acts.at(kHooks[h]).to(at::kFloat).contiguous();
    for (std::int64_t r = 0; r < batch.n_rows(); ++r) {
      for (std::int64_t c = 0; c < kDModel; ++c) {
        REQUIRE(act.data_ptr<float>()[r * kDModel + c] == encoded(tok[r], h, c));
      }
    }
  }
}

}  // namespace

TEST_CASE("a shuffled shard stream emits every row exactly once with its own values", "[stream]") {
  saes::testing::TempDir dir;
  write_run(dir / "a", 0, 1000, 64);
  Logger logger(LogLevel::kOff);
  auto stream =
      make_activation_stream(factory({cached("a", dir / "a")}, 48, 200), inputs_for(3), logger);
  const auto batches = drain(*stream);
  std::vector<std::int64_t> tokens = tokens_of(batches);
  for (const auto& b : batches) check_values(b);
  REQUIRE(batches.front().n_tokens == 48);
  REQUIRE(batches.front().tokens.scalar_type() == at::kLong);
  std::vector<std::int64_t> sorted = tokens;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::int64_t> expected(1000);
  for (std::int64_t i = 0; i < 1000; ++i) expected[static_cast<std::size_t>(i)] = i;
  REQUIRE(sorted == expected);
  REQUIRE(tokens != expected);
  REQUIRE(stream->stats().batches == static_cast<std::int64_t>(batches.size()));
}

TEST_CASE("the shuffle buffer is a reproducible permutation that depends on perm_seed",
          "[stream]") {
  saes::testing::TempDir dir;
  write_run(dir / "a", 0, 600, 50);
  Logger logger(LogLevel::kOff);
  auto config = factory({cached("a", dir / "a")}, 32, 128);
  config.sources[0].shuffle_shards = false;
  const auto run = [&](std::int64_t perm_seed) {
    config.buffer_shuffle->perm_seed = perm_seed;
    auto stream = make_activation_stream(config, StreamInputs{}, logger);
    return tokens_of(drain(*stream));
  };
  const auto first = run(42);
  REQUIRE(first == run(42));
  const auto other = run(7);
  REQUIRE(first != other);
  REQUIRE(std::multiset<std::int64_t>(first.begin(), first.end()) ==
          std::multiset<std::int64_t>(other.begin(), other.end()));
  config.buffer_size.reset();
  auto plain = make_activation_stream(config, StreamInputs{}, logger);
  const auto in_order = tokens_of(drain(*plain));
  REQUIRE(in_order.size() == 600);
  for (std::size_t i = 0; i < in_order.size(); ++i)
    REQUIRE(in_order[i] == static_cast<std::int64_t>(i));
}

namespace {

// In-memory chunks of `rows` rows whose tokens are source * 1e6 + row.
class CountingSource final : public ChunkSource {
 public:
  CountingSource(std::int64_t index, std::int64_t n_chunks, std::int64_t rows)
      : index_(index), n_chunks_(n_chunks), rows_(rows) {}
  std::optional<Rows> next_chunk(bool /*ghost*/) override {
    if (next_ >= n_chunks_) return std::nullopt;
    return load_chunk(next_++);
  }
  Rows load_chunk(std::int64_t seq) override {
    Rows r;
    r.ids = chunk_ids(index_, seq, rows_);
    r.tokens = at::empty({rows_}, at::TensorOptions().dtype(at::kLong));
    for (std::int64_t i = 0; i < rows_; ++i) {
      r.tokens.data_ptr<std::int64_t>()[i] = index_ * 1000000 + seq * rows_ + i;
    }
    r.acts.emplace(kHooks[0], at::empty({rows_, kDModel}));
    return r;
  }

 private:
  std::int64_t index_, n_chunks_, rows_, next_ = 0;
};

}  // namespace

TEST_CASE("sources are drawn in proportion to sample_weights", "[stream]") {
  std::vector<std::unique_ptr<ChunkSource>> sources;
  sources.push_back(std::make_unique<CountingSource>(0, 3000, 4));
  sources.push_back(std::make_unique<CountingSource>(1, 3000, 4));
  PipelineOptions options;
  options.batch_size = 4;
  options.mix_seed = 11;
  auto stream = make_pipeline_stream(std::move(sources), {3.0, 1.0}, options);
  // Chunks of 4 rows and batches of 4: each batch is one draw. Count the first 2000 draws.
  const auto batches = drain(*stream, 2000);
  int from_first = 0;
  for (const auto& b : batches) from_first += b.tokens.data_ptr<std::int64_t>()[0] < 1000000;
  REQUIRE(from_first == Approx(1500).margin(59));  // 3σ of Binomial(2000, 0.75) ≈ 58
  // Once the first source is exhausted the other one alone continues: every row comes out.
  const auto rest = drain(*stream);
  REQUIRE(tokens_of(batches).size() + tokens_of(rest).size() == 24000);
}

TEST_CASE("rank slices are disjoint, cover the run and hold batch_size / world rows", "[stream]") {
  saes::testing::TempDir dir;
  write_run(dir / "a", 0, 700, 50);
  Logger logger(LogLevel::kOff);
  std::multiset<std::int64_t> all;
  for (int rank = 0; rank < 3; ++rank) {
    auto stream = make_activation_stream(factory({cached("a", dir / "a")}, 30, 90),
                                         inputs_for(5, rank, 3), logger);
    const auto batches = drain(*stream);
    REQUIRE(batches.front().n_rows() == 10);
    for (auto t : tokens_of(batches)) all.insert(t);
  }
  REQUIRE(all.size() == 700);
  REQUIRE(std::set<std::int64_t>(all.begin(), all.end()).size() == 700);
  REQUIRE_THROWS_AS(make_activation_stream(factory({cached("a", dir / "a")}, 31, std::nullopt),
                                           inputs_for(0, 0, 3), logger),
                    ConfigError);
}

TEST_CASE("override_dtype casts activations but leaves token ids int64 and exact", "[stream]") {
  saes::testing::TempDir dir;
  write_run(dir / "a", 7, 100, 40);
  Logger logger(LogLevel::kOff);
  auto config = factory({cached("a", dir / "a")}, 25, std::nullopt);
  config.sources[0].shuffle_shards = false;
  config.override_dtype = DType::kBFloat16;
  auto stream = make_activation_stream(config, StreamInputs{}, logger);
  const auto batches = drain(*stream);
  REQUIRE(batches.front().acts.at(kHooks[0]).scalar_type() == at::kBFloat16);
  REQUIRE(batches.front().tokens.scalar_type() == at::kLong);
  const auto tokens = tokens_of(batches);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    REQUIRE(tokens[i] == 7000000 + static_cast<std::int64_t>(i));
  }
}

TEST_CASE("a restored stream continues bitwise like the uninterrupted one", "[stream]") {
  saes::testing::TempDir dir;
  write_run(dir / "a", 1, 900, 64);
  write_run(dir / "b", 2, 500, 40);
  Logger logger(LogLevel::kOff);
  const auto n_saved = GENERATE(0, 1, 7, 13);
  const bool shuffle = GENERATE(true, false);
  auto config = factory({cached("a", dir / "a", 2.0), cached("b", dir / "b")}, 32,
                        shuffle ? std::optional<std::int64_t>(160) : std::nullopt);
  const StreamInputs inputs = inputs_for(9);
  auto whole = make_activation_stream(config, inputs, logger);
  const auto expected = drain(*whole);

  auto first = make_activation_stream(config, inputs, logger);
  const auto head = drain(*first, n_saved);
  const std::string state = first->state();
  first.reset();
  auto resumed = make_activation_stream(config, inputs, logger);
  resumed->restore(state);
  auto tail = drain(*resumed);
  std::vector<ActivationBatch> joined = head;
  joined.insert(joined.end(), tail.begin(), tail.end());
  REQUIRE(same_batches(joined, expected));

  auto other = config;
  other.batch_size = 16;
  auto mismatched = make_activation_stream(other, inputs, logger);
  REQUIRE_THROWS_AS(mismatched->restore(state), ConfigError);
}

TEST_CASE("the original's chunk layout streams, mixes with shards and resumes", "[stream]") {
  saes::testing::TempDir dir;
  write_legacy(dir / "legacy", 3, 6, 40);
  write_run(dir / "a", 1, 300, 64);
  Logger logger(LogLevel::kOff);
  auto config = factory({cached("old", dir / "legacy"), cached("a", dir / "a")}, 32, 96);
  auto whole = make_activation_stream(config, inputs_for(2), logger);
  const auto expected = drain(*whole);
  for (const auto& b : expected) check_values(b);
  REQUIRE(tokens_of(expected).size() == 540);
  auto first = make_activation_stream(config, inputs_for(2), logger);
  auto joined = drain(*first, 5);
  auto resumed = make_activation_stream(config, inputs_for(2), logger);
  resumed->restore(first->state());
  const auto tail = drain(*resumed);
  joined.insert(joined.end(), tail.begin(), tail.end());
  REQUIRE(same_batches(joined, expected));
}

TEST_CASE("2-D shards stream whole contexts with bool masks and resume", "[stream]") {
  saes::testing::TempDir dir;
  constexpr std::int64_t kContext = 5;
  {
    io::ShardWriterOptions o;
    o.dir = dir / "ctx";
    o.model_name = "fixture";
    o.hook_points = kHooks;
    o.dtype = DType::kFloat32;
    o.d_model = kDModel;
    o.target = io::ShardTarget::kActivations2d;
    o.context_size = kContext;
    o.rows_per_shard = 16;
    auto writer = io::ShardWriter::create(o);
    const std::int64_t n = 100;
    const auto longs = at::TensorOptions().dtype(at::kLong);
    io::ShardBatch b;
    b.tokens = at::empty({n, kContext}, longs);
    b.doc_index = at::empty({n}, longs);
    b.position = at::empty({n}, longs);
    b.mask = at::empty({n, kContext}, at::TensorOptions().dtype(at::kBool));
    for (std::int64_t r = 0; r < n; ++r) {
      b.doc_index.data_ptr<std::int64_t>()[r] = r;
      b.position.data_ptr<std::int64_t>()[r] = 0;
      for (std::int64_t t = 0; t < kContext; ++t) {
        b.tokens.data_ptr<std::int64_t>()[r * kContext + t] = r * 10 + t;
        b.mask.data_ptr<bool>()[r * kContext + t] = t != 0;
      }
    }
    for (std::size_t h = 0; h < kHooks.size(); ++h) {
      at::Tensor act = at::empty({n, kContext, kDModel});
      for (std::int64_t i = 0; i < n * kContext; ++i) {
        for (std::int64_t c = 0; c < kDModel; ++c) {
          act.data_ptr<float>()[i * kDModel + c] =
              encoded(b.tokens.data_ptr<std::int64_t>()[i], h, c);
        }
      }
      b.activations.emplace(kHooks[h], act);
    }
    writer.append(b);
    writer.finish();
  }
  Logger logger(LogLevel::kOff);
  auto config = factory({cached("ctx", dir / "ctx")}, 6, 24);
  config.target = ActivationTarget::kActivations2d;
  auto whole = make_activation_stream(config, inputs_for(1), logger);
  const auto expected = drain(*whole);
  REQUIRE(expected.front().acts.at(kHooks[1]).sizes() == at::IntArrayRef({6, kContext, kDModel}));
  REQUIRE(expected.front().mask.scalar_type() == at::kBool);
  REQUIRE(expected.front().n_tokens == 6 * kContext);
  std::int64_t rows = 0;
  for (const auto& batch : expected) {
    rows += batch.n_rows();
    const at::Tensor first_token = batch.tokens.select(1, 0);
    REQUIRE(at::equal(batch.tokens.select(1, 3), first_token.add(3)));
    REQUIRE_FALSE(batch.mask.select(1, 0).any().item<bool>());
    const at::Tensor act = batch.acts.at(kHooks[0]).contiguous();
    for (std::int64_t r = 0; r < batch.n_rows(); ++r) {
      const std::int64_t token = batch.tokens.data_ptr<std::int64_t>()[r * kContext + 2];
      REQUIRE(act.data_ptr<float>()[(r * kContext + 2) * kDModel + 1] == encoded(token, 0, 1));
    }
  }
  REQUIRE(rows == 100);
  auto first = make_activation_stream(config, inputs_for(1), logger);
  auto joined = drain(*first, 4);
  auto resumed = make_activation_stream(config, inputs_for(1), logger);
  resumed->restore(first->state());
  const auto tail = drain(*resumed);
  joined.insert(joined.end(), tail.begin(), tail.end());
  REQUIRE(same_batches(joined, expected));
  config.target = ActivationTarget::kActivations1d;
  REQUIRE_THROWS_WITH(make_activation_stream(config, inputs_for(1), logger),
                      Catch::Contains("activations-2d but target is activations-1d"));
}

TEST_CASE("stream errors name the folder, both widths and the available hooks", "[stream]") {
  saes::testing::TempDir dir;
  write_run(dir / "a", 0, 50, 50);
  write_run(dir / "wide", 0, 50, 50, 12);
  Logger logger(LogLevel::kOff);
  const auto build = [&](ActivationFactoryConfig c, StreamInputs inputs = {}) {
    return make_activation_stream(c, inputs, logger);
  };
  REQUIRE_THROWS_WITH(build(factory({cached("gone", dir / "missing")}, 10, std::nullopt)),
                      Catch::Contains((dir / "missing").string()));
  REQUIRE_THROWS_WITH(
      build(factory({cached("a", dir / "a"), cached("w", dir / "wide")}, 10, std::nullopt)),
      Catch::Contains("source w: d_model 12") && Catch::Contains("d_model 8 of source a"));
  REQUIRE_THROWS_WITH(build(factory({cached("a", dir / "a")}, 10, std::nullopt),
                            [] {
                              StreamInputs inputs;
                              inputs.d_model = 16;
                              return inputs;
                            }()),
                      Catch::Contains("d_model 8") && Catch::Contains("16"));
  auto bad_hook = factory({cached("a", dir / "a")}, 10, std::nullopt);
  bad_hook.hook_points = {"blocks.9.hook_resid_post"};
  REQUIRE_THROWS_WITH(build(bad_hook), Catch::Contains("blocks.0.hook_resid_post"));
  ActivationSourceConfig live;
  live.name = "web";
  REQUIRE_THROWS_WITH(build(factory({live}, 10, std::nullopt)),
                      "source web has type dataset but no model was configured");
}

namespace {

fs::path stories_dir() { return saes::testing::test_assets_dir() / "llama2c-stories260K"; }

TokenBatcher stories_batcher(const lm::Tokenizer& tokenizer) {
  TextSourceOptions text;
  text.paths = {
      (saes::testing::test_assets_dir() / "corpora/tinystories/tinystories_sample.txt").string()};
  text.max_documents = 24;
  TokenBatcherOptions options;
  options.context_size = 32;
  const auto ids = tokenizer.special_ids();
  return TokenBatcher(
      TextSource(text), [&tokenizer](std::string_view s) { return tokenizer.encode(s); },
      SpecialTokenIds{ids.bos, ids.eos, ids.pad}, options);
}

}  // namespace

TEST_CASE("the live source yields the model's activations of the kept tokens", "[stream]") {
  SAES_REQUIRE_ASSETS();
  const lm::Transformer model = lm::load_llama2c(stories_dir() / "stories260K.bin");
  const auto tokenizer = lm::load_tokenizer(stories_dir() / "tok512.model");
  const std::vector<std::string> hooks = {"blocks.2.hook_resid_post", "blocks.3.hook_mlp_out"};
  LiveSource source(0, lm::ModelSet(model), stories_batcher(*tokenizer), hooks,
                    ActivationTarget::kActivations1d, 4);
  auto reference = stories_batcher(*tokenizer);
  auto rows = source.next_chunk(false);
  auto tokens = reference.next_batch(4);
  REQUIRE(rows.has_value());
  lm::HookSet set;
  for (const auto& h : hooks) set.capture(h);
  const auto acts =
      model.forward(tokens->tokens, &tokens->attention_mask, set, lm::GradMode::kNoGrad);
  const at::Tensor kept = at::nonzero(at::flatten(at::ne(tokens->mask, 0))).flatten();
  REQUIRE(at::equal(rows->tokens, at::index_select(at::flatten(tokens->tokens), 0, kept)));
  for (const auto& h : hooks) {
    const at::Tensor flat = acts.at(h).reshape({-1, acts.at(h).size(-1)});
    REQUIRE(at::equal(rows->acts.at(h), at::index_select(flat, 0, kept)));
  }
}

TEST_CASE("a live source over two checkpoints yields each one's hooks of the same tokens",
          "[stream][checkpoints]") {
  SAES_REQUIRE_ASSETS();
  const lm::Transformer model = lm::load_llama2c(stories_dir() / "stories260K.bin");
  const auto tokenizer = lm::load_tokenizer(stories_dir() / "tok512.model");
  const lm::CheckpointModels checkpoints = {
      {"a", std::make_shared<const lm::Transformer>(model)},
      {"b", std::make_shared<const lm::Transformer>(
                lm::load_llama2c(stories_dir() / "stories260K.bin"))}};
  const std::string hook = "blocks.2.hook_resid_post";
  LiveSource source(0, lm::ModelSet(checkpoints), stories_batcher(*tokenizer),
                    {"a:" + hook, "b:" + hook}, ActivationTarget::kActivations1d, 4);
  auto rows = source.next_chunk(false);
  auto tokens = stories_batcher(*tokenizer).next_batch(4);
  REQUIRE(rows.has_value());
  const auto acts = model.forward(tokens->tokens, &tokens->attention_mask,
                                  lm::HookSet().capture(hook), lm::GradMode::kNoGrad);
  const at::Tensor kept = at::nonzero(at::flatten(at::ne(tokens->mask, 0))).flatten();
  const at::Tensor expected = at::index_select(acts.at(hook).reshape({-1, 64}), 0, kept);
  CHECK(rows->acts.size() == 2);
  CHECK(at::equal(rows->acts.at("a:" + hook), expected));
  CHECK(at::equal(rows->acts.at("b:" + hook), expected));
  CHECK_THROWS_WITH(LiveSource(0, lm::ModelSet(checkpoints), stories_batcher(*tokenizer), {hook},
                               ActivationTarget::kActivations1d, 4),
                    Catch::Matchers::Contains("with model.checkpoints set"));
}

TEST_CASE("live and shard sources mixed resume bitwise", "[stream]") {
  SAES_REQUIRE_ASSETS();
  const lm::Transformer model = lm::load_llama2c(stories_dir() / "stories260K.bin");
  const auto tokenizer = lm::load_tokenizer(stories_dir() / "tok512.model");
  saes::testing::TempDir dir;
  const std::int64_t d_model = model.spec().d_model;
  write_run(dir / "a", 1, 600, 50, d_model);
  ActivationSourceConfig live;
  live.name = "stories";
  auto config = factory({live, cached("a", dir / "a")}, 40, 120);
  config.hook_points = kHooks;
  config.model_batch_size = 2;
  Logger logger(LogLevel::kOff);
  StreamInputs inputs = inputs_for(4);
  const lm::ModelSet models(model);
  inputs.models = &models;
  inputs.make_batcher = [&](const ActivationSourceConfig&) { return stories_batcher(*tokenizer); };
  auto whole = make_activation_stream(config, inputs, logger);
  const auto expected = drain(*whole);
  auto first = make_activation_stream(config, inputs, logger);
  auto joined = drain(*first, 6);
  const std::string state = first->state();
  auto resumed = make_activation_stream(config, inputs, logger);
  resumed->restore(state);
  const auto tail = drain(*resumed);
  joined.insert(joined.end(), tail.begin(), tail.end());
  REQUIRE(expected.size() > 8);
  REQUIRE(same_batches(joined, expected));
}

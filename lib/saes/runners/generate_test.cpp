// In-process tests of run_generate on stories260K: shards equal a direct forward bit for bit (1-D
// and 2-D), resume rewrites identical shards, token ids survive any storage dtype, config changes
// are refused, unsupported upstream options are rejected; and the tokenize/probe tools.
#include <sstream>

#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/nonzero.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/data/token_batcher.h"
#include "saes/distributed/single_process_communicator.h"
#include "saes/io/atomic_file.h"
#include "saes/io/safetensors.h"
#include "saes/io/shard_reader.h"
#include "saes/lm/hf_folder.h"
#include "saes/runners/generate_tools.h"
#include "saes/runners/runners.h"

#include "support/temp_dir.h"

namespace saes::runners {
namespace {

namespace fs = std::filesystem;

fs::path asset(const std::string& name) { return saes::testing::test_assets_dir() / name; }

config::GenerateSettings small_settings(const fs::path& out, data::ActivationTarget target) {
  config::GenerateSettings s;
  s.model_name = "stories260K";
  s.model.model_from_pretrained_path = asset("llama2c-stories260K/stories260K.bin");
  s.dataset_name = "tinystories";
  s.dataset.paths = {asset("corpora/tinystories/tinystories_sample.txt").string()};
  s.hook_points = {"blocks.1.hook_resid_post", "blocks.3.hook_mlp_out"};
  s.output_dir = out;
  s.target = target;
  s.context_size = 64;
  s.packing = true;
  s.model_batch_size = 4;
  s.batch_size = target == data::ActivationTarget::kActivations1d ? 100 : 3;
  s.total_tokens = target == data::ActivationTarget::kActivations1d ? 450 : 64 * 10;
  s.override_dtype = DType::kFloat32;
  s.device_type = "cpu";
  s.logging.progress = ProgressMode::kOff;
  return s;
}

void generate(const config::GenerateSettings& s) {
  Logger logger(LogLevel::kError);
  distributed::SingleProcessCommunicator world;
  RunContext context{logger, world, ProgressMode::kOff};
  const int rc = run_generate(s, context);
  REQUIRE(rc == 0);
}

/// Every row of the run, in manifest order.
io::ShardBatch read_all(const fs::path& dir) {
  const io::ShardReader reader = io::ShardReader::open(dir);
  std::vector<io::ShardBatch> parts;
  for (int64_t i = 0; i < static_cast<int64_t>(reader.manifest().shards.size()); ++i) {
    parts.push_back(reader.read_shard(i, {}));
  }
  io::ShardBatch all;
  auto cat = [&](at::Tensor io::ShardBatch::*field) {
    std::vector<at::Tensor> list;
    for (const auto& p : parts) list.push_back(p.*field);
    return list.front().defined() ? at::cat(list, 0) : at::Tensor();
  };
  all.tokens = cat(&io::ShardBatch::tokens);
  all.mask = cat(&io::ShardBatch::mask);
  for (const auto& [hook, unused] : parts.front().activations) {
    std::vector<at::Tensor> list;
    for (const auto& p : parts) list.push_back(p.activations.at(hook));
    all.activations[hook] = at::cat(list, 0);
  }
  return all;
}

/// The same rows computed directly: batcher + forward in model_batch_size groups.
io::ShardBatch direct(const config::GenerateSettings& s) {
  const lm::LanguageModel lm = lm::load_language_model(s.model);
  data::TextSourceOptions text;
  text.paths = s.dataset.paths;
  data::TokenBatcher batcher(data::TextSource(text),
                             [&](std::string_view t) { return lm.tokenizer->encode(t); },
                             {lm.special_ids.bos, lm.special_ids.eos, lm.special_ids.pad},
                             {s.context_size, true, s.packing, {}});
  lm::HookSet hooks;
  for (const auto& h : s.hook_points) hooks.capture(h);
  const bool is_2d = s.target == data::ActivationTarget::kActivations2d;
  std::vector<at::Tensor> tokens, masks;
  std::map<std::string, std::vector<at::Tensor>> acts;
  while (auto b = batcher.next_batch(s.model_batch_size)) {
    const auto out = lm.model.forward(b->tokens, &b->attention_mask, hooks);
    const at::Tensor kept = at::nonzero(b->mask.flatten()).squeeze(1);
    tokens.push_back(is_2d ? b->tokens : b->tokens.flatten().index_select(0, kept));
    masks.push_back(b->mask);
    for (const auto& [hook, v] : out) {
      acts[hook].push_back(is_2d ? v : v.flatten(0, 1).index_select(0, kept));
    }
  }
  const int64_t rows = is_2d ? *s.total_tokens / s.context_size : *s.total_tokens;
  io::ShardBatch all;
  all.tokens = at::cat(tokens, 0).narrow(0, 0, rows);
  if (is_2d) all.mask = at::cat(masks, 0).narrow(0, 0, rows);
  for (const auto& [hook, list] : acts) all.activations[hook] = at::cat(list, 0).narrow(0, 0, rows);
  return all;
}

void check_equal(const io::ShardBatch& got, const io::ShardBatch& expected) {
  REQUIRE(got.tokens.sizes() == expected.tokens.sizes());
  CHECK(at::equal(got.tokens, expected.tokens.to(at::kLong)));
  if (expected.mask.defined()) CHECK(at::equal(got.mask, expected.mask.to(at::kBool)));
  for (const auto& [hook, value] : expected.activations) {
    INFO(hook);
    CHECK(at::equal(got.activations.at(hook), value));
  }
}

std::map<std::string, std::string> shard_bytes(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& item : fs::directory_iterator(dir)) {
    const std::string name = item.path().filename().string();
    if (name.rfind("shard-", 0) == 0) out[name] = io::read_file(item.path());
  }
  return out;
}

}  // namespace

TEST_CASE("generate 1-D and 2-D shards equal a direct forward bit for bit", "[runners]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  for (auto target :
       {data::ActivationTarget::kActivations1d, data::ActivationTarget::kActivations2d}) {
    const bool is_2d = target == data::ActivationTarget::kActivations2d;
    INFO("2-D " << is_2d);
    const auto s = small_settings(tmp / (is_2d ? "2d" : "1d"), target);
    generate(s);
    const io::ShardManifest manifest = io::load_manifest(s.output_dir / "manifest.json");
    CHECK(manifest.complete);
    CHECK(manifest.n_tokens() == *s.total_tokens);
    CHECK(manifest.shards.size() == (is_2d ? 4u : 5u));
    CHECK(manifest.d_model == 64);
    CHECK(manifest.config_yaml.find("stories260K") != std::string::npos);
    CHECK(fs::exists(s.output_dir / "config.resolved.yaml"));
    check_equal(read_all(s.output_dir), direct(s));
  }
}

TEST_CASE("generate resumes after the last complete shard with identical shards", "[runners]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  const auto s = small_settings(tmp / "run", data::ActivationTarget::kActivations1d);
  generate(s);
  const auto before = shard_bytes(s.output_dir);
  io::ShardManifest manifest = io::load_manifest(s.output_dir / "manifest.json");
  for (int i = 0; i < 2; ++i) {
    fs::remove(s.output_dir / manifest.shards.back().file);
    manifest.shards.pop_back();
  }
  manifest.complete = false;
  io::save_manifest(manifest, s.output_dir / "manifest.json");
  generate(s);
  CHECK(shard_bytes(s.output_dir) == before);
  CHECK(io::load_manifest(s.output_dir / "manifest.json").n_tokens() == 450);
  generate(s);  // complete: nothing to do
  CHECK(shard_bytes(s.output_dir) == before);
}

TEST_CASE("generate stores token ids exactly whatever the activation dtype", "[runners]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  auto s = small_settings(tmp / "bf16", data::ActivationTarget::kActivations1d);
  s.override_dtype = DType::kBFloat16;  // bf16 cannot hold odd ids above 256
  generate(s);
  const io::ShardBatch got = read_all(s.output_dir);
  const io::ShardBatch expected = direct(small_settings(tmp / "x", s.target));
  CHECK(got.tokens.max().item<int64_t>() > 256);
  CHECK(at::equal(got.tokens, expected.tokens));
  CHECK(got.activations.begin()->second.scalar_type() == at::kBFloat16);
}

TEST_CASE("generate refuses a finished run with a different config unless overwrite", "[runners]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  auto s = small_settings(tmp / "run", data::ActivationTarget::kActivations1d);
  generate(s);
  s.hook_points = {"blocks.0.hook_resid_pre"};
  s.total_tokens = 300;
  REQUIRE_THROWS_WITH(generate(s), Catch::Contains("hook_points") && Catch::Contains("overwrite"));
  s.overwrite = true;
  generate(s);
  const io::ShardManifest manifest = io::load_manifest(s.output_dir / "manifest.json");
  CHECK(manifest.hook_points == s.hook_points);
  CHECK(manifest.n_tokens() == 300);
}

TEST_CASE("generate rejects upstream options it does not implement", "[runners]") {
  saes::testing::TempDir tmp;
  auto s = small_settings(tmp / "run", data::ActivationTarget::kActivations1d);
  s.format = data::ActivationFormat::kPt;
  REQUIRE_THROWS_AS(generate(s), UnsupportedError);
  s.format = data::ActivationFormat::kSafetensors;
  s.n_shards = 2;
  REQUIRE_THROWS_AS(generate(s), UnsupportedError);
}

TEST_CASE("tokenize prints JSON ids and pieces; probe saves tokens, hooks and logits",
          "[runners]") {
  SAES_REQUIRE_ASSETS();
  saes::testing::TempDir tmp;
  std::ostringstream out;
  TokenizeOptions t{asset("llama2c-stories260K/tok512.bin"), "Once upon a time", {}, true};
  run_tokenize(t, out);
  CHECK(out.str().rfind("{\"ids\":[", 0) == 0);
  CHECK(out.str().find("\"pieces\":[") != std::string::npos);
  io::write_file_atomic(tmp / "in.jsonl", "{\"text\": \"Once\"}\n\n{\"text\": \"upon\"}\n{}\n");
  t = {asset("llama2c-stories260K/tok512.bin"), {}, tmp / "in.jsonl", false};
  std::ostringstream lines;
  REQUIRE_THROWS_WITH(run_tokenize(t, lines), Catch::Contains("in.jsonl:4"));
  const std::string printed = lines.str();
  CHECK(std::count(printed.begin(), printed.end(), '\n') == 2);

  ProbeOptions p;
  p.model.model_from_pretrained_path = asset("llama2c-stories260K/stories260K.bin");
  p.ids = parse_id_list("1,403,407", "--ids");
  p.hooks = split_list("blocks.0.hook_resid_post,ln_final.hook_normalized");
  p.logits = true;
  p.output = tmp / "probe.safetensors";
  std::ostringstream report;
  run_probe(p, report);
  const auto file = io::SafetensorsFile::open(p.output);
  CHECK(file.names().size() == 4);
  CHECK(file.info("logits").shape == std::vector<int64_t>{1, 3, 512});
  CHECK(report.str().find("blocks.0.hook_resid_post") != std::string::npos);
  REQUIRE_THROWS_AS(parse_id_list("1,x", "--ids"), ConfigError);
}

}  // namespace saes::runners

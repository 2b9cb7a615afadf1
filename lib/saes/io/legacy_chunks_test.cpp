// Tests of reading the original's safetensors chunk cache (spec §6.3): ordering, flattening of
// n_samples_per_chunk, 2-D masks and meta, and the cross-hook token check.
#include "saes/io/legacy_chunks.h"

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/safetensors.h"

#include "support/temp_dir.h"

namespace {

using namespace saes;
using namespace saes::io;

// One 1-D chunk for `hook` whose activation rows encode (chunk, row).
void write_1d_chunk(const std::filesystem::path& dir, const std::string& hook,
                    const std::string& name, std::int64_t chunk, at::Tensor tokens) {
  std::int64_t n = tokens.size(0);
  at::Tensor act = (at::arange(n).unsqueeze(1) + chunk * 1000)
                       .to(at::kFloat)
                       .expand({n, 4})
                       .contiguous()
                       .to(at::kHalf);
  save_safetensors(dir / hook / name,
                   std::map<std::string, at::Tensor>{{"activation", act},
                                                     {"tokens", tokens},
                                                     {"mask", at::ones({n}, at::kInt)},
                                                     {"attention_mask", at::ones({n}, at::kInt)}});
}

}  // namespace

TEST_CASE("legacy chunk caches read in (shard, chunk) order with tokens shared across hooks",
          "[shards]") {
  testing::TempDir dir;
  const std::vector<std::string> hooks = {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post"};
  for (const auto& hook : hooks) {
    write_1d_chunk(dir.path(), hook, "shard-1-chunk-00000000.safetensors", 2, at::arange(5) + 200);
    write_1d_chunk(dir.path(), hook, "shard-0-chunk-00000001.safetensors", 1, at::arange(5) + 100);
    write_1d_chunk(dir.path(), hook, "shard-0-chunk-00000000.safetensors", 0, at::arange(5));
  }
  auto reader = LegacyChunkReader::open(dir.path(), hooks);
  REQUIRE(reader.chunks().size() == 3);
  REQUIRE(reader.chunks()[1].file_name == "shard-0-chunk-00000001.safetensors");
  REQUIRE(reader.chunks()[2].shard_id == 1);
  ShardBatch b = reader.read_chunk(1, DType::kFloat32);
  REQUIRE(at::equal(b.tokens, at::arange(5) + 100));
  REQUIRE(b.activations.at(hooks[1]).scalar_type() == at::kFloat);
  REQUIRE(b.activations.at(hooks[1])[3][2].item<float>() == 1003.0f);
  REQUIRE_FALSE(b.mask.defined());

  write_1d_chunk(dir.path(), hooks[1], "shard-0-chunk-00000001.safetensors", 1, at::arange(5) + 7);
  REQUIRE_THROWS_WITH(reader.read_chunk(1), Catch::Contains("tokens differ"));
  std::filesystem::remove(dir.path() / hooks[1] / "shard-1-chunk-00000000.safetensors");
  REQUIRE_THROWS_AS(LegacyChunkReader::open(dir.path(), hooks), DataError);
}

TEST_CASE("legacy 2-D chunks flatten n_samples_per_chunk and read masks and context ids",
          "[shards]") {
  testing::TempDir dir;
  const std::string hook = "blocks.2.hook_mlp_out";
  at::Tensor tokens = at::arange(2 * 3 * 4).reshape({2, 3, 4});  // (N=2 samples, B=3, T=4)
  at::Tensor mask = (tokens.remainder(4) != 0).to(at::kInt);
  save_safetensors(
      dir.path() / hook / "chunk-00000000.safetensors",
      std::map<std::string, at::Tensor>{{"activation", at::randn({2, 3, 4, 8}).to(at::kBFloat16)},
                                        {"tokens", tokens},
                                        {"mask", mask},
                                        {"attention_mask", mask}});
  write_file_atomic(dir.path() / hook / "chunk-00000000.meta.json",
                    R"([[{"context_idx": 10}, {"context_idx": 11}, {"context_idx": 12}],
                        [{"context_idx": 13}, {"context_idx": 14}, {"context_idx": 15}]])");
  ShardBatch b = LegacyChunkReader::open(dir.path(), {hook}).read_chunk(0);
  REQUIRE(b.tokens.sizes() == at::IntArrayRef({6, 4}));
  REQUIRE(b.activations.at(hook).sizes() == at::IntArrayRef({6, 4, 8}));
  REQUIRE(at::equal(b.mask, mask.reshape({6, 4}).to(at::kBool)));
  REQUIRE(at::equal(b.doc_index, at::arange(10, 16)));
}

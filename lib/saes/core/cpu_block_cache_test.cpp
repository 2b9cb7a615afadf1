// Tests of the CPU block cache: large blocks come back for the same size, the mapped total stays
// under the live peak, small blocks and the raw interface still work, and tensors hold their data.
#include "saes/core/cpu_block_cache.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <c10/core/CPUAllocator.h>
#include <catch2/catch.hpp>

namespace {

// A float tensor of exactly `bytes` bytes (a multiple of 4).
at::Tensor floats(std::size_t bytes) { return at::empty({static_cast<int64_t>(bytes / 4)}); }

}  // namespace

TEST_CASE("the CPU block cache reuses large blocks within the live peak", "[core]") {
  REQUIRE(saes::install_cpu_block_cache());
  REQUIRE(saes::install_cpu_block_cache());  // idempotent
  constexpr std::size_t kMiB = std::size_t{1} << 20;
  // Sizes no other test allocates, each rounded up to whole 2 MiB pages by the cache.
  const std::size_t a = 37 * kMiB + 4, b = 45 * kMiB + 8;

  void* first = nullptr;
  {
    at::Tensor t = floats(a);
    first = t.data_ptr();
    t.fill_(1.5f);
  }
  const auto after_free = saes::cpu_block_cache_stats();
  CHECK(after_free.cached_bytes >= 38 * kMiB);
  {
    at::Tensor again = floats(a);
    CHECK(again.data_ptr() == first);  // the same block, not a new mapping
    again.fill_(4.0f);
    again[12345] = 5.0f;
    CHECK(again[12345].item<float>() == 5.0f);
    CHECK(again[12346].item<float>() == 4.0f);
    const auto hit = saes::cpu_block_cache_stats();
    CHECK(hit.hits == after_free.hits + 1);
    CHECK(hit.misses == after_free.misses);
  }

  // A size the cache has not seen: cached blocks are unmapped as needed so that live + cached
  // never exceeds the largest live total.
  for (int round = 0; round < 3; ++round) {
    at::Tensor x = floats(b), y = floats(a);
    x.fill_(2.0f);
    y.fill_(3.0f);
    CHECK(x.sum().item<double>() == Approx(2.0 * static_cast<double>(b / 4)));
    const auto s = saes::cpu_block_cache_stats();
    CHECK(s.live_bytes + s.cached_bytes <= s.peak_live_bytes);
  }
  const auto s = saes::cpu_block_cache_stats();
  CHECK(s.live_bytes + s.cached_bytes <= s.peak_live_bytes);
  CHECK(s.hits >= after_free.hits + 3);  // later rounds take both blocks from the cache

  // Small tensors and the raw interface go through the replaced allocator.
  at::Tensor small = at::ones({1000});
  CHECK(small.sum().item<float>() == 1000.0f);
  c10::Allocator* cpu = c10::GetCPUAllocator();
  REQUIRE(cpu->raw_deleter() != nullptr);
  void* raw = cpu->raw_allocate(4096);
  REQUIRE(raw != nullptr);
  static_cast<char*>(raw)[4095] = 7;
  cpu->raw_deallocate(raw);
  void* raw_large = cpu->raw_allocate(a);
  REQUIRE(raw_large != nullptr);
  static_cast<char*>(raw_large)[a - 1] = 7;
  cpu->raw_deallocate(raw_large);
}

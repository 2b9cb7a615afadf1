// Every architecture against `transformers` itself: tests/data/hf/<name>/ holds a tiny random
// model written by transformers' save_pretrained (GPT-2, GPT-NeoX parallel and sequential, Llama
// with GQA in shards, Llama-3 rope scaling with tied embeddings, Qwen2) and reference.safetensors
// with the input ids and every hook value and the logits that transformers computed
// (tests/reference/make_hf_fixtures.py, tests/data/hf/README.md). We load the folder with
// load_hf_folder and compare every hook. Tolerance: both sides are float32 with different
// operation orders; values are O(1), so 1e-4 absolute (+1e-4 relative to the array's scale).
#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/max.h>
#include <catch2/catch.hpp>

#include "saes/io/safetensors.h"
#include "saes/lm/hf_folder.h"
#include "saes/lm/hooks.h"

namespace saes::lm {
namespace {

std::filesystem::path fixtures_dir() {
  return std::filesystem::path(SAES_SOURCE_DIR) / "tests" / "data" / "hf";
}

std::vector<std::filesystem::path> fixture_folders() {
  std::vector<std::filesystem::path> out;
  if (!std::filesystem::is_directory(fixtures_dir())) return out;
  for (const auto& entry : std::filesystem::directory_iterator(fixtures_dir())) {
    if (std::filesystem::exists(entry.path() / "reference.safetensors"))
      out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("HF models made by transformers reproduce its hooks and logits", "[lm][hf]") {
  const auto folders = fixture_folders();
  REQUIRE(folders.size() >= 6);  // the fixtures are committed; a missing one is a failure
  for (const auto& dir : folders) {
    INFO("fixture " << dir.filename().string());
    const Transformer model = load_hf_folder(dir);
    const auto ref = io::SafetensorsFile::open(dir / "reference.safetensors");
    HookSet hooks;
    std::vector<std::string> names;
    for (const auto& name : ref.names()) {
      if (name == "input_ids" || name == "logits") continue;
      names.push_back(name);
      hooks.capture(name);
    }
    REQUIRE(names.size() >= 20);
    hooks.capture("logits");
    names.push_back("logits");
    const at::Tensor ids = ref.tensor("input_ids", io::TensorLoad::kCopy);
    const auto got = model.forward(ids, nullptr, hooks);
    for (const auto& name : names) {
      INFO("hook " << name);
      REQUIRE(got.count(name) == 1);
      const at::Tensor expected = ref.tensor(name, io::TensorLoad::kCopy);
      const at::Tensor value = got.at(name).to(at::kFloat);
      REQUIRE(value.sizes() == expected.sizes());
      const double scale = expected.abs().max().item<double>();
      CHECK((value - expected).abs().max().item<double>() < 1e-4 + 1e-4 * scale);
    }
  }
}

}  // namespace saes::lm

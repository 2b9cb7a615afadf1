// The text run.c printed (assets' run_c_samples.txt) is reproduced by our tokenizer + model +
// greedy decoding: prompt "The cat", 80 positions, temperature 0.
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "saes/lm/generate.h"
#include "saes/lm/llama2c_loader.h"
#include "saes/lm/tokenizer.h"

#include "support/temp_dir.h"

namespace {

/// The output block printed after the command line that contains `command`, without trailing
/// blank lines.
std::string run_c_output(const std::filesystem::path& file, const std::string& command) {
  std::ifstream in(file);
  std::string line, out;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line.rfind("$ ", 0) == 0) {
      if (inside) break;
      inside = line.find(command) != std::string::npos;
      continue;
    }
    if (inside) out += line + "\n";
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

TEST_CASE("greedy text from a prompt equals run.c's printed sample", "[lm]") {
  SAES_REQUIRE_ASSETS();
  const auto dir = saes::testing::test_assets_dir() / "llama2c-stories260K";
  const std::string expected = run_c_output(dir / "run_c_samples.txt", "-n 80 -i \"The cat\"");
  REQUIRE_FALSE(expected.empty());
  const auto tokenizer = saes::lm::load_tokenizer(dir / "tok512.bin");
  const auto model = saes::lm::load_llama2c(dir / "stories260K.bin");
  std::vector<int64_t> prompt = {1};  // BOS, as run.c
  for (int64_t id : tokenizer->encode("The cat")) prompt.push_back(id);
  // run.c's -n counts positions including the prompt: 80 steps produce 80 tokens after BOS.
  const auto ids =
      saes::lm::generate_greedy(model, prompt, 80 - static_cast<int64_t>(prompt.size()) + 1);
  std::string text = tokenizer->decode(std::vector<int64_t>(ids.begin() + 1, ids.end()));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  CHECK(text == expected);
}

// The GPT-2-small-shaped model of the benchmarks (12 layers, d_model 768, 12 heads, d_mlp 3072,
// vocab 50257, learned positions, LayerNorm, GELU): random weights (N(0, 0.02²), unit norms)
// through the HF GPT-2 loader, so the forward is the engine's real GPT-2 path.
#pragma once

#include <string>
#include <vector>

#include <ATen/TensorOperators.h>
#include <ATen/core/Generator.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>

#include "saes/lm/hf_model.h"

namespace saes::bench {

inline saes::lm::Transformer random_gpt2_small(at::Generator& gen) {
  const int64_t d = 768, mlp = 3072, vocab = 50257, ctx = 1024;
  const auto r = [&](std::vector<int64_t> shape) { return at::randn(shape, gen) * 0.02; };
  saes::lm::MapWeightSource hf({}, "random gpt2-small");
  hf.set("wte.weight", r({vocab, d}));
  hf.set("wpe.weight", r({ctx, d}));
  const auto norm = [&](const std::string& name) {
    hf.set(name + ".weight", at::ones({d}));
    hf.set(name + ".bias", at::zeros({d}));
  };
  for (int l = 0; l < 12; ++l) {
    const std::string p = fmt::format("h.{}.", l);
    norm(p + "ln_1");
    norm(p + "ln_2");
    hf.set(p + "attn.c_attn.weight", r({d, 3 * d}));
    hf.set(p + "attn.c_attn.bias", r({3 * d}));
    hf.set(p + "attn.c_proj.weight", r({d, d}));
    hf.set(p + "attn.c_proj.bias", r({d}));
    hf.set(p + "mlp.c_fc.weight", r({d, mlp}));
    hf.set(p + "mlp.c_fc.bias", r({mlp}));
    hf.set(p + "mlp.c_proj.weight", r({mlp, d}));
    hf.set(p + "mlp.c_proj.bias", r({d}));
  }
  norm("ln_f");
  const std::string config = R"({"architectures": ["GPT2LMHeadModel"], "n_embd": 768, "n_layer": 12,
    "n_head": 12, "vocab_size": 50257, "n_positions": 1024})";
  return saes::lm::load_hf_transformer(config, hf, {}, "gpt2-small config");
}

}  // namespace saes::bench

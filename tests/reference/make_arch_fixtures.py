#!/usr/bin/env python3
"""Tiny Qwen3, Mistral, Gemma 2 and Gemma 3 folders with float64 reference activations.

transformers is not installable on this machine, so the reference here is an independent
float64 implementation written from transformers' modelling code (modeling_qwen3.py,
modeling_mistral.py, modeling_gemma2.py, modeling_gemma3.py, masking_utils.py,
modeling_rope_utils.py), not from saes's engine. For each architecture it writes
OUT/<name>/config.json (the keys transformers' configuration_*.py reads, in the layout named per
fixture), model.safetensors (random float32 weights under the Hugging Face tensor names) and
reference.safetensors (input_ids [2, T] int64 and every TransformerLens hook of hook-semantics.md,
float32 copies of the float64 values). lib/saes/lm/hf_fixture_test.cpp loads each folder with
load_hf_folder and compares every hook (1e-4 absolute + 1e-4 x the array's max).

Facts this encodes (each from the modelling code):
- Qwen3: q_norm / k_norm are RMSNorms (weight w, eps rms_norm_eps) over each head's d_head values,
  applied after q_proj/k_proj and before RoPE; head_dim comes from the config.
- Mistral: Llama plus a sliding window on every layer: key j is visible from query i iff
  i - window < j <= i (masking_utils.sliding_window_overlay).
- Gemma 2/3: embeddings times sqrt(hidden_size) (rounded to the hidden dtype); RMSNorm computes
  x / sqrt(mean(x^2) + eps) * (1 + w); four norms per layer: input_layernorm -> attention ->
  post_attention_layernorm -> residual add -> pre_feedforward_layernorm -> MLP ->
  post_feedforward_layernorm -> residual add; MLP down(gelu_tanh(gate(x)) * up(x)); scores scaled
  by query_pre_attn_scalar^-0.5, then (Gemma 2) soft-capped cap*tanh(s/cap) before the mask;
  final logits soft-capped (Gemma 2); sliding layers (Gemma 2: even layers; Gemma 3: all but every
  sliding_window_pattern-th, or layer_types). Gemma 3: q_norm / k_norm are Gemma RMSNorms (1 + w);
  global layers use rope_theta with rope_scaling (linear: inv_freq / factor), sliding layers
  rope_local_base_freq without scaling. The multimodal Gemma3ForConditionalGeneration keeps the
  text model under text_config and `language_model.model.` tensor names.
- TransformerLens hooks: hook_embed is the scaled embedding, ln1_post / ln2_post.hook_normalized
  exist for sandwich norms and hook_attn_out / hook_mlp_out are after the post norms;
  hook_q / hook_k are after QK-norm and RoPE (saes's hook-semantics.md).

Needs torch (Debian's python3-torch): /usr/bin/python3 tests/reference/make_arch_fixtures.py OUT
"""
import json
import math
import os
import struct
import sys

import torch

T = 12
VOCAB = 128


def write_safetensors(path, tensors):
    """u64 LE header length, JSON header padded to 8 bytes, then the data (float32 / int64)."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        if t.dtype == torch.int64:
            dtype, blob = "I64", struct.pack(f"<{t.numel()}q", *t.flatten().tolist())
        else:
            t = t.to(torch.float32)
            dtype, blob = "F32", struct.pack(f"<{t.numel()}f", *t.flatten().tolist())
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


class Weights:
    """Random float32 weights under HF names; read back as float64."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.hf = {}

    def make(self, name, shape, scale, offset=0.0):
        t = (offset + scale * torch.randn(shape, generator=self.g, dtype=torch.float64)).float()
        self.hf[name] = t
        return t.double()


def rms(x, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def inv_freq(dim, theta, linear_factor=1.0):
    i = torch.arange(0, dim, 2, dtype=torch.float64)
    return 1.0 / (theta ** (i / dim)) / linear_factor


def rotate(x, freqs):
    """x [B, T, H, D] half-split RoPE at positions 0..T-1 (HF rotate_half)."""
    pos = torch.arange(x.shape[1], dtype=torch.float64)
    ang = pos[:, None] * freqs[None, :]  # [T, D/2]
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


def forward(cfg, w, ids):
    """The float64 forward of one fixture; returns hook name -> value."""
    out = {}
    gemma = cfg["family"] in ("gemma2", "gemma3")
    d, H, Hkv, D = cfg["d"], cfg["heads"], cfg["kv"], cfg["head_dim"]
    eps = 1e-6
    p = cfg["prefix"]

    def norm(x, name, hook):
        n = rms(x, eps)
        if hook:
            out[hook] = n
        weight = w[name]
        return n * (1.0 + weight) if gemma else n * weight

    x = w[p + "embed_tokens.weight"][ids]
    if gemma:
        x = x * float(torch.tensor(d ** 0.5, dtype=torch.float32))
    out["hook_embed"] = x
    B = ids.shape[0]
    for l in range(cfg["layers"]):
        s = f"{p}layers.{l}."
        b = f"blocks.{l}."
        out[b + "hook_resid_pre"] = x
        h = norm(x, s + "input_layernorm.weight", b + "ln1.hook_normalized")
        q = (h @ w[s + "self_attn.q_proj.weight"].T).view(B, T, H, D)
        k = (h @ w[s + "self_attn.k_proj.weight"].T).view(B, T, Hkv, D)
        v = (h @ w[s + "self_attn.v_proj.weight"].T).view(B, T, Hkv, D)
        if cfg["qk_norm"]:
            q = norm(q, s + "self_attn.q_norm.weight", None)
            k = norm(k, s + "self_attn.k_norm.weight", None)
        sliding = cfg["sliding"][l]
        theta, factor = cfg["rope_local"] if sliding and "rope_local" in cfg else cfg["rope"]
        freqs = inv_freq(D, theta, factor)
        q, k = rotate(q, freqs), rotate(k, freqs)
        out[b + "attn.hook_q"], out[b + "attn.hook_k"], out[b + "attn.hook_v"] = q, k, v
        rep = H // Hkv
        kk = k.repeat_interleave(rep, 2).transpose(1, 2)  # [B, H, T, D]
        vv = v.repeat_interleave(rep, 2).transpose(1, 2)
        scores = q.transpose(1, 2) @ kk.transpose(-1, -2) * cfg["scale_base"] ** -0.5
        if cfg.get("attn_softcap"):
            c = cfg["attn_softcap"]
            scores = torch.tanh(scores / c) * c
        i = torch.arange(T)
        allowed = i[None, :] <= i[:, None]
        if sliding:
            allowed = allowed & (i[None, :] > i[:, None] - cfg["window"])
        scores = scores.masked_fill(~allowed, float("-inf"))
        z = (torch.softmax(scores, -1) @ vv).transpose(1, 2)  # [B, T, H, D]
        out[b + "attn.hook_z"] = z
        a = z.reshape(B, T, H * D) @ w[s + "self_attn.o_proj.weight"].T
        if gemma:
            a = norm(a, s + "post_attention_layernorm.weight", b + "ln1_post.hook_normalized")
        out[b + "hook_attn_out"] = a
        x = x + a
        out[b + "hook_resid_mid"] = x
        mlp_norm = "pre_feedforward_layernorm" if gemma else "post_attention_layernorm"
        h = norm(x, s + mlp_norm + ".weight", b + "ln2.hook_normalized")
        gate = h @ w[s + "mlp.gate_proj.weight"].T
        act = torch.nn.functional.gelu(gate, approximate="tanh") if gemma else \
            torch.nn.functional.silu(gate)
        post = act * (h @ w[s + "mlp.up_proj.weight"].T)
        out[b + "mlp.hook_post"] = post
        m = post @ w[s + "mlp.down_proj.weight"].T
        if gemma:
            m = norm(m, s + "post_feedforward_layernorm.weight", b + "ln2_post.hook_normalized")
        out[b + "hook_mlp_out"] = m
        x = x + m
        out[b + "hook_resid_post"] = x
    f = norm(x, p + "norm.weight", "ln_final.hook_normalized")
    w_u = w[p + "embed_tokens.weight"] if cfg["tied"] else w["lm_head.weight"]
    logits = f @ w_u.T
    if cfg.get("final_softcap"):
        c = cfg["final_softcap"]
        logits = torch.tanh(logits / c) * c
    out["logits"] = logits
    return out


def make_weights(cfg, seed):
    gen = Weights(seed)
    d, H, Hkv, D, F = cfg["d"], cfg["heads"], cfg["kv"], cfg["head_dim"], cfg["d_mlp"]
    gemma = cfg["family"] in ("gemma2", "gemma3")
    p = cfg["prefix"]

    def norm_weight(name, dim):  # Gemma stores w of (1 + w); the others w itself
        return gen.make(name, [dim], 0.1, 0.0 if gemma else 1.0)

    w = {p + "embed_tokens.weight": gen.make(p + "embed_tokens.weight", [VOCAB, d], 0.5)}
    for l in range(cfg["layers"]):
        s = f"{p}layers.{l}."
        norms = ["input_layernorm", "post_attention_layernorm"]
        if gemma:
            norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
        for n in norms:
            w[s + n + ".weight"] = norm_weight(s + n + ".weight", d)
        for proj, rows in (("q_proj", H * D), ("k_proj", Hkv * D), ("v_proj", Hkv * D)):
            w[s + f"self_attn.{proj}.weight"] = gen.make(s + f"self_attn.{proj}.weight", [rows, d],
                                                         0.15 * math.sqrt(32 / d))
        if cfg["qk_norm"]:
            for n in ("q_norm", "k_norm"):
                w[s + f"self_attn.{n}.weight"] = norm_weight(s + f"self_attn.{n}.weight", D)
        w[s + "self_attn.o_proj.weight"] = gen.make(s + "self_attn.o_proj.weight", [d, H * D], 0.15)
        w[s + "mlp.gate_proj.weight"] = gen.make(s + "mlp.gate_proj.weight", [F, d], 0.15)
        w[s + "mlp.up_proj.weight"] = gen.make(s + "mlp.up_proj.weight", [F, d], 0.15)
        w[s + "mlp.down_proj.weight"] = gen.make(s + "mlp.down_proj.weight", [d, F], 0.15)
    w[p + "norm.weight"] = norm_weight(p + "norm.weight", d)
    if not cfg["tied"]:
        w["lm_head.weight"] = gen.make("lm_head.weight", [VOCAB, d], 0.5)
    return gen, w


def common_config(cfg):
    return {
        "hidden_size": cfg["d"], "intermediate_size": cfg["d_mlp"],
        "num_hidden_layers": cfg["layers"], "num_attention_heads": cfg["heads"],
        "num_key_value_heads": cfg["kv"], "head_dim": cfg["head_dim"], "vocab_size": VOCAB,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "tie_word_embeddings": cfg["tied"],
        "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2, "dtype": "float32",
    }


FIXTURES = {
    # transformers ≥ 5 layout: rope_parameters, layer_types
    "qwen3": dict(family="qwen3", d=32, heads=4, kv=2, head_dim=16, d_mlp=64, layers=2,
                  tied=False, qk_norm=True, scale_base=16, rope=(1e6, 1.0), sliding=[False] * 2,
                  config={"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
                          "hidden_act": "silu", "use_sliding_window": False,
                          "sliding_window": None, "max_window_layers": 2,
                          "layer_types": ["full_attention"] * 2,
                          "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}),
    # older layout: top-level rope_theta; a window of 4 on every layer
    "mistral": dict(family="mistral", d=32, heads=4, kv=2, head_dim=8, d_mlp=64, layers=2,
                    tied=False, qk_norm=False, scale_base=8, rope=(10000.0, 1.0), window=4,
                    sliding=[True] * 2,
                    config={"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                            "hidden_act": "silu", "sliding_window": 4, "rope_theta": 10000.0}),
    # older layout without layer_types: even layers slide; both soft-cappings
    "gemma2": dict(family="gemma2", d=32, heads=4, kv=2, head_dim=16, d_mlp=64, layers=3,
                   tied=True, qk_norm=False, scale_base=24, rope=(10000.0, 1.0), window=4,
                   sliding=[True, False, True], attn_softcap=1.0, final_softcap=3.0,
                   config={"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2",
                           "hidden_act": "gelu_pytorch_tanh",
                           "hidden_activation": "gelu_pytorch_tanh",
                           "query_pre_attn_scalar": 24, "sliding_window": 4,
                           "attn_logit_softcapping": 1.0, "final_logit_softcapping": 3.0,
                           "rope_theta": 10000.0, "bos_token_id": 2, "eos_token_id": 1}),
    # transformers ≥ 5 layout: layer_types and rope_parameters per layer type
    "gemma3": dict(family="gemma3", d=32, heads=4, kv=2, head_dim=16, d_mlp=64, layers=3,
                   tied=True, qk_norm=True, scale_base=16, rope=(1e6, 4.0),
                   rope_local=(10000.0, 1.0), window=4, sliding=[True, True, False],
                   config={"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
                           "hidden_activation": "gelu_pytorch_tanh",
                           "query_pre_attn_scalar": 16, "sliding_window": 4,
                           "attn_logit_softcapping": None, "final_logit_softcapping": None,
                           "layer_types": ["sliding_attention", "sliding_attention",
                                           "full_attention"],
                           "rope_parameters": {
                               "full_attention": {"rope_type": "linear", "factor": 4.0,
                                                  "rope_theta": 1e6},
                               "sliding_attention": {"rope_type": "default",
                                                     "rope_theta": 10000.0}}}),
}
# the multimodal checkpoint layout (4B and up) in the older config keys: text_config,
# sliding_window_pattern 2, rope_scaling linear 8 on the global layers, rope_local_base_freq
MULTIMODAL = dict(family="gemma3", d=32, heads=2, kv=1, head_dim=16, d_mlp=48, layers=4,
                  tied=True, qk_norm=True, scale_base=16, rope=(1e6, 8.0),
                  rope_local=(10000.0, 1.0), window=3, sliding=[True, False, True, False],
                  prefix="language_model.model.")


def main(out_dir):
    fixtures = dict(FIXTURES)
    fixtures["gemma3-multimodal"] = MULTIMODAL
    for seed, (name, cfg) in enumerate(sorted(fixtures.items())):
        cfg.setdefault("prefix", "model.")
        gen, w = make_weights(cfg, 100 + seed)
        if name == "gemma3-multimodal":
            text = common_config(cfg)
            text.update({"model_type": "gemma3_text", "hidden_activation": "gelu_pytorch_tanh",
                         "query_pre_attn_scalar": 16, "sliding_window": 3,
                         "sliding_window_pattern": 2, "rope_theta": 1e6,
                         "rope_local_base_freq": 10000.0,
                         "rope_scaling": {"rope_type": "linear", "factor": 8.0},
                         "final_logit_softcapping": None, "attn_logit_softcapping": None})
            config = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                      "text_config": text, "vision_config": {"hidden_size": 8},
                      "image_token_index": 127}
            gen.hf["vision_tower.vision_model.post_layernorm.weight"] = torch.ones(8)
        else:
            config = common_config(cfg)
            config.update(cfg["config"])
        folder = os.path.join(out_dir, name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        write_safetensors(os.path.join(folder, "model.safetensors"), gen.hf)
        ids = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(seed))
        ref = forward(cfg, w, ids)
        ref = {k: v.float() for k, v in ref.items()}
        ref["input_ids"] = ids
        write_safetensors(os.path.join(folder, "reference.safetensors"), ref)
        print(name, len(ref), "tensors")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/hf")

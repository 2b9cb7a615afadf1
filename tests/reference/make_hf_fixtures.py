#!/usr/bin/env python3
"""Tiny random Hugging Face models and their reference activations, made with `transformers`.

Writes, per architecture, OUT/<name>/ with the folder `save_pretrained` writes (config.json +
model.safetensors, or shards + model.safetensors.index.json) and `reference.safetensors`:
`input_ids` [2, T] int64 and, for every TransformerLens hook name of
docs/../shared/reference/hook-semantics.md, the value [2, T, ...] float32 computed by the
`transformers` model itself (forward hooks on its modules; the LayerNorm/RMSNorm "normalized"
values and the rotated q/k use the formulas of hook-semantics.md and transformers' own rotary
functions). The C++ test lib/saes/lm/hf_fixture_test.cpp loads each folder with
saes::lm::load_hf_folder and compares every hook.

Needs torch + transformers (the CUDA machine has both; this machine has neither transformers
nor network). Run: python3 tests/reference/make_hf_fixtures.py tests/data/hf
"""
import json
import math
import os
import sys
import traceback

import torch
import transformers
from safetensors.torch import save_file

T = 12
VOCAB = 128


def randomize(model, seed):
    """Every parameter random (HF zero-initialises biases and sets norm weights to 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or ".ln_" in name or name.startswith("transformer.ln_f"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed" in name or "wte" in name or "wpe" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def layer_norm_normalized(x, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def rms_normalized(x, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


class Recorder:
    def __init__(self):
        self.out = {}
        self.handles = []

    def pre(self, module, fn):
        def hook(mod, args, kwargs):
            x = args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))
            fn(x)
        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def post(self, module, fn):
        def hook(mod, args, output):
            fn(output[0] if isinstance(output, tuple) else output)
        self.handles.append(module.register_forward_hook(hook))

    def put(self, name, value):
        self.out[name] = value.detach().float().contiguous().clone()


def heads(x, n):
    b, t, d = x.shape
    return x.reshape(b, t, n, d // n)


def rotate(q_heads, k_heads, module_rotary, apply_fn, position_ids, x):
    """q/k [B, T, H, dh] rotated with the model's own rotary embedding and apply function."""
    cos, sin = module_rotary(x, position_ids)
    rd = cos.shape[-1]  # rotary dims per head (partial rotary: the first rd, the rest pass)
    q, k = q_heads.transpose(1, 2), k_heads.transpose(1, 2)
    qr, kr = apply_fn(q[..., :rd], k[..., :rd], cos, sin)
    q = torch.cat([qr, q[..., rd:]], -1)
    k = torch.cat([kr, k[..., rd:]], -1)
    return q.transpose(1, 2), k.transpose(1, 2)


def gpt2_hooks(model, rec, cfg):
    tr = model.transformer
    eps = cfg.layer_norm_epsilon
    n = cfg.n_head
    rec.post(tr.wte, lambda y: rec.put("hook_embed", y))
    rec.post(tr.wpe, lambda y: rec.put("hook_pos_embed", y.expand(2, -1, -1)))
    for L, blk in enumerate(tr.h):
        p = f"blocks.{L}."
        state = {}

        def resid_pre(x, p=p, state=state):
            state["pre"] = x
            rec.put(p + "hook_resid_pre", x)
        rec.pre(blk, resid_pre)
        rec.pre(blk.ln_1, lambda x, p=p: rec.put(p + "ln1.hook_normalized", layer_norm_normalized(x, eps)))

        def qkv(y, p=p):
            d = y.shape[-1] // 3
            for i, w in enumerate("qkv"):
                rec.put(p + f"attn.hook_{w}", heads(y[..., i * d:(i + 1) * d], n))
        rec.post(blk.attn.c_attn, qkv)
        rec.pre(blk.attn.c_proj, lambda x, p=p: rec.put(p + "attn.hook_z", heads(x, n)))

        def attn_out(y, p=p, state=state):
            rec.put(p + "hook_attn_out", y)
            rec.put(p + "hook_resid_mid", state["pre"] + y)
        rec.post(blk.attn, attn_out)
        rec.pre(blk.ln_2, lambda x, p=p: rec.put(p + "ln2.hook_normalized", layer_norm_normalized(x, eps)))
        rec.pre(blk.mlp.c_proj, lambda x, p=p: rec.put(p + "mlp.hook_post", x))
        rec.post(blk.mlp, lambda y, p=p: rec.put(p + "hook_mlp_out", y))
        rec.post(blk, lambda y, p=p: rec.put(p + "hook_resid_post", y))
    rec.pre(tr.ln_f, lambda x: rec.put("ln_final.hook_normalized", layer_norm_normalized(x, eps)))


def neox_hooks(model, rec, cfg, position_ids):
    from transformers.models.gpt_neox import modeling_gpt_neox as m
    base = model.gpt_neox
    eps = cfg.layer_norm_eps
    n = cfg.num_attention_heads
    rec.post(base.embed_in, lambda y: rec.put("hook_embed", y))
    for L, blk in enumerate(base.layers):
        p = f"blocks.{L}."
        state = {}

        def resid_pre(x, p=p, state=state):
            state["pre"] = x
            rec.put(p + "hook_resid_pre", x)
        rec.pre(blk, resid_pre)
        rec.pre(blk.input_layernorm, lambda x, p=p: rec.put(p + "ln1.hook_normalized", layer_norm_normalized(x, eps)))

        def qkv(y, p=p, state=state):
            b, t, _ = y.shape
            per_head = y.reshape(b, t, n, 3, -1)  # rows grouped per head as (q, k, v)
            q, k, v = per_head[:, :, :, 0], per_head[:, :, :, 1], per_head[:, :, :, 2]
            q, k = rotate(q, k, base.rotary_emb, m.apply_rotary_pos_emb, position_ids, state["pre"])
            rec.put(p + "attn.hook_q", q)
            rec.put(p + "attn.hook_k", k)
            rec.put(p + "attn.hook_v", v)
        rec.post(blk.attention.query_key_value, qkv)
        rec.pre(blk.attention.dense, lambda x, p=p: rec.put(p + "attn.hook_z", heads(x, n)))

        def attn_out(y, p=p, state=state):
            rec.put(p + "hook_attn_out", y)
            if not cfg.use_parallel_residual:
                rec.put(p + "hook_resid_mid", state["pre"] + y)
        rec.post(blk.attention, attn_out)
        rec.pre(blk.post_attention_layernorm,
                lambda x, p=p: rec.put(p + "ln2.hook_normalized", layer_norm_normalized(x, eps)))
        rec.pre(blk.mlp.dense_4h_to_h, lambda x, p=p: rec.put(p + "mlp.hook_post", x))
        rec.post(blk.mlp, lambda y, p=p: rec.put(p + "hook_mlp_out", y))
        rec.post(blk, lambda y, p=p: rec.put(p + "hook_resid_post", y))
    rec.pre(base.final_layer_norm, lambda x: rec.put("ln_final.hook_normalized", layer_norm_normalized(x, eps)))


def llama_hooks(model, rec, cfg, position_ids, module):
    base = model.model
    eps = cfg.rms_norm_eps
    n, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    rec.post(base.embed_tokens, lambda y: rec.put("hook_embed", y))
    for L, blk in enumerate(base.layers):
        p = f"blocks.{L}."
        state = {}

        def resid_pre(x, p=p, state=state):
            state["pre"] = x
            rec.put(p + "hook_resid_pre", x)
        rec.pre(blk, resid_pre)
        rec.pre(blk.input_layernorm, lambda x, p=p: rec.put(p + "ln1.hook_normalized", rms_normalized(x, eps)))
        rec.post(blk.self_attn.q_proj, lambda y, state=state: state.__setitem__("q", heads(y, n)))

        def k_proj(y, p=p, state=state):
            q, k = rotate(state["q"], heads(y, nkv), base.rotary_emb, module.apply_rotary_pos_emb,
                          position_ids, state["pre"])
            rec.put(p + "attn.hook_q", q)
            rec.put(p + "attn.hook_k", k)
        rec.post(blk.self_attn.k_proj, k_proj)
        rec.post(blk.self_attn.v_proj, lambda y, p=p: rec.put(p + "attn.hook_v", heads(y, nkv)))
        rec.pre(blk.self_attn.o_proj, lambda x, p=p: rec.put(p + "attn.hook_z", heads(x, n)))

        def attn_out(y, p=p, state=state):
            rec.put(p + "hook_attn_out", y)
            rec.put(p + "hook_resid_mid", state["pre"] + y)
        rec.post(blk.self_attn, attn_out)
        rec.pre(blk.post_attention_layernorm,
                lambda x, p=p: rec.put(p + "ln2.hook_normalized", rms_normalized(x, eps)))
        rec.pre(blk.mlp.down_proj, lambda x, p=p: rec.put(p + "mlp.hook_post", x))
        rec.post(blk.mlp, lambda y, p=p: rec.put(p + "hook_mlp_out", y))
        rec.post(blk, lambda y, p=p: rec.put(p + "hook_resid_post", y))
    rec.pre(base.norm, lambda x: rec.put("ln_final.hook_normalized", rms_normalized(x, eps)))


def make(name, model_cls, cfg, seed, out_dir, hooks_fn, shard=None):
    torch.manual_seed(seed)
    try:
        cfg._attn_implementation = "eager"
    except Exception:  # noqa: BLE001 - newer transformers: a property; eager is then the default
        pass
    model = model_cls(cfg).eval()
    rotary = getattr(getattr(model, "model", getattr(model, "gpt_neox", None)), "rotary_emb", None)
    if rotary is not None:
        print(f"{name}: inv_freq {rotary.inv_freq.tolist()}")
    randomize(model, seed)
    ids = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(seed + 1))
    position_ids = torch.arange(T).unsqueeze(0).expand(2, -1)
    rec = Recorder()
    hooks_fn(model, rec, cfg, position_ids)
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=position_ids).logits
    rec.put("logits", logits)
    for h in rec.handles:
        h.remove()
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    kwargs = {"safe_serialization": True}
    if shard:
        kwargs["max_shard_size"] = shard
    model.save_pretrained(d, **kwargs)
    tensors = {"input_ids": ids.contiguous()}
    tensors.update(rec.out)
    save_file(tensors, os.path.join(d, "reference.safetensors"),
              metadata={"transformers": transformers.__version__, "torch": torch.__version__,
                        "made_by": "tests/reference/make_hf_fixtures.py"})
    print(f"{name}: {len(rec.out)} arrays, files {sorted(os.listdir(d))}")
    print(open(os.path.join(d, "config.json")).read())


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "hf-fixtures"
    from transformers.models.llama import modeling_llama
    from transformers.models.qwen2 import modeling_qwen2
    common = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2)
    jobs = [
        ("gpt2", transformers.GPT2LMHeadModel,
         lambda: transformers.GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                         activation_function="gelu_new", resid_pdrop=0.0,
                                         embd_pdrop=0.0, attn_pdrop=0.0, **common),
         lambda m, r, c, pos: gpt2_hooks(m, r, c), None),
        ("neox-parallel", transformers.GPTNeoXForCausalLM,
         lambda: transformers.GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                            intermediate_size=64, rotary_pct=0.5, rotary_emb_base=10000,
                                            use_parallel_residual=True, max_position_embeddings=64,
                                            tie_word_embeddings=False, hidden_act="gelu",
                                            attention_dropout=0.0, hidden_dropout=0.0, **common),
         neox_hooks, None),
        ("neox-sequential", transformers.GPTNeoXForCausalLM,
         lambda: transformers.GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                            intermediate_size=64, rotary_pct=0.25, rotary_emb_base=10000,
                                            use_parallel_residual=False, max_position_embeddings=64,
                                            tie_word_embeddings=False, hidden_act="gelu",
                                            attention_dropout=0.0, hidden_dropout=0.0, **common),
         neox_hooks, None),
        ("llama-gqa-sharded", transformers.LlamaForCausalLM,
         lambda: transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=64, rope_theta=10000.0,
                                          tie_word_embeddings=False, rms_norm_eps=1e-5, **common),
         lambda m, r, c, pos: llama_hooks(m, r, c, pos, modeling_llama), "40KB"),
        ("llama3-tied", transformers.LlamaForCausalLM,
         lambda: transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=4,
                                          max_position_embeddings=256, rope_theta=10000.0,
                                          rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                        "original_max_position_embeddings": 64},
                                          tie_word_embeddings=True, rms_norm_eps=1e-6, **common),
         lambda m, r, c, pos: llama_hooks(m, r, c, pos, modeling_llama), None),
        ("qwen2", transformers.Qwen2ForCausalLM,
         lambda: transformers.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=64, rope_theta=10000.0,
                                          use_sliding_window=False, sliding_window=4,
                                          max_window_layers=1, tie_word_embeddings=False,
                                          rms_norm_eps=1e-6, **common),
         lambda m, r, c, pos: llama_hooks(m, r, c, pos, modeling_qwen2), None),
    ]
    failed = 0
    for seed, (name, cls, make_cfg, hooks_fn, shard) in enumerate(jobs):
        try:
            make(name, cls, make_cfg(), 100 + seed, out_dir, hooks_fn, shard)
        except Exception:
            failed += 1
            print(f"{name}: FAILED")
            traceback.print_exc()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, failed {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

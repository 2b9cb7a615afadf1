# PyTorch eager reference for bench/lm_forward.cpp: the same two forwards (stories260K from its llama2.c
# .bin, and a GPT-2-small-shaped model with random weights), written with plain torch ops.
# Run with Debian's /usr/bin/python3 (python3-torch); prints `<workload> <tokens_per_s>` per line.
import argparse
import math
import struct
import time

import torch
import torch.nn.functional as F


def load_llama2c(path):
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("7i", raw[:28])
    w = torch.frombuffer(bytearray(raw[28:]), dtype=torch.float32)
    offset = 0

    def take(*shape):
        nonlocal offset
        n = math.prod(shape)
        out = w[offset:offset + n].view(*shape)
        offset += n
        return out

    head = dim // n_heads
    m = {"dim": dim, "n_layers": n_layers, "n_heads": n_heads, "n_kv": n_kv, "head": head}
    m["emb"] = take(abs(vocab), dim)
    for name, shape in [("ln1", (dim,)), ("wq", (dim, dim)), ("wk", (n_kv * head, dim)),
                        ("wv", (n_kv * head, dim)), ("wo", (dim, dim)), ("ln2", (dim,)),
                        ("w1", (hidden, dim)), ("w2", (dim, hidden)), ("w3", (hidden, dim))]:
        m[name] = take(n_layers, *shape)
    m["norm"] = take(dim)
    return m


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w


def llama2c_forward(m, tokens):
    b, t = tokens.shape
    h, kv, d = m["n_heads"], m["n_kv"], m["head"]
    inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2).float() / d))
    ang = torch.arange(t).float()[:, None] * inv
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]

    def rope(x):
        a, c = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * cos - c * sin, a * sin + c * cos], -1).flatten(-2)

    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    x = F.embedding(tokens, m["emb"])
    for l in range(m["n_layers"]):
        n = rms(x, m["ln1"][l])
        q = rope(F.linear(n, m["wq"][l]).view(b, t, h, d)).transpose(1, 2)
        k = rope(F.linear(n, m["wk"][l]).view(b, t, kv, d)).transpose(1, 2)
        v = F.linear(n, m["wv"][l]).view(b, t, kv, d).transpose(1, 2)
        k = k.repeat_interleave(h // kv, 1)
        v = v.repeat_interleave(h // kv, 1)
        s = (q / math.sqrt(d)) @ k.transpose(-1, -2)
        p = s.masked_fill(mask, torch.finfo(s.dtype).min).softmax(-1)
        z = (p @ v).transpose(1, 2).reshape(b, t, h * d)
        x = x + F.linear(z, m["wo"][l])
        n = rms(x, m["ln2"][l])
        x = x + F.linear(F.silu(F.linear(n, m["w1"][l])) * F.linear(n, m["w3"][l]), m["w2"][l])
    return F.linear(rms(x, m["norm"]), m["emb"])


def random_gpt2(gen, d=768, layers=12, vocab=50257, ctx=1024, mlp=3072):
    def r(*shape):
        return torch.randn(*shape, generator=gen) * 0.02

    m = {"wte": r(vocab, d), "wpe": r(ctx, d), "lnf": (torch.ones(d), torch.zeros(d)), "layers": []}
    for _ in range(layers):
        m["layers"].append({
            "ln1": (torch.ones(d), torch.zeros(d)), "ln2": (torch.ones(d), torch.zeros(d)),
            "q": r(d, d), "k": r(d, d), "v": r(d, d), "bq": r(d), "bk": r(d), "bv": r(d),
            "o": r(d, d), "bo": r(d), "fc": r(mlp, d), "bfc": r(mlp), "proj": r(d, mlp), "bproj": r(d)})
    return m


def gpt2_forward(m, tokens, heads=12):
    b, t = tokens.shape
    d = m["wte"].shape[1]
    hd = d // heads
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    x = F.embedding(tokens, m["wte"]) + m["wpe"][:t]
    for L in m["layers"]:
        n = F.layer_norm(x, (d,), *L["ln1"], 1e-5)
        q = F.linear(n, L["q"], L["bq"]).view(b, t, heads, hd).transpose(1, 2)
        k = F.linear(n, L["k"], L["bk"]).view(b, t, heads, hd).transpose(1, 2)
        v = F.linear(n, L["v"], L["bv"]).view(b, t, heads, hd).transpose(1, 2)
        s = (q / math.sqrt(hd)) @ k.transpose(-1, -2)
        p = s.masked_fill(mask, torch.finfo(s.dtype).min).softmax(-1)
        x = x + F.linear((p @ v).transpose(1, 2).reshape(b, t, d), L["o"], L["bo"])
        n = F.layer_norm(x, (d,), *L["ln2"], 1e-5)
        x = x + F.linear(F.gelu(F.linear(n, L["fc"], L["bfc"]), approximate="tanh"), L["proj"],
                         L["bproj"])
    return F.linear(F.layer_norm(x, (d,), *m["lnf"], 1e-5), m["wte"])


def timed(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        stories = load_llama2c(args.model)
        tokens = torch.randint(0, 512, (32, 256), generator=gen)
        s = timed(lambda: llama2c_forward(stories, tokens), args.reps)
        print("stories260K", tokens.numel() / s)
        gpt2 = random_gpt2(gen)
        tokens = torch.randint(0, 50257, (8, 128), generator=gen)
        s = timed(lambda: gpt2_forward(gpt2, tokens), args.reps)
        print("gpt2-small", tokens.numel() / s)


if __name__ == "__main__":
    main()

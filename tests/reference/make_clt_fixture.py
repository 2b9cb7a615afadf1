"""Writes two cross-layer transcoder checkpoints in the original's folder layout, made from the
spec's shapes (lmsaes-spec.md §2.4, "Checkpoint format") without saes's writer, and the outputs a
plain float64 implementation of the original's maths gives on a fixed input:

    tests/data/reference_clt_jumprelu/{config.json, sae_weights.safetensors}
    tests/data/reference_clt_layertopk/{config.json, sae_weights.safetensors}
    tests/data/reference_clt_expected.json

Both folders hold the same weights (L=3 layers, d_model=4, d_sae=6): W_E [L,d,S], b_E [L,S],
W_D.{t} [t+1,S,d], b_D.{t} [d], the 0-d dataset_average_activation_norm.<hook> per hook and, for
JumpReLU, activation_function.log_jumprelu_threshold [L,S]. config.json has the original's
CLTConfig keys (no device, dtype, d_sae). The maths (spec §2.1, §2.4, §3.3):
    x_l ← x_l·√d/n̄_in[l]  (dataset-wise),  h[l] = x_l·W_E[l] + b_E[l],
    N[l,i] = sqrt(Σ_{t≥l} ‖W_D[t][l,i]‖²),  s = h·N  (sparsity_include_decoder_norm),
    jumprelu: f = h·[s > exp(log θ)];  layertopk: f = h at the k largest positive s per token
    over all (layer, feature) entries,
    ŷ[t] = Σ_{l≤t} f[l]·W_D[t][l] + b_D[t]  (label-normalized units, as `decode` returns).
The script checks that no score lies within 1e-3 of its threshold (or of the k-th/(k+1)-th
boundary), so float32 evaluation selects the same entries.

How it was run (dev machine, Debian bookworm, Python 3.11, standard library only):
    python3 tests/reference/make_clt_fixture.py tests/data
Deterministic: a fixed linear congruential generator, no randomness from the environment.
"""
import json
import math
import os
import struct
import sys

L, D, S, N = 3, 4, 6, 5
TOP_K = 5
HOOKS_IN = [f"blocks.{l}.ln2.hook_normalized" for l in range(L)]
HOOKS_OUT = [f"blocks.{l}.hook_mlp_out" for l in range(L)]
NORM_IN = [1.7, 2.3, 3.1]
NORM_OUT = [0.9, 1.4, 2.2]


class Lcg:
    """Numerical Recipes' 32-bit LCG, mapped to uniform floats in [-1, 1)."""

    def __init__(self, seed):
        self.state = seed

    def uniform(self):
        self.state = (1664525 * self.state + 1013904223) % 2**32
        return self.state / 2**31 - 1.0


def f32(v):
    """v rounded to float32, as stored."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def tensor(gen, shape, scale, offset=0.0):
    """Nested lists of float32-representable values."""
    if len(shape) == 1:
        return [f32(offset + scale * gen.uniform()) for _ in range(shape[0])]
    return [tensor(gen, shape[1:], scale, offset) for _ in range(shape[0])]


def flatten(t):
    return [v for x in t for v in flatten(x)] if isinstance(t, list) else [t]


def shape_of(t):
    return [len(t)] + shape_of(t[0]) if isinstance(t, list) else []


def write_safetensors(path, tensors, metadata):
    """The published layout: u64 LE header length, JSON header (8-byte padded), data region."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        values = flatten(tensors[name])
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape_of(tensors[name]),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def config(act_fn):
    return {"sae_type": "clt", "d_model": D, "expansion_factor": S / D, "use_decoder_bias": True,
            "act_fn": act_fn, "norm_activation": "dataset-wise",
            "sparsity_include_decoder_norm": True, "top_k": TOP_K,
            "use_triton_kernel": False, "sparsity_threshold_for_triton_spmm_kernel": 0.996,
            "jumprelu_threshold_window": 2.0, "hook_points_in": HOOKS_IN,
            "hook_points_out": HOOKS_OUT, "init_cross_layer_decoder_all_zero": False,
            "decode_with_csr": False, "sparsity_threshold_for_csr": 0.05}


def main(out_dir):
    gen = Lcg(20261207)
    W_E = tensor(gen, [L, D, S], 0.6)
    b_E = tensor(gen, [L, S], 0.2, 0.1)
    W_D = [tensor(gen, [t + 1, S, D], 0.5) for t in range(L)]
    b_D = [tensor(gen, [D], 0.1) for _ in range(L)]
    log_theta = tensor(gen, [L, S], 0.3, math.log(0.4))
    x_raw = tensor(gen, [N, L, D], 2.0)

    norm = [[math.sqrt(sum(W_D[t][l][i][j] ** 2 for t in range(l, L) for j in range(D)))
             for i in range(S)] for l in range(L)]
    x = [[[x_raw[n][l][j] * math.sqrt(D) / NORM_IN[l] for j in range(D)] for l in range(L)]
         for n in range(N)]
    h = [[[b_E[l][i] + sum(x[n][l][j] * W_E[l][j][i] for j in range(D)) for i in range(S)]
          for l in range(L)] for n in range(N)]
    s = [[[h[n][l][i] * norm[l][i] for i in range(S)] for l in range(L)] for n in range(N)]

    def jumprelu():
        f = [[[0.0] * S for _ in range(L)] for _ in range(N)]
        for n in range(N):
            for l in range(L):
                for i in range(S):
                    theta = math.exp(log_theta[l][i])
                    assert abs(s[n][l][i] - theta) > 1e-3, "score too close to its threshold"
                    f[n][l][i] = h[n][l][i] if s[n][l][i] > theta else 0.0
        return f

    def layertopk():
        f = [[[0.0] * S for _ in range(L)] for _ in range(N)]
        for n in range(N):
            order = sorted(((s[n][l][i], l, i) for l in range(L) for i in range(S)), reverse=True)
            assert order[TOP_K - 1][0] - order[TOP_K][0] > 1e-3, "k-th and (k+1)-th too close"
            for score, l, i in order[:TOP_K]:
                if score > 0:
                    f[n][l][i] = h[n][l][i]
        return f

    def decode(f):
        return [[[b_D[t][j] + sum(f[n][l][i] * W_D[t][l][i][j] for l in range(t + 1)
                                  for i in range(S)) for j in range(D)] for n in range(N)]
                for t in range(L)]

    expected = {"x": x_raw, "hooks_in": HOOKS_IN, "hooks_out": HOOKS_OUT}
    for act_fn, select in (("jumprelu", jumprelu), ("layertopk", layertopk)):
        f = select()
        assert any(v != 0 for v in flatten(f)) and any(v == 0 for v in flatten(f))
        expected[act_fn] = {"feature_acts": f, "reconstruction": decode(f)}
        folder = os.path.join(out_dir, f"reference_clt_{act_fn}")
        os.makedirs(folder, exist_ok=True)
        tensors = {"W_E": W_E, "b_E": b_E}
        for t in range(L):
            tensors[f"W_D.{t}"] = W_D[t]
            tensors[f"b_D.{t}"] = b_D[t]
        if act_fn == "jumprelu":
            tensors["activation_function.log_jumprelu_threshold"] = log_theta
        for hook, value in zip(HOOKS_IN + HOOKS_OUT, NORM_IN + NORM_OUT):
            tensors[f"dataset_average_activation_norm.{hook}"] = f32(value)
        write_safetensors(os.path.join(folder, "sae_weights.safetensors"), tensors,
                          {"format": "pt"})
        with open(os.path.join(folder, "config.json"), "w") as out:
            json.dump(config(act_fn), out, indent=2)
            out.write("\n")
    with open(os.path.join(out_dir, "reference_clt_expected.json"), "w") as out:
        json.dump(expected, out, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data")

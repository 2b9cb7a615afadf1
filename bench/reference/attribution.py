# PyTorch eager reference for bench/attribution.cpp: circuit tracing of one prompt over a local
# replacement model (docs/circuits.md), written from the method's math with plain torch ops.
#   record: one forward of the prompt keeps every attention pattern and every norm's 1/denominator,
#     the MLP inputs (ln2 normalized, before its weight), the MLP outputs and the logits;
#     transcoders (TopK on h·‖W_D‖, per layer, position 0 zeroed) give the features, the
#     reconstruction and the error = MLP out − reconstruction (position 0: a constant).
#   frozen forward: patterns and scales as constants, the embedding and every MLP output as leaves
#     ([batch, seq, d], the prompt replicated), stopping after the deepest hook a target reads.
#   targets: the salient logits (most probable until 0.95, at most 10; the demeaned unembedding
#     column times ln_final's weight, read at ln_final normalized) and features (encoder rows at
#     the transcoder input); one target per batch row, one backward per batch.
#   edges: embedding grad·W_E[tok]; error grad·error; feature act·(grad·W_D row), in float64.
#   budget: all features, or greedily the most influential not yet computed (influence =
#     Σ_k w·Â^k, Â the row-normalised |A|, w the logit probabilities) before each batch.
# Workloads "model:seq:expansion:k:batch:budget" (model stories260K: the real llama2.c .bin from
# $SAES_BENCH_STORIES260K or $SAES_TEST_ASSETS; gpt2-small: random weights). Prints per workload
# `<workload> <wall_s> <cpu_s>` (best of --reps after a warm-up: construction + attribution) and
# `<workload>:passes|nodes|features|logits|rss_mb <value> 0`. Run with /usr/bin/python3.
import argparse
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_forward import load_llama2c, random_gpt2  # noqa: E402

EPS = 1e-5
STORIES_PROMPT = [1, 403, 407, 261, 378, 432, 326, 381, 261, 370, 328, 426, 326, 286, 261, 376]
GPT2_PROMPT = [50256, 464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 383, 1334, 318,
               257, 1110]


def prompt(model, seq):
    ids = list(STORIES_PROMPT if model == "stories260K" else GPT2_PROMPT)
    ids = ids[:seq]
    while len(ids) < seq:
        ids.append(ids[len(ids) % 15 + 1])
    return torch.tensor(ids)


class Llama:
    """stories260K: RMSNorm, rotary (interleaved pairs), GQA, SiLU-gated MLP, tied unembedding."""

    def __init__(self, m):
        self.m = m
        self.n_layers, self.d = m["n_layers"], m["dim"]
        self.w_u, self.lnf_w = m["emb"], m["norm"]

    def scale(self, x):
        return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)

    def record(self, tokens):
        m, t = self.m, tokens.shape[0]
        h, kv, hd = m["n_heads"], m["n_kv"], m["head"]
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.arange(t).float()[:, None] * inv
        cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]

        def rope(x):
            a, c = x[..., 0::2], x[..., 1::2]
            return torch.stack([a * cos - c * sin, a * sin + c * cos], -1).flatten(-2)

        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        rec = {"scales": [], "patterns": [], "ln2": [], "mlp_out": []}
        x = F.embedding(tokens, m["emb"])
        rec["embed"] = x
        for l in range(self.n_layers):
            s1 = self.scale(x)
            n = x * s1 * m["ln1"][l]
            q = rope(F.linear(n, m["wq"][l]).view(t, h, hd)).transpose(0, 1)
            k = rope(F.linear(n, m["wk"][l]).view(t, kv, hd)).transpose(0, 1)
            v = F.linear(n, m["wv"][l]).view(t, kv, hd).transpose(0, 1)
            k, v = k.repeat_interleave(h // kv, 0), v.repeat_interleave(h // kv, 0)
            s = (q / math.sqrt(hd)) @ k.transpose(-1, -2)
            p = s.masked_fill(mask, torch.finfo(s.dtype).min).softmax(-1)
            x = x + F.linear((p @ v).transpose(0, 1).reshape(t, h * hd), m["wo"][l])
            s2 = self.scale(x)
            n2 = x * s2
            out = F.linear(F.silu(F.linear(n2 * m["ln2"][l], m["w1"][l])) *
                           F.linear(n2 * m["ln2"][l], m["w3"][l]), m["w2"][l])
            x = x + out
            rec["scales"].append((s1, s2))
            rec["patterns"].append(p)
            rec["ln2"].append(n2)
            rec["mlp_out"].append(out)
        sf = self.scale(x)
        rec["final_scale"] = sf
        rec["logits"] = F.linear(x * sf * m["norm"], m["emb"])
        return rec

    def frozen(self, rec, e, mlps, stop):
        """Captures {('ln2', l): [B, T, d]} up to layer `stop`, or 'final' when stop is None."""
        m = self.m
        b, t, _ = e.shape
        h, kv, hd = m["n_heads"], m["n_kv"], m["head"]
        caps = {}
        x = e
        for l in range(self.n_layers):
            s1, s2 = rec["scales"][l]
            n = x * s1 * m["ln1"][l]
            v = F.linear(n, m["wv"][l]).view(b, t, kv, hd).transpose(1, 2)
            v = v.repeat_interleave(h // kv, 1)
            z = (rec["patterns"][l] @ v).transpose(1, 2).reshape(b, t, h * hd)
            x = x + F.linear(z, m["wo"][l])
            caps[("ln2", l)] = x * s2
            if stop == l:
                return caps
            x = x + mlps[l]
        caps["final"] = x * rec["final_scale"]
        return caps


class Gpt2:
    """GPT-2 small shape: LayerNorm, learned positions, GELU MLP, tied unembedding."""

    def __init__(self, m, heads=12):
        self.m, self.heads = m, heads
        self.n_layers, self.d = len(m["layers"]), m["wte"].shape[1]
        self.w_u, self.lnf_w = m["wte"], m["lnf"][0]

    def centred_scale(self, x):
        c = x - x.mean(-1, keepdim=True)
        return c, torch.rsqrt(c.pow(2).mean(-1, keepdim=True) + EPS)

    def record(self, tokens):
        m, t, d, h = self.m, tokens.shape[0], self.d, self.heads
        hd = d // h
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        rec = {"scales": [], "patterns": [], "ln2": [], "mlp_out": []}
        e = F.embedding(tokens, m["wte"])
        rec["embed"] = e
        x = e + m["wpe"][:t]
        for L in m["layers"]:
            c, s1 = self.centred_scale(x)
            n = c * s1 * L["ln1"][0] + L["ln1"][1]
            q = F.linear(n, L["q"], L["bq"]).view(t, h, hd).transpose(0, 1)
            k = F.linear(n, L["k"], L["bk"]).view(t, h, hd).transpose(0, 1)
            v = F.linear(n, L["v"], L["bv"]).view(t, h, hd).transpose(0, 1)
            s = (q / math.sqrt(hd)) @ k.transpose(-1, -2)
            p = s.masked_fill(mask, torch.finfo(s.dtype).min).softmax(-1)
            x = x + F.linear((p @ v).transpose(0, 1).reshape(t, d), L["o"], L["bo"])
            c, s2 = self.centred_scale(x)
            n2 = c * s2
            out = F.linear(F.gelu(F.linear(n2 * L["ln2"][0] + L["ln2"][1], L["fc"], L["bfc"]),
                                  approximate="tanh"), L["proj"], L["bproj"])
            x = x + out
            rec["scales"].append((s1, s2))
            rec["patterns"].append(p)
            rec["ln2"].append(n2)
            rec["mlp_out"].append(out)
        c, sf = self.centred_scale(x)
        rec["final_scale"] = sf
        rec["logits"] = F.linear(c * sf * m["lnf"][0] + m["lnf"][1], m["wte"])
        return rec

    def frozen(self, rec, e, mlps, stop):
        m, d, h = self.m, self.d, self.heads
        b, t, _ = e.shape
        hd = d // h
        caps = {}
        x = e + m["wpe"][:t]
        for l, L in enumerate(m["layers"]):
            s1, s2 = rec["scales"][l]
            n = (x - x.mean(-1, keepdim=True)) * s1 * L["ln1"][0] + L["ln1"][1]
            v = F.linear(n, L["v"], L["bv"]).view(b, t, h, hd).transpose(1, 2)
            z = (rec["patterns"][l] @ v).transpose(1, 2).reshape(b, t, d)
            x = x + F.linear(z, L["o"], L["bo"])
            caps[("ln2", l)] = (x - x.mean(-1, keepdim=True)) * s2
            if stop == l:
                return caps
            x = x + mlps[l]
        caps["final"] = (x - x.mean(-1, keepdim=True)) * rec["final_scale"]
        return caps


def random_transcoders(n_layers, d, expansion, gen):
    s, bound = d * expansion, 1.0 / math.sqrt(d)
    out = []
    for _ in range(n_layers):
        out.append({"W_E": (torch.rand(d, s, generator=gen) * 2 - 1) * bound, "b_E": torch.zeros(s),
                    "W_D": (torch.rand(s, d, generator=gen) * 2 - 1) * bound, "b_D": torch.zeros(d)})
    return out


class Replacement:
    """The prompt's replacement model: recorded state, features, errors (construction)."""

    def __init__(self, model, tokens, tcs, k):
        self.model, self.tokens, self.tcs = model, tokens, tcs
        self.T, self.L = tokens.shape[0], model.n_layers
        with torch.no_grad():
            self.rec = model.record(tokens)
            self.errors, feats = [], []
            for l, tc in enumerate(tcs):
                x = self.rec["ln2"][l]
                hpre = x @ tc["W_E"] + tc["b_E"]
                sc = hpre * tc["W_D"].norm(dim=1)
                mask = torch.zeros_like(hpre).scatter_(-1, sc.topk(k, dim=-1).indices, 1.0)
                f = hpre * mask * (sc > 0)
                f[0] = 0
                err = self.rec["mlp_out"][l] - (f @ tc["W_D"] + tc["b_D"])
                err[0] = 0
                self.errors.append(err)
                nz = f.nonzero()  # (position, index), sorted
                feats.append((nz[:, 0], nz[:, 1], f[nz[:, 0], nz[:, 1]]))
        self.feats = feats  # per layer: positions, indices, activations
        self.n_per_layer = [p.numel() for p, _, _ in feats]
        self.offsets = [sum(self.n_per_layer[:l]) for l in range(self.L)]
        self.F = sum(self.n_per_layer)
        self.layer_of = torch.cat([torch.full((n,), l) for l, n in enumerate(self.n_per_layer)])
        self.flat = torch.cat([torch.stack([p, i], 1) for p, i, _ in feats])  # [F, 2]

    def feature_target(self, c):
        l = int(self.layer_of[c])
        pos, idx = (int(v) for v in self.flat[c])
        return ("ln2", l), pos, self.tcs[l]["W_E"][:, idx].double()

    def rows(self, targets, n_nodes, batch_size, counter):
        T, L, d = self.T, self.L, self.model.d
        embed, mlp_out = self.rec["embed"], self.rec["mlp_out"]
        err_col, emb_col = self.F, self.F + L * T
        groups = []  # per layer: feature columns, positions, decoder rows × activation (float64)
        for l, (pos, idx, act) in enumerate(self.feats):
            cols = torch.arange(self.offsets[l], self.offsets[l] + pos.numel())
            groups.append((cols, pos, self.tcs[l]["W_D"][idx].double() * act.double()[:, None]))
        out = torch.zeros(len(targets), n_nodes)
        for b0 in range(0, len(targets), batch_size):
            batch = targets[b0:b0 + batch_size]
            nb = len(batch)
            e = embed.expand(nb, T, d).clone().requires_grad_()
            m = [o.expand(nb, T, d).clone().requires_grad_() for o in mlp_out]
            stop = None if any(h == "final" for h, _, _ in batch) else max(h[1] for h, _, _ in batch)
            with torch.enable_grad():
                caps = self.model.frozen(self.rec, e, m, stop)
                objective = sum((caps[h][b, p].double() * v).sum()
                                for b, (h, p, v) in enumerate(batch))
                objective.backward()
            counter[0] += 1
            block = out[b0:b0 + nb]
            block[:, emb_col:emb_col + T] = (e.grad.double() * embed.double()).sum(-1)
            for l in range(L):
                if m[l].grad is None:
                    continue
                g = m[l].grad.double()
                block[:, err_col + l * T:err_col + (l + 1) * T] = (g * self.errors[l].double()).sum(-1)
                cols, pos, dec = groups[l]
                block[:, cols] = torch.einsum("bnd,nd->bn", g[:, pos], dec).float()
        return out

    def attribute(self, batch_size, budget, desired=0.95, max_logits=10):
        T, L, Fn = self.T, self.L, self.F
        probs = self.rec["logits"][T - 1].double().softmax(0)
        top_p, top_i = probs.topk(max_logits)
        cum = top_p.cumsum(0)
        n_logits = int((cum < desired).sum()) + 1
        ids = top_i[:min(n_logits, max_logits)]
        N = Fn + L * T + T + ids.numel()
        first_logit = N - ids.numel()
        A = torch.zeros(N, N)
        w = torch.zeros(N, dtype=torch.float64)
        w[first_logit:] = probs[ids]
        w_u = self.model.w_u.double()
        demeaned = (w_u[ids] - w_u.mean(0)) * self.model.lnf_w.double()
        counter = [0]
        logit_targets = [("final", T - 1, demeaned[i]) for i in range(ids.numel())]
        A[first_logit:] = self.rows(logit_targets, N, batch_size, counter)
        budget = Fn if budget == 0 else min(budget, Fn)
        visited = torch.zeros(Fn, dtype=torch.bool)
        done = 0
        while done < budget:
            take = min(batch_size, budget - done)
            if budget == Fn:
                pick = list(range(done, done + take))
            else:
                a = A.double().abs()
                a = a / a.sum(1, keepdim=True).clamp_min(1e-10)
                cur = w @ a
                infl = cur.clone()
                for _ in range(N):
                    if not bool(cur.any()):
                        break
                    cur = cur @ a
                    infl += cur
                order = torch.sort(infl[:Fn], descending=True, stable=True).indices
                pick = order[~visited[order]][:take].tolist()
            visited[pick] = True
            r = self.rows([self.feature_target(c) for c in pick], N, batch_size, counter)
            A[pick] = r
            done += len(pick)
        return {"passes": counter[0], "nodes": N, "features": Fn, "logits": ids.numel(), "A": A}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workloads", default="stories260K:16:8:16:32:0,gpt2-small:16:8:32:64:1024")
    ap.add_argument("--model", default=os.environ.get("SAES_BENCH_STORIES260K") or os.path.join(
        os.environ.get("SAES_TEST_ASSETS", ""), "llama2c-stories260K", "stories260K.bin"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for spec in a.workloads.split(","):
        name, seq, expansion, k, batch, budget = spec.split(":")
        seq, expansion, k, batch, budget = int(seq), int(expansion), int(k), int(batch), int(budget)
        gen = torch.Generator().manual_seed(0)
        model = Llama(load_llama2c(a.model)) if name == "stories260K" else Gpt2(random_gpt2(gen))
        tcs = random_transcoders(model.n_layers, model.d, expansion, gen)
        tokens = prompt(name, seq)
        result = {}

        def run():
            rm = Replacement(model, tokens, tcs, k)
            result.update(rm.attribute(batch, budget))

        run()
        best_w, best_c = float("inf"), float("inf")
        for _ in range(a.reps):
            w0, c0 = time.perf_counter(), time.process_time()
            run()
            best_w = min(best_w, time.perf_counter() - w0)
            best_c = min(best_c, time.process_time() - c0)
        print(spec, best_w, best_c)
        for key in ("passes", "nodes", "features", "logits"):
            print(f"{spec}:{key} {result[key]} 0")
        print(f"{spec}:rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} 0",
              flush=True)


if __name__ == "__main__":
    main()

# PyTorch eager reference for bench/clt_step.cpp: one cross-layer transcoder training step of the
# same math (spec §2.4): dataset-normalized inputs [N, L, d] and labels [L, N, d], h = x W_E + b_E
# per layer, decoder-norm gating with no-grad norms N[l] = sqrt(Σ_{t>=l} ‖W_D[t][l]‖²), TopK per
# token and layer (topk) or over all layers (layertopk), ŷ[t] = Σ_{l<=t} f[l] W_D[t][l] + b_D[t],
# l_rec = mean over layers and tokens of Σ_d (ŷ − y)², autograd, torch.optim.Adam.
# Prints `<act> <L> <d> <d_sae> <batch> <k> <wall_s_per_step> <cpu_s_per_step>` per workload.
import argparse
import math
import time

import torch


def step_fn(act, L, d, s, k, gen, x, y):
    W_E = ((torch.rand(L, d, s, generator=gen) * 2 - 1) / math.sqrt(s)).requires_grad_()
    b_E = torch.zeros(L, s, requires_grad=True)
    W_D = [((torch.rand(t + 1, s, d, generator=gen) * 2 - 1) / math.sqrt(L * d)).requires_grad_()
           for t in range(L)]
    b_D = [torch.zeros(d, requires_grad=True) for _ in range(L)]
    opt = torch.optim.Adam([W_E, b_E, *W_D, *b_D], lr=1e-4)

    def step():
        with torch.no_grad():
            sq = torch.zeros(L, s)
            for t in range(L):
                sq[: t + 1] += W_D[t].pow(2).sum(-1)
            n = sq.sqrt()
        h = torch.einsum("nld,lds->nls", x, W_E) + b_E
        sc = h * n
        if act == "topk":
            idx = sc.topk(k, dim=-1).indices
            mask = torch.zeros_like(h).scatter_(-1, idx, 1.0) * (sc > 0)
        else:  # layertopk
            N = h.shape[0]
            flat = sc.reshape(N, L * s)
            idx = flat.topk(k, dim=-1).indices
            mask = (torch.zeros_like(flat).scatter_(-1, idx, 1.0) * (flat > 0)).view(N, L, s)
        f = h * mask
        loss = 0.0
        for t in range(L):
            yhat = torch.einsum("nls,lsd->nd", f[:, : t + 1], W_D[t]) + b_D[t]
            loss = loss + (yhat - y[t]).pow(2).sum(-1).mean()
        loss = loss / L
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    return step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--workloads", default="topk:5:64:1024:4096:16")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for w in a.workloads.split(","):
        act, L, d, s, n, k = w.split(":")
        L, d, s, n, k = int(L), int(d), int(s), int(n), int(k)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n, L, d, generator=gen)
        y = torch.randn(L, n, d, generator=gen)
        step = step_fn(act, L, d, s, k, gen, x, y)
        step()
        best_w, best_c = float("inf"), float("inf")
        for _ in range(a.reps):
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            best_w = min(best_w, time.perf_counter() - w0)
            best_c = min(best_c, time.process_time() - c0)
        print(act, L, d, s, n, k, best_w, best_c, flush=True)


if __name__ == "__main__":
    main()

# PyTorch eager reference for bench/molt_step.cpp: one MoLT training step of the same math
# (spec §2.5): h = x W_E + b_E, decoder-norm gating with n_i = ‖U_i V_i‖_F (from the r×r Grams
# UᵀU and VVᵀ, differentiable: forming the d×d products does not fit at d = 768), TopK on h·n,
# x̂ = Σ_i f_i U_i (V_i x) + b_D per rank group by einsum, l_rec = mean over tokens of
# Σ_d (x̂ − y)², autograd, torch.optim.Adam.
# Workload "r1xc1+r2xc2+...:d:batch:k". Prints `<workload> <wall_s_per_step> <cpu_s_per_step>`.
import argparse
import math
import time

import torch


def parse_ranks(text):
    return [(int(r), int(c)) for r, c in (g.split("x") for g in text.split("+"))]


def step_fn(groups, d, k, gen, x, y):
    s = sum(c for _, c in groups)
    bound = 1 / math.sqrt(s)
    W_E = ((torch.rand(d, s, generator=gen) * 2 - 1) * bound).requires_grad_()
    b_E = torch.zeros(s, requires_grad=True)
    U = [((torch.rand(c, d, r, generator=gen) * 2 - 1) * bound).requires_grad_() for r, c in groups]
    V = [((torch.rand(c, r, d, generator=gen) * 2 - 1) * bound).requires_grad_() for r, c in groups]
    b_D = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([W_E, b_E, *U, *V, b_D], lr=1e-4)

    def step():
        n = torch.cat([((u.transpose(1, 2) @ u) * (v @ v.transpose(1, 2))).sum((1, 2)).sqrt()
                       for u, v in zip(U, V)])
        h = x @ W_E + b_E
        sc = h * n
        idx = sc.topk(k, dim=-1).indices
        mask = torch.zeros_like(h).scatter_(-1, idx, 1.0) * (sc > 0).detach()
        f = h * mask
        xhat = b_D.expand(x.shape[0], d)
        off = 0
        for (r, c), u, v in zip(groups, U, V):
            p = torch.einsum("nd,crd->ncr", x, v) * f[:, off:off + c, None]
            xhat = xhat + torch.einsum("ncr,cdr->nd", p, u)
            off += c
        loss = (xhat - y).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    return step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--workloads", default="1x256+2x128+4x64+8x32:64:4096:16")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for w in a.workloads.split(","):
        ranks, d, n, k = w.split(":")
        groups, d, n, k = parse_ranks(ranks), int(d), int(n), int(k)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n, d, generator=gen)
        y = torch.randn(n, d, generator=gen)
        step = step_fn(groups, d, k, gen, x, y)
        step()
        best_w, best_c = float("inf"), float("inf")
        for _ in range(a.reps):
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            best_w = min(best_w, time.perf_counter() - w0)
            best_c = min(best_c, time.process_time() - c0)
        print(w, best_w, best_c, flush=True)


if __name__ == "__main__":
    main()

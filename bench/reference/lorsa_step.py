# PyTorch eager reference for bench/lorsa_step.cpp: one Lorsa training step of the same math
# (spec §2.6): q, k = x W_Q + b_Q, x W_K + b_K per QK head with RoPE on adjacent pairs, causal
# softmax(q·k / sqrt(d_qk)), one scalar value per OV head v = x W_V + b_V mixed by its QK head's
# pattern into z, TopK over the d_sae OV heads per token on z·‖W_O‖ (no-grad norms),
# x̂ = f W_O + b_D, l_rec = mean over tokens of Σ_d (x̂ − y)², autograd, torch.optim.Adam.
# Prints `<d> <n_qk> <d_qk> <d_sae> <batch> <ctx> <k> <wall_s_per_step> <cpu_s_per_step>`.
import argparse
import math
import time

import torch


def step_fn(d, H, D, S, B, T, k, gen, x, y):
    G = S // H
    bound = math.sqrt(6.0 / (d * D + H * D))
    W_Q = ((torch.rand(H, d, D, generator=gen) * 2 - 1) * bound).requires_grad_()
    W_K = ((torch.rand(H, d, D, generator=gen) * 2 - 1) * bound).requires_grad_()
    b_Q = torch.zeros(H, D, requires_grad=True)
    b_K = torch.zeros(H, D, requires_grad=True)
    W_V = (torch.randn(S, d, generator=gen) / math.sqrt(S)).requires_grad_()
    b_V = torch.zeros(S, requires_grad=True)
    W_O = (torch.randn(S, d, generator=gen) / math.sqrt(d)).requires_grad_()
    b_D = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([W_Q, W_K, b_Q, b_K, W_V, b_V, W_O, b_D], lr=1e-4)
    inv = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    cos, sin = ang.cos().float().view(1, T, 1, D // 2), ang.sin().float().view(1, T, 1, D // 2)
    causal = torch.ones(T, T, dtype=torch.bool).tril()

    def rope(t):  # [B, T, H, D], adjacent pairs (2j, 2j+1)
        a, b = t[..., 0::2], t[..., 1::2]
        return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)

    def step():
        q = rope(torch.einsum("btd,hde->bthe", x, W_Q) + b_Q).permute(0, 2, 1, 3)
        kk = rope(torch.einsum("btd,hde->bthe", x, W_K) + b_K).permute(0, 2, 1, 3)
        scores = (q @ kk.transpose(-1, -2)) / math.sqrt(D)
        A = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        v = (x @ W_V.t() + b_V).view(B, T, H, G).permute(0, 2, 1, 3)
        z = (A @ v).permute(0, 2, 1, 3).reshape(B * T, S)
        with torch.no_grad():
            sc = z * W_O.norm(dim=1)
            idx = sc.topk(k, dim=-1).indices
            mask = torch.zeros_like(z).scatter_(-1, idx, 1.0) * (sc > 0)
        f = z * mask
        xhat = f @ W_O + b_D
        loss = (xhat - y).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    return step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--workloads", default="64:8:8:512:16:128:16")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for w in a.workloads.split(","):
        d, H, D, S, B, T, k = (int(v) for v in w.split(":"))
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(B, T, d, generator=gen)
        y = torch.randn(B * T, d, generator=gen)
        step = step_fn(d, H, D, S, B, T, k, gen, x, y)
        step()
        best_w, best_c = float("inf"), float("inf")
        for _ in range(a.reps):
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            best_w = min(best_w, time.perf_counter() - w0)
            best_c = min(best_c, time.process_time() - c0)
        print(d, H, D, S, B, T, k, best_w, best_c, flush=True)


if __name__ == "__main__":
    main()

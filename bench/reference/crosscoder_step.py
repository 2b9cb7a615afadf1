# PyTorch eager reference for bench/crosscoder_step.cpp: one crosscoder training step of the same
# math (spec §2.3): a = Σ_h x_h W_E[h] + b_E[h], per-head TopK on a·‖W_D[h]‖ (differentiable
# norms), x̂_h = f_h W_D[h] + b_D[h], l_rec averaged over heads and tokens, autograd, Adam.
# Workload "H:d:d_sae:batch:k". Prints `<workload> <wall_s_per_step> <cpu_s_per_step>`.
import argparse
import time

import torch


def step_fn(H, d, s, k, gen, x):
    W_E = ((torch.rand(d, s, generator=gen) * 2 - 1) * 0.1).repeat(H, 1, 1).requires_grad_()
    b_E = torch.zeros(H, s, requires_grad=True)
    W_D = ((torch.rand(s, d, generator=gen) * 2 - 1) * 0.1).repeat(H, 1, 1).requires_grad_()
    b_D = torch.zeros(H, d, requires_grad=True)
    opt = torch.optim.Adam([W_E, b_E, W_D, b_D], lr=1e-4)
    xh = x.transpose(0, 1)  # [H, N, d]

    def step():
        n = W_D.norm(dim=-1)  # [H, S]
        a = torch.bmm(xh, W_E).sum(0) + b_E.sum(0)
        sc = a.unsqueeze(0) * n.unsqueeze(1)  # [H, N, S]
        idx = sc.topk(k, dim=-1).indices
        mask = torch.zeros_like(sc).scatter_(-1, idx, 1.0) * (sc > 0).detach()
        f = a.unsqueeze(0) * mask
        xhat = torch.bmm(f, W_D) + b_D.unsqueeze(1)
        loss = (xhat - xh).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    return step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--workloads", default="3:64:512:4096:16")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for w in a.workloads.split(","):
        H, d, s, n, k = (int(v) for v in w.split(":"))
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n, H, d, generator=gen)
        step = step_fn(H, d, s, k, gen, x)
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

# PyTorch eager reference for bench/train_step.cpp: one SAE training step (normalized input,
# encode with decoder-norm gating, decode, l_rec + λ·Σ f·‖W_D‖ (ReLU/JumpReLU) or l_rec (TopK,
# BatchTopK; both k = 32),
# autograd backward, torch.optim.Adam step). Run with /usr/bin/python3 (Debian python3-torch).
# Prints `<act> <d_model> <d_sae> <batch> <wall_s_per_step> <cpu_s_per_step>` per workload
# (best of --reps; CPU seconds = process time of all threads, robust on a loaded machine).
# On a GPU: --device cuda [--autocast bf16] (fp32 parameters, forward and loss under
# torch.autocast(bfloat16), the usual mixed-precision recipe); the step ends with a synchronize.
import argparse
import math
import time

import torch


class JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, log_t, eps):
        t = log_t.exp()
        ctx.save_for_backward(x, t)
        ctx.eps = eps
        return x * (x > t)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        win = ((x - t).abs() < ctx.eps / 2) & (x > 0)
        gt = (g * win * (-t / ctx.eps)).sum(0)
        return g * (x > t), gt * t, None


def step_fn(act, d, s, k, gen, x, device="cpu", autocast=None):
    W_E = (torch.rand(d, s, generator=gen) * 2 - 1).to(device).requires_grad_()
    W_D = (W_E.detach().t().clone() * 0.1).requires_grad_()
    b_E = torch.zeros(s, requires_grad=True, device=device)
    b_D = torch.zeros(d, requires_grad=True, device=device)
    params = [W_E, b_E, W_D, b_D]
    log_t = None
    if act == "jumprelu":
        log_t = torch.full((s,), math.log(0.1), requires_grad=True, device=device)
        params.append(log_t)
    opt = torch.optim.Adam(params, lr=1e-4)
    lam = 1e-4

    def normalize(x):
        return x * (math.sqrt(d) / x.norm(dim=-1).mean())

    if act == "relu1pct":  # a trained-like ReLU SAE: b_E puts ~1% of pre-activations above 0
        with torch.no_grad():
            h = normalize(x) @ W_E
            b_E -= h.mean(0) + 2.33 * h.std(0)
        act = "relu"

    def step(x):
        if autocast is None:
            return step_body(x)
        with torch.autocast(device_type=device, dtype=autocast):
            return step_body(x)

    def step_body(x):
        xn = normalize(x)
        h = xn @ W_E + b_E
        n = W_D.norm(dim=1)
        sg = h * n
        if act == "relu":
            f = torch.relu(sg) / n
        elif act == "jumprelu":
            f = JumpReLU.apply(sg, log_t, 2.0) / n
        elif act == "batchtopk":
            r = torch.relu(sg)
            idx = r.flatten().topk(k * r.shape[0], sorted=False).indices
            mask = torch.zeros_like(r).flatten().scatter_(0, idx, 1).view_as(r)
            f = r * mask / n
        else:
            r = torch.relu(sg)
            idx = r.topk(k, dim=-1, sorted=False).indices
            mask = torch.zeros_like(r).scatter_(-1, idx, 1)
            f = r * mask / n
        xhat = f @ W_D + b_D
        loss = (xhat.float() - xn.float()).pow(2).sum(-1).mean()
        if act not in ("topk", "batchtopk"):
            loss = loss + lam * (f * n).sum(-1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        return loss.item()

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--autocast", choices=["bf16", "fp16"], default=None)
    ap.add_argument("--workloads", default="relu:768:24576:4096,jumprelu:768:24576:4096,"
                    "topk:768:24576:4096,batchtopk:768:24576:4096")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[args.autocast]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for w in args.workloads.split(","):
        act, d, s, b = w.split(":")
        d, s, b = int(d), int(s), int(b)
        x = torch.randn(b, d, generator=gen).to(args.device)
        step = step_fn(act, d, s, 32, gen, x, args.device.split(":")[0], autocast)
        step(x)
        sync()
        best, best_cpu = 1e30, 1e30
        for _ in range(args.reps):
            t0, c0 = time.perf_counter(), time.process_time()
            step(x)
            sync()
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        print(f"{act} {d} {s} {b} {best:.6f} {best_cpu:.6f}", flush=True)


if __name__ == "__main__":
    main()

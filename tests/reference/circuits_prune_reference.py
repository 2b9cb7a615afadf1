"""Reference numbers for lib/saes/circuits/pruning_test.cpp: circuit-tracer's pruning (graph.py's
normalize_matrix, compute_influence, find_threshold, prune_graph, compute_graph_scores, as described
in docs/circuits.md) transcribed in numpy, float64, on the hand-made graph of
tests/support/circuit_graphs.cpp (small_graph). Deterministic, no inputs; numpy 1.24.2:

    python3 tests/reference/circuits_prune_reference.py

prints per (node_threshold, edge_threshold) the node influence, the kept nodes and edges and the
cumulative influence, then the replacement and completeness scores. The test hard-codes them.
"""
import numpy as np

N, E0, E1, E2, L0, L1 = 15, 10, 11, 12, 13, 14
N_FEATURES, N_ERRORS, N_KEEP_FROM = 4, 6, 10  # nodes >= N_KEEP_FROM: embeddings and logits


def err(layer, pos):
    return N_FEATURES + layer * 3 + pos


def graph():
    a = np.zeros((N, N))
    for t, s, v in [(0, E1, 2.0), (0, E0, 0.5), (1, E2, 1.0), (1, E1, -0.5),
                    (3, 0, 0.5), (3, 1, 1.5), (3, err(0, 2), 0.3), (3, E2, -0.2),
                    (L0, 3, 2.0), (L0, 1, 0.5), (L0, err(1, 2), 0.4), (L0, E2, 0.1), (L0, 2, 0.3),
                    (L1, 3, -1.0), (L1, 0, 0.3), (L1, E2, 0.2)]:
        a[t, s] = np.float32(v)  # the C++ graph holds float32 edges
    w = np.zeros(N)
    w[L0], w[L1] = 0.6, 0.3
    return a, w


def normalize(m):
    m = np.abs(m)
    return m / np.maximum(m.sum(1, keepdims=True), 1e-10)


def influence(ah, w):
    cur = w @ ah
    total = cur.copy()
    while cur.any():
        cur = cur @ ah
        total += cur
    return total


def find_threshold(scores, thr):
    s = np.sort(scores.ravel())[::-1]
    cum = np.cumsum(s) / s.sum()
    i = min(np.searchsorted(cum, thr), (s != 0).sum() - 1)
    return s[i]


def prune(a, w, node_thr, edge_thr):
    inf = influence(normalize(a), w)
    keep = inf >= find_threshold(inf, node_thr)
    keep[N_KEEP_FROM:] = True
    p = a.copy()
    p[~keep] = 0
    p[:, ~keep] = 0
    ph = normalize(p)
    scores = ph * (influence(ph, w) + w)[:, None]
    edges = scores >= find_threshold(scores, edge_thr)
    while True:
        old = keep.copy()
        edges[~keep] = False
        edges[:, ~keep] = False
        keep[:N_KEEP_FROM] &= edges[:, :N_KEEP_FROM].any(0)
        keep[:N_FEATURES] &= edges[:N_FEATURES].any(1)
        if (old == keep).all():
            break
    order = np.argsort(-inf, kind="stable")
    cum = np.zeros(N)
    cum[order] = np.cumsum(inf[order]) / inf.sum()
    return inf, keep, edges, cum


def main():
    np.set_printoptions(precision=9, suppress=True, linewidth=200)
    a, w = graph()
    for node_thr, edge_thr in [(0.8, 0.98), (1.0, 1.0), (1.0, 0.5)]:
        inf, keep, edges, cum = prune(a, w, node_thr, edge_thr)
        print(f"node_threshold {node_thr} edge_threshold {edge_thr}")
        print("  influence", inf)
        print("  kept nodes", np.nonzero(keep)[0].tolist())
        print("  kept edges (target, source)", [(int(t), int(s)) for t, s in zip(*np.nonzero(edges))])
        print("  cumulative", cum)
    ah = normalize(a)
    inf = influence(ah, w)
    tokens, errors = inf[E0:L0].sum(), inf[N_FEATURES:N_KEEP_FROM].sum()
    out = inf + w
    print("replacement", tokens / (tokens + errors))
    print("completeness", ((1 - ah[:, N_FEATURES:N_KEEP_FROM].sum(1)) * out).sum() / out.sum())


if __name__ == "__main__":
    main()

// Hand-made attribution graphs for the [circuits] tests: small enough to check by hand, with
// the reference values (tests/reference/circuits_prune_reference.py transcribes circuit-tracer's
// prune_graph in numpy) written next to each test.
#pragma once

#include "saes/circuits/graph.h"

namespace saes::testing {

/// 2 layers, 3 positions (tokens 1, 42, 17 = "<s>", " cat", " sat"), 15 nodes:
///   0 F(l0, p1, i5)  1 F(l0, p2, i7)  2 F(l1, p1, i9: no inputs)  3 F(l1, p2, i3)
///   4..9 errors (l, p) = 4 + 3l + p;  10..12 embeddings;  13 logit 100 (p=0.6), 14 logit 200
///   (p=0.3).
/// Edges (target ← source: weight): 0 ← 11: 2, 10: 0.5;  1 ← 12: 1, 11: −0.5;
///   3 ← 0: 0.5, 1: 1.5, err(0,2)=6: 0.3, 12: −0.2;
///   13 ← 3: 2, 1: 0.5, err(1,2)=9: 0.4, 12: 0.1, 2: 0.3;  14 ← 3: −1, 0: 0.3, 12: 0.2.
circuits::Graph small_graph();

/// 1 layer, 1 position: error (0,0) = node 0, embedding = node 1, logit (p=1) = node 2, with
/// logit ← error: 1 and logit ← embedding: 1 (replacement 0.5, completeness 0.75).
circuits::Graph one_layer_graph();

}  // namespace saes::testing

#!/usr/bin/env bash
# Data-parallel scaling of a training step: bench_dp_scaling on 1 rank, then under mpirun on N
# ranks (same global batch, same threads per rank), and the efficiency t1 / (N · tN).
# Usage: bench/dp_scaling.sh BUILD_DIR [N [d [d_sae [global_batch [steps [threads [act]]]]]]]
set -euo pipefail
build="${1:?usage: dp_scaling.sh BUILD_DIR [N d d_sae batch steps threads act]}"
n="${2:-2}"
args=("${3:-768}" "${4:-8192}" "${5:-4096}" "${6:-4}" "${7:-1}" "${8:-relu}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bin="$build/bench/bench_dp_scaling"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| workload (act:d:d_sae:global batch) | ranks | threads/rank | s/step | tokens/s | gradient bytes/rank/step | scalar bytes/rank/step |"
echo "|---|---|---|---|---|---|---|"
one="$("$bin" "${args[@]}")"
echo "$one"
many="$(mpirun --oversubscribe --bind-to none -np "$n" "$bin" "${args[@]}")"
echo "$many"
t1="$(echo "$one" | awk -F'|' '{print $5}')"
tn="$(echo "$many" | awk -F'|' '{print $5}')"
awk -v t1="$t1" -v tn="$tn" -v n="$n" \
  'BEGIN { printf "speed-up %.2fx on %d ranks, efficiency %.0f%% of ideal\n", t1 / tn, n, 100 * t1 / (n * tn) }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

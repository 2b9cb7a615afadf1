#!/usr/bin/env bash
# Feature-parallel memory per rank: bench_model_parallel on 1 rank, then under mpirun on each
# listed rank count (same dictionary, same batch). The state column is the dictionary's training
# state on one rank; "ratio" is that over the whole dictionary's (goal: 1/M plus small overhead).
# Usage: bench/model_parallel.sh BUILD_DIR ["2 4" [d [d_sae [batch [steps [threads [act [k]]]]]]]]
set -euo pipefail
build="${1:?usage: model_parallel.sh BUILD_DIR [\"2 4\" d d_sae batch steps threads act k]}"
ranks="${2:-2 4}"
args=("${3:-768}" "${4:-24576}" "${5:-1024}" "${6:-3}" "${7:-1}" "${8:-topk}" "${9:-32}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bin="$build/bench/bench_model_parallel"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| workload (act:d:d_sae:batch) | ranks | state MiB/rank | whole MiB | ratio | peak RSS MiB (max rank) | s/step | bytes sent/rank/step |"
echo "|---|---|---|---|---|---|---|---|"
"$bin" "${args[@]}"
for n in $ranks; do
  mpirun --oversubscribe --bind-to none -np "$n" "$bin" "${args[@]}"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

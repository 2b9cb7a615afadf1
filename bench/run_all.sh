#!/usr/bin/env bash
# The benchmark suite in one command: SAE training step (ReLU, JumpReLU, TopK, BatchTopK; saes
# dense and sparse steps vs PyTorch eager, plus sgemm peak and encoder share), LM forward vs
# PyTorch eager, circuit tracing (attribution) vs PyTorch eager, shard write/read.
# Usage: bench/run_all.sh [quick|full] [threads]
#   quick: d=256, d_sae=8192, batch 1024 (about a minute); full: d=768, d_sae=24576, batch 4096
#   (the issue's size; ~10 minutes on 2 idle cores). Needs the build in ${SAES_BUILD_DIR:-build}
#   (targets bench_train_step bench_lm_forward bench_attribution bench_shard_io) and
#   /usr/bin/python3 with torch; the LM forward and the attribution use stories260K from
#   ${SAES_TEST_ASSETS:-/work/shared/assets} when present (quick: the attribution on stories260K
#   only; full: also the GPT-2-small shape, a few minutes more).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SAES_BUILD_DIR:-$root/build}"
mode="${1:-quick}"
threads="${2:-2}"
cd "$root"
case "$mode" in
  quick) size="256:8192:1024"; reps=2 ;;
  full) size="768:24576:4096"; reps=2 ;;
  *) echo "usage: bench/run_all.sh [quick|full] [threads]" >&2; exit 2 ;;
esac
workloads="relu:$size,relu1pct:$size,jumprelu:$size,topk:$size,batchtopk:$size"
echo "# saes benchmark suite ($mode, $threads threads, $(date -u +%FT%TZ), load: $(cut -d' ' -f1-3 /proc/loadavg))"
echo
"$build/bench/bench_train_step" "$threads" "$reps" "$workloads"
echo
echo "## LM forward (saes vs PyTorch eager)"
echo
model="${SAES_TEST_ASSETS:-/work/shared/assets}/llama2c-stories260K/stories260K.bin"
if [ -f "$model" ]; then
  "$build/bench/bench_lm_forward" "$model" "$threads"
else
  "$build/bench/bench_lm_forward"
fi
echo
echo "## Attribution (circuit tracing, saes vs PyTorch eager)"
echo
if [ -f "$model" ]; then
  attribution="stories260K:16:8:16:32:0"
  [ "$mode" = full ] && attribution="$attribution,gpt2-small:16:8:32:64:1024"
else
  attribution="gpt2-small:16:8:32:64:1024"
fi
"$build/bench/bench_attribution" "$threads" "$reps" "$attribution" "$model"
echo
echo "## shard write/read"
echo
shard_rows=$([ "$mode" = quick ] && echo 4096 || echo 16384)
"$build/bench/bench_shard_io" "$shard_rows" 2 "$threads"

#!/usr/bin/env bash
# Soak: generate -> train -> analyze on stories260K, cycle after cycle, for at least SECONDS
# (default 1800). Every cycle generates shards from the test corpora (twice over), trains a TopK
# SAE on them with a checkpoint every 1/8 of the run, stops the trainer with SIGTERM in the middle
# and resumes it to completion, then analyzes the result. A sampler records every saes process's
# RSS every 2 s. Fails when a stage fails, when the resumed run does not complete, or when a stage's
# peak RSS in the last cycle exceeds its first-cycle peak by more than 10 % (growth = a leak).
#
#   SAES_TEST_ASSETS=../shared/assets bench/soak.sh [SECONDS] [WORK_DIR]
#
# Output: WORK_DIR/rss.csv (t_s, cycle, stage, rss_mib) and a Markdown table per cycle on stdout.
# docs/benchmarks.md "Soak" has a run's figures.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-1800}"
work="${2:-$root/build/soak}"
bin="${SAES_BIN:-$root/build/apps}"
assets="${SAES_TEST_ASSETS:?set SAES_TEST_ASSETS to the test assets folder}"
model="$assets/llama2c-stories260K/stories260K.bin"
tok="$assets/llama2c-stories260K/tok512.bin"
mkdir -p "$work"
cd "$work"

# One document per paragraph, every corpus twice (~5M tokens per cycle; SAES_SOAK_TEXT_BYTES
# cuts it, for a quick try of the script).
for pass in 1 2; do
  for f in "$assets"/corpora/tinystories/*.txt "$assets"/corpora/gutenberg-nltk/*.txt; do
    awk 'BEGIN { RS = "" } { gsub(/\n/, " "); print; print "<|endoftext|>" }' "$f"
  done
done >corpus.full
head -c "${SAES_SOAK_TEXT_BYTES:-100000000}" corpus.full >corpus.txt && rm corpus.full

stage_file="$work/stage"
echo "start 0" >"$stage_file"
rm -f rss.csv
echo "t_s,cycle,stage,rss_mib" >rss.csv
t0=$(date +%s)
( # sampler: the largest RSS among saes processes (one runs at a time), every 2 s
  while [ -f "$stage_file" ]; do
    rss=0
    for pid in $(pgrep -f "$bin/saes-" || true); do
      kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${kb:-0}" -gt "$rss" ] && rss=$kb
    done
    read -r stage cycle <"$stage_file" 2>/dev/null || true
    [ "$rss" -gt 0 ] && echo "$(($(date +%s) - t0)),$cycle,$stage,$((rss / 1024))" >>rss.csv
    sleep 2
  done
) &
sampler=$!
trap 'rm -f "$stage_file"; wait "$sampler" 2>/dev/null || true' EXIT

common=(--set logging.progress=off --threads "${SAES_SOAK_THREADS:-1}")
cycle=0
summary="| cycle | generate tokens | train steps (SIGTERM at) | resumed | EV | L0 | analyzed tokens | wall s |"
summary="$summary"$'\n'"|---:|---:|---|---|---:|---:|---:|---:|"
while [ $(($(date +%s) - t0)) -lt "$seconds" ] || [ "$cycle" -lt 2 ]; do
  cycle=$((cycle + 1))
  c0=$(date +%s)
  rm -rf gen tr an
  echo "generate $cycle" >"$stage_file"
  "$bin/saes-generate" "$root/configs/generate-stories260k.yaml" "${common[@]}" \
    --set "model.model_from_pretrained_path=$model" --set "model.tokenizer_path=$tok" \
    --set "dataset.paths=[$work/corpus.txt]" --set total_tokens=null --set output_dir=gen 2>gen.log
  gen_tokens=$(python3 -c 'import json; print(json.load(open("gen/manifest.json"))["n_tokens"])')

  echo "train $cycle" >"$stage_file"
  train_set=(--set 'activation_factory.sources=[{type: activations, name: gen, path: gen}]'
    --set "trainer.total_training_tokens=$gen_tokens" --set sae.expansion_factor=64
    --set trainer.n_checkpoints=8 --set trainer.check_point_save_mode=linear
    --set trainer.log_frequency=64 --set trainer.exp_result_path=tr)
  "$bin/saes-train" "$root/configs/train-stories260k-topk.yaml" "${common[@]}" "${train_set[@]}" 2>train.log &
  pid=$!
  # SIGTERM once the 4th of 8 checkpoints exists (the middle of the run).
  while kill -0 "$pid" 2>/dev/null && [ "$(ls tr/checkpoints 2>/dev/null | grep -c '^step_' || true)" -lt 4 ]; do sleep 1; done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid"
  stopped_at=$(grep -o 'interrupted by a signal after [0-9]* steps' train.log | grep -o '[0-9]*' || echo "?")
  echo "resume $cycle" >"$stage_file"
  "$bin/saes-train" --resume tr "${common[@]}" 2>resume.log
  grep -q 'completed after' resume.log || { echo "soak: cycle $cycle: the resumed run did not complete" >&2; exit 1; }
  steps=$(grep -o 'completed after [0-9]* steps' resume.log | grep -o '[0-9]*')
  last=$(tail -1 tr/metrics.jsonl)
  ev=$(python3 -c 'import json,sys; m = json.loads(sys.argv[1]); print("%.4f" % m["metrics/explained_variance"])' "$last")
  l0=$(python3 -c 'import json,sys; m = json.loads(sys.argv[1]); print("%.1f" % m["metrics/l0"])' "$last")

  echo "analyze $cycle" >"$stage_file"
  "$bin/saes-analyze" "$root/configs/analyze-stories260k.yaml" "${common[@]}" \
    --set sae.pretrained_name_or_path=tr --set "model.model_from_pretrained_path=$model" \
    --set "model.tokenizer_path=$tok" --set "datasets.tinystories.paths=[$work/corpus.txt]" \
    --set analyzer.total_analyzing_tokens=262144 --set output_dir=an 2>analyze.log
  [ -s an/default.sqlite ] || { echo "soak: cycle $cycle: no analysis database" >&2; exit 1; }
  summary="$summary"$'\n'"| $cycle | $gen_tokens | $steps ($stopped_at) | yes | $ev | $l0 | 262144 | $(($(date +%s) - c0)) |"
done
rm -f "$stage_file"
wait "$sampler" 2>/dev/null || true
trap - EXIT

echo "$summary"
echo
echo "| stage | peak RSS MiB, cycle 1 | peak RSS MiB, cycle $cycle | samples |"
echo "|---|---:|---:|---:|"
fail=0
for stage in generate train resume analyze; do
  first=$(awk -F, -v s="$stage" '$3 == s && $2 == 1 && $4 > m { m = $4 } END { print m + 0 }' rss.csv)
  lastc=$(awk -F, -v s="$stage" -v c="$cycle" '$3 == s && $2 == c && $4 > m { m = $4 } END { print m + 0 }' rss.csv)
  n=$(awk -F, -v s="$stage" '$3 == s' rss.csv | wc -l)
  echo "| $stage | $first | $lastc | $n |"
  awk -v a="$first" -v b="$lastc" 'BEGIN { exit !(b <= a * 1.1 + 8) }' || { echo "soak: $stage RSS grew from $first to $lastc MiB" >&2; fail=1; }
done
echo
echo "total: $(($(date +%s) - t0)) s, $cycle cycles; RSS samples in $work/rss.csv"
exit "$fail"

#!/usr/bin/env bash
# Runs every libFuzzer target (fuzz/*_fuzz.cpp) for SECONDS each and prints a table: executions,
# executions/s, corpus size and findings (crash/leak/timeout/oom files). docs/fuzzing.md.
#
#   bench/fuzz.sh [SECONDS] [TARGET...]      # default 60 s, every target
#   SAES_FUZZ_JOBS=2 bench/fuzz.sh 600       # two targets at a time
#
# Builds build-fuzz (cmake --preset fuzz: clang, ASan + UBSan) when needed. The corpus of each
# target grows in build-fuzz/corpus/<target>, seeded from fuzz/corpus/<target> (committed), the
# tree's own test files (tests/data, configs/) and, with SAES_TEST_ASSETS set, the test assets'
# tokenizers. Findings land in build-fuzz/findings/. Exit 1 when any target found something.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-60}"
shift || true
build="$root/build-fuzz"
jobs="${SAES_FUZZ_JOBS:-1}"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
[ -f "$build/CMakeCache.txt" ] || (cd "$root" && cmake --preset fuzz >/dev/null)
cmake --build "$build" -j "${SAES_JOBS:-2}" >/dev/null

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  for src in "$root"/fuzz/*_fuzz.cpp; do
    name="$(basename "$src" _fuzz.cpp)"
    targets+=("$name")
  done
fi
assets="${SAES_TEST_ASSETS:-}"
if [ -z "${SAES_FUZZ_TOKENIZERS:-}" ] && [ -n "$assets" ]; then
  export SAES_FUZZ_TOKENIZERS="$assets/tokenizers/gpt2/encoder.json:$assets/tokenizers/gpt-neox-20b/20B_tokenizer.json:$assets/llama2c-stories260K/tok512.model:$assets/llama2c-stories260K/tok512.bin"
fi

# seed TARGET DIR: the committed seeds plus the tree's (and assets') files of that kind.
seed() {
  local t="$1" dir="$2"
  mkdir -p "$dir"
  [ -d "$root/fuzz/corpus/$t" ] && cp -n "$root/fuzz/corpus/$t"/* "$dir"/ 2>/dev/null || true
  local i=0 f
  case "$t" in
    safetensors)
      for f in "$root"/tests/data/*.safetensors "$root"/tests/data/reference_clt_*/*.safetensors; do
        cp -n "$f" "$dir/tree-$((i++)).safetensors"
      done ;;
    shard)
      for f in "$root"/tests/data/shards-v1/*.saes; do cp -n "$f" "$dir/tree-$((i++)).saes"; done ;;
    manifest)
      cp -n "$root/tests/data/shards-v1/manifest.json" "$dir/tree-v1.json" ;;
    hf_config)
      for f in "$root"/tests/data/hf/*/config.json; do cp -n "$f" "$dir/tree-$((i++)).json"; done ;;
    config)  # first byte: 0 generate, 1 train, 2 analyze, 3 convert
      for f in "$root"/configs/*.yaml; do
        case "$(basename "$f")" in
          generate-*) p=0 ;; train-*) p=1 ;; analyze-*) p=2 ;; *) p=3 ;;
        esac
        { printf '%s' "$p"; cat "$f"; } > "$dir/tree-$(basename "$f")"
      done ;;
    encode)
      if [ -n "$assets" ]; then
        head -c 2000 "$assets/corpora/tinystories/tinystories_sample.txt" > "$dir/tinystories.txt"
      fi ;;
    sentencepiece)
      [ -n "$assets" ] && cp -n "$assets/llama2c-stories260K/tok512.model" "$dir/assets-tok512.model" ;;
    llama2c_tokenizer)
      [ -n "$assets" ] && cp -n "$assets/llama2c-stories260K/tok512.bin" "$dir/assets-tok512.bin" ;;
  esac
  return 0
}

run_one() {
  local t="$1" dir="$build/corpus/$1" log="$build/logs/$1.log"
  seed "$t" "$dir"
  mkdir -p "$build/findings" "$build/logs"
  export SAES_FUZZ_TMP="$build/tmp"
  mkdir -p "$SAES_FUZZ_TMP"
  # -timeout: one input over 10 s is a finding; -rss_limit_mb bounds memory per input.
  "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$build/findings/$t-" "$dir" \
    >"$log" 2>&1 || true
}

if [ "$jobs" -gt 1 ]; then
  export -f run_one seed
  export root build seconds assets
  printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
else
  for t in "${targets[@]}"; do run_one "$t"; done
fi

found=0
printf '| target | seconds | executions | exec/s | corpus files | findings |\n|---|---:|---:|---:|---:|---:|\n'
for t in "${targets[@]}"; do
  log="$build/logs/$t.log"
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{print $2}' | tail -1)"
  rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | awk '{print $2}' | tail -1)"
  corpus="$(find "$build/corpus/$t" -type f | wc -l)"
  n="$(find "$build/findings" -name "$t-*" -type f | wc -l)"
  [ -z "$runs" ] && { runs="(no stats: see $log)"; n=$((n + 1)); }
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$seconds" "$runs" "${rate:-?}" "$corpus" "$n"
  [ "$n" -eq 0 ] || found=1
done
exit "$found"

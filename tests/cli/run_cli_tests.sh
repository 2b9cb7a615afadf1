#!/usr/bin/env bash
# End-to-end tests of the four executables as a user runs them: help, version, --print-config round
# trip, one-line errors with exit codes for bad input, and failures under mpirun.
# Usage: run_cli_tests.sh BUILD_DIR   (ends with "N passed, N failed")
#   SAES_CLI_CASES="train viewer" runs only those tests/cli/cases/*.sh (after the cases above).
set -uo pipefail
build="$(cd "${1:?usage: run_cli_tests.sh BUILD_DIR}" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$build/apps"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
# below TOL VALUE: VALUE is a number (not an error message) and less than TOL.
below() { awk -v d="$2" -v t="$1" 'BEGIN { exit !(d ~ /^[-+]?[0-9.]+([eE][-+]?[0-9]+)?$/ && d + 0 < t + 0) }'; }
# expect NAME CODE REGEX -- CMD...: exit code must be CODE and stderr must match REGEX (ERE).
expect() {
  local name="$1" code="$2" regex="$3"; shift 4
  "$@" >out.txt 2>err.txt
  local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$name: exit $rc, expected $code; stderr: $(cat err.txt)"; return; fi
  if [ -n "$regex" ] && ! grep -Eq -- "$regex" err.txt; then bad "$name: stderr does not match /$regex/: $(cat err.txt)"; return; fi
  ok
}
# one_line NAME: the last command's stderr has exactly one line.
one_line() {
  local n; n=$(wc -l <err.txt)
  if [ "$n" -eq 1 ]; then ok; else bad "$1: expected a one-line error, got $n lines: $(cat err.txt)"; fi
}

# viewer_serve "DB [ARGS…]" LOG: starts `saes-analyze serve DB [ARGS…]` on a free port (stderr to LOG); sets
# viewer_pid and viewer_url, or records a failure and returns 1.
viewer_serve() {
  # shellcheck disable=SC2086  # $1 may name several databases
  "$bin/saes-analyze" serve $1 --port 0 2>"$2" &
  viewer_pid=$!
  local port=""
  for _ in $(seq 1 100); do
    port=$(sed -n 's|.*at http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$2")
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -z "$port" ]; then bad "viewer: no URL logged for $1: $(cat "$2")"; kill -TERM "$viewer_pid"; wait "$viewer_pid"; return 1; fi
  viewer_url="http://127.0.0.1:$port/"
}

for app in saes-generate saes-train saes-analyze saes-convert; do
  if "$bin/$app" --help >out.txt 2>&1 && grep -q "Examples:" out.txt && grep -q "Exit codes:" out.txt; then ok; else bad "$app --help"; fi
  if "$bin/$app" --version 2>&1 | grep -q "^$app "; then ok; else bad "$app --version"; fi
  expect "$app without config" 2 "config is required" -- "$bin/$app"
done

# --print-config round trip: printing the printed config gives the same text.
train_cfg="$root/configs/train-stories260k-topk.yaml"
"$bin/saes-train" "$train_cfg" --print-config --set trainer.lr=0.00025 >a.yaml 2>err.txt || bad "print-config: $(cat err.txt)"
"$bin/saes-train" a.yaml --print-config >b.yaml 2>err.txt || bad "print-config of printed: $(cat err.txt)"
if cmp -s a.yaml b.yaml && grep -q "lr: 0.00025" a.yaml; then ok; else bad "print-config round trip differs"; fi

# Bad inputs: one line naming file:line:col and key path, exit code 2.
printf 'sae_name: x\ntrainer:\n  lrr: 1e-4\n' >typo.yaml
expect "unknown key" 2 '^saes-train: error: typo.yaml:3:3: trainer.lrr: unknown key \(did you mean "lr"\?\)$' -- "$bin/saes-train" typo.yaml
one_line "unknown key"
printf 'trainer:\n  lr: [1, 2\n' >broken.yaml
expect "malformed yaml" 2 'broken.yaml:[0-9]+:[0-9]+' -- "$bin/saes-train" broken.yaml
one_line "malformed yaml"
sed "s/^threads: .*/threads: many/" "$train_cfg" >wrongtype.yaml
expect "wrong type" 2 'wrongtype.yaml:[0-9]+:[0-9]+: threads: expected an integer' -- "$bin/saes-train" wrongtype.yaml
one_line "wrong type"
expect "bad enum" 2 'sae.act_fn: .*relu.*jumprelu.*topk' -- "$bin/saes-train" "$train_cfg" --set sae.act_fn=gelu
one_line "bad enum"
expect "bad override" 2 'trainer.lr' -- "$bin/saes-train" "$train_cfg" --set trainer.lr=abc
expect "missing file" 2 'nothere.yaml' -- "$bin/saes-train" nothere.yaml
expect "bad --log-level" 2 'log-level' -- "$bin/saes-train" "$train_cfg" --log-level loud

# Under mpirun: a bad config fails on every rank, exits 2, and does not hang.
if command -v mpirun >/dev/null; then
  expect "mpirun bad config" 2 '\[rank [01]/2\] saes-train: error: typo.yaml:3:3' -- \
    timeout 60 mpirun --oversubscribe --bind-to none -np 2 "$bin/saes-train" typo.yaml
  expect "mpirun config validation" 2 'must be divisible by data_parallel_size \(3\)' -- \
    timeout 60 mpirun --oversubscribe --bind-to none -np 2 "$bin/saes-train" "$train_cfg" --set data_parallel_size=3
fi

# saes-generate on stories260K (needs SAES_TEST_ASSETS): config run (bare and `run`), resume,
# tokenize, probe, bad inputs, and a 2-rank run whose merged manifest matches one process.
assets="${SAES_TEST_ASSETS:-}"
if [ -n "$assets" ] && [ -d "$assets/llama2c-stories260K" ]; then
  gen_cfg="$root/configs/generate-stories260k.yaml"
  # One document per paragraph, so that two ranks both get text.
  awk 'BEGIN { RS = "" } { print; print "<|endoftext|>" }' \
    "$assets/corpora/tinystories/tinystories_validation_head.txt" >stories.txt
  gen_set=(--set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin"
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin"
    --set "dataset.paths=[$work/stories.txt]"
    --set total_tokens=5000 --set batch_size=2000 --set logging.progress=off)
  manifest_tokens() { python3 -c 'import json,sys; print(sum(s["n_tokens"] for s in json.load(open(sys.argv[1]))["shards"]))' "$1"; }
  expect "generate" 0 '' -- "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" --set output_dir=g1
  if [ "$(manifest_tokens g1/manifest.json)" = 5000 ] && [ -f g1/config.resolved.yaml ] && [ "$(ls g1/shard-r000-*.saes | wc -l)" = 3 ]; then ok; else bad "generate manifest/shards"; fi
  # saes-train on those shards: 10 TopK steps, final folded weights and metrics in the run folder.
  expect "train" 0 '' -- "$bin/saes-train" "$train_cfg" --set 'activation_factory.sources=[{type: activations, name: g1, path: g1}]' \
    --set activation_factory.batch_size=500 --set trainer.total_training_tokens=5000 --set trainer.log_frequency=5 \
    --set trainer.exp_result_path=t1 --set logging.progress=off
  if [ -s t1/sae_weights.safetensors ] && [ "$(wc -l <t1/metrics.jsonl)" = 2 ] && grep -Eq '"metrics/l0": ?16(\.0*)?[,}]' t1/metrics.jsonl && [ -f t1/config.resolved.yaml ]; then ok; else bad "train run folder: $(ls t1) $(cat t1/metrics.jsonl)"; fi
  # The SAE's metrics are those of the build before the multi-hook seam (issue #16): the golden
  # file is t1/metrics.jsonl of commit ad53c96 (byte-identical on the machine that made it; here
  # the same keys and steps, values within 1e-3 relative: another BLAS may round differently).
  golden="$(/usr/bin/python3 - "$root/tests/data/golden/train-stories260k-topk-t1.metrics.jsonl" t1/metrics.jsonl <<'PY' 2>&1
import json, sys
want = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
assert len(want) == len(got), (len(want), len(got))
for w, g in zip(want, got):
    assert w.keys() == g.keys(), sorted(set(w) ^ set(g))
    for k in w:
        if isinstance(w[k], (int, float)):
            assert abs(w[k] - g[k]) <= 1e-3 * abs(w[k]) + 1e-6, (w["step"], k, w[k], g[k])
        else:
            assert w[k] == g[k], (k, w[k], g[k])
print("same bytes" if open(sys.argv[1]).read() == open(sys.argv[2]).read() else "same within 1e-3")
PY
)"
  case "$golden" in same*) ok; echo "cli: t1 metrics vs the pre-seam golden file: $golden";; *) bad "t1 metrics differ from tests/data/golden: $golden";; esac
  # A finished run is never overwritten by a new one: refused (one line, exit 2, t1 unchanged);
  # overwrite: true replaces a copy's run files; --resume refuses a changed dictionary config.
  t1_sum="$(cat t1/sae_weights.safetensors t1/metrics.jsonl | cksum)"
  t1_set=(--set 'activation_factory.sources=[{type: activations, name: g1, path: g1}]'
    --set activation_factory.batch_size=500 --set trainer.total_training_tokens=5000 --set trainer.log_frequency=5
    --set logging.progress=off)
  expect "train into a finished run" 2 'trainer.exp_result_path: t1 already holds a run \(checkpoints|trainer.exp_result_path: t1 already holds a run \(config.resolved.yaml, metrics.jsonl, sae_weights.safetensors\)' -- \
    "$bin/saes-train" "$train_cfg" "${t1_set[@]}" --set trainer.exp_result_path=t1 --set sae.top_k=8
  one_line "train into a finished run"
  [ "$(cat t1/sae_weights.safetensors t1/metrics.jsonl | cksum)" = "$t1_sum" ] && ok || bad "a refused run changed t1"
  cp -r t1 t1copy && : >t1copy/notes.txt
  expect "overwrite with a foreign file" 2 't1copy already holds files saes-train did not write \(notes.txt\)' -- \
    "$bin/saes-train" "$train_cfg" "${t1_set[@]}" --set trainer.exp_result_path=t1copy --set overwrite=true
  rm t1copy/notes.txt
  expect "overwrite a run" 0 'overwrite: removed the previous run.s config.resolved.yaml, metrics.jsonl, sae_weights.safetensors' -- \
    "$bin/saes-train" "$train_cfg" "${t1_set[@]}" --set trainer.exp_result_path=t1copy --set overwrite=true --set sae.top_k=8
  grep -q '"metrics/l0": *8' t1copy/metrics.jsonl && [ "$(wc -l <t1copy/metrics.jsonl)" = 2 ] && ok || bad "overwritten run: $(cat t1copy/metrics.jsonl)"
  expect "train with a checkpoint" 0 '' -- "$bin/saes-train" "$train_cfg" "${t1_set[@]}" --set trainer.exp_result_path=tck \
    --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear
  # A truncated shard is found before training starts (not when the stream reaches it).
  cp -r g1 gtrunc && truncate -s -100 gtrunc/shard-r000-000002.saes
  expect "train on a truncated shard" 3 'shards gtrunc: shard-r000-000002.saes has [0-9]+ bytes, manifest.json records [0-9]+' -- \
    "$bin/saes-train" "$train_cfg" "${t1_set[@]}" --set 'activation_factory.sources=[{type: activations, name: g1, path: gtrunc}]' \
    --set trainer.exp_result_path=ttrunc
  [ ! -e ttrunc ] && ok || bad "a refused run left ttrunc: $(ls ttrunc)"
  mkdir -p gempty
  expect "train on a folder that is no run" 3 'gempty has no manifest.json \(not a saes-generate output_dir\)' -- \
    "$bin/saes-train" "$train_cfg" "${t1_set[@]}" --set 'activation_factory.sources=[{type: activations, name: g1, path: gempty}]' \
    --set trainer.exp_result_path=tempty
  one_line "train on a folder that is no run"
  expect "resume with another dictionary" 2 'was trained with sae.top_k = 16, the run configures 8' -- \
    "$bin/saes-train" --resume tck --set sae.top_k=8
  one_line "resume with another dictionary"
  # SIGTERM mid-run: exit 0 with how far it got; the same command then finishes, and the shards
  # equal an uninterrupted run's byte for byte.
  sig_set=("${gen_set[@]}" --set total_tokens=200000 --threads 1)
  "$bin/saes-generate" "$gen_cfg" "${sig_set[@]}" --set output_dir=gsig 2>sig.err &
  sig_pid=$!
  for _ in $(seq 1 400); do [ "$(ls gsig/shard-*.saes 2>/dev/null | wc -l)" -ge 3 ] && break; sleep 0.05; done
  kill -TERM "$sig_pid"; wait "$sig_pid"; sig_rc=$?
  if [ "$sig_rc" = 0 ] && grep -Eq 'gsig: stopped by signal 15 with [0-9]+ tokens in [0-9]+ complete shards' sig.err; then ok
  else bad "generate SIGTERM: exit $sig_rc, $(tail -2 sig.err)"; fi
  expect "generate continues after SIGTERM" 0 '200000 tokens' -- "$bin/saes-generate" "$gen_cfg" "${sig_set[@]}" --set output_dir=gsig
  expect "generate uninterrupted" 0 '' -- "$bin/saes-generate" "$gen_cfg" "${sig_set[@]}" --set output_dir=gsigref
  sig_diff=""
  for f in gsigref/shard-*.saes; do cmp -s "$f" "gsig/${f#gsigref/}" || sig_diff="$sig_diff ${f#gsigref/}"; done
  [ -z "$sig_diff" ] && [ "$(ls gsig/shard-*.saes | wc -l)" = "$(ls gsigref/shard-*.saes | wc -l)" ] && ok || bad "interrupted+continued shards differ:$sig_diff"
  head -c 3000 stories.txt >small.txt
  expect "generate runs out of text" 0 'warning: gsmall: the text ran out: [0-9]+ of total_tokens 20000 tokens written \([0-9.]+%; per rank: [0-9]+\)' -- \
    "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" --set "dataset.paths=[$work/small.txt]" --set total_tokens=20000 --set output_dir=gsmall
  if python3 -c 'import json,sys; m = json.load(open(sys.argv[1])); sys.exit(not (m["requested_tokens"] == 20000 and m["n_tokens"] < 20000 and m["complete"]))' gsmall/manifest.json; then ok; else bad "gsmall manifest does not record the shortfall"; fi
  # A model whose first token embeddings are NaN (BOS among them): generate stops at the first
  # batch naming the hook, and no shard holds NaN (#22 item 9).
  cp "$assets/llama2c-stories260K/stories260K.bin" nan.bin
  printf '\377%.0s' $(seq 4096) | dd of=nan.bin bs=1 seek=28 conv=notrunc status=none
  expect "generate NaN activations" 3 'gnan: hook blocks.3.hook_resid_post has NaN or infinite activations in model batch 0' -- \
    "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" --set model.model_from_pretrained_path=nan.bin --set output_dir=gnan
  if [ "$(grep -c 'error:' err.txt)" = 1 ] && ! ls gnan/shard-*.saes >/dev/null 2>&1; then ok; else bad "NaN run: $(cat err.txt; ls gnan)"; fi
  expect "generate run subcommand" 0 '' -- "$bin/saes-generate" run "$gen_cfg" "${gen_set[@]}" --set output_dir=g2
  if cmp -s g1/shard-r000-000001.saes g2/shard-r000-000001.saes; then ok; else bad "run subcommand shards differ"; fi
  # A crash after shard 1: the last shard and its manifest entry are gone.
  rm g2/shard-r000-000002.saes
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); m["shards"].pop(); m["complete"]=False; json.dump(m, open(sys.argv[1], "w"))' g2/manifest.json
  expect "generate resume" 0 '' -- "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" --set output_dir=g2
  if cmp -s g1/shard-r000-000002.saes g2/shard-r000-000002.saes; then ok; else bad "resumed shard differs"; fi
  expect "generate config change" 2 'different config.*hook_points.*overwrite' -- \
    "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" --set output_dir=g1 --set 'hook_points=[blocks.0.hook_resid_pre]'
  one_line "generate config change"
  expect "generate format pt" 5 'format: pt' -- "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" --set format=pt
  expect "generate bad hook" 2 "unknown hook 'blocks.9.hook_resid_post'" -- \
    "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" --set output_dir=g3 --set 'hook_points=[blocks.9.hook_resid_post]'
  expect "generate missing model" 3 'nomodel.bin' -- "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" --set model.model_from_pretrained_path=nomodel.bin
  one_line "generate missing model"
  expect "tokenize" 0 '' -- "$bin/saes-generate" tokenize --tokenizer "$assets/llama2c-stories260K/tok512.bin" --text "Once upon a time" --pieces
  if grep -q '^{"ids":\[.*\],"pieces":\[' out.txt; then ok; else bad "tokenize output: $(cat out.txt)"; fi
  printf '{"text": "Once upon"}\n{"text": "a time"}\n' >in.jsonl
  expect "tokenize jsonl" 0 '' -- "$bin/saes-generate" tokenize --tokenizer "$assets/llama2c-stories260K/tok512.bin" --input in.jsonl
  if [ "$(grep -c '^{"ids":' out.txt)" = 2 ]; then ok; else bad "tokenize jsonl lines: $(cat out.txt)"; fi
  printf '{"txt": 1}\n' >bad.jsonl
  expect "tokenize bad jsonl" 3 'bad.jsonl:1' -- "$bin/saes-generate" tokenize --tokenizer "$assets/llama2c-stories260K/tok512.bin" --input bad.jsonl
  one_line "tokenize bad jsonl"
  expect "probe" 0 '' -- "$bin/saes-generate" probe --model "$assets/llama2c-stories260K/stories260K.bin" \
    --text "Once upon a time" --hooks blocks.0.hook_resid_post,blocks.3.hook_mlp_out --logits --output probe.safetensors
  if grep -q 'logits .*\[1, [0-9]*, 512\]' out.txt && [ -s probe.safetensors ]; then ok; else bad "probe output: $(cat out.txt)"; fi
  expect "probe bad ids" 2 '\-\-ids' -- "$bin/saes-generate" probe --model "$assets/llama2c-stories260K/stories260K.bin" --ids 1,x --hooks logits --output p2.safetensors
  if command -v mpirun >/dev/null; then
    expect "mpirun generate" 0 '' -- timeout 120 mpirun --oversubscribe --bind-to none -np 2 \
      "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" --set output_dir=gmpi --threads 1
    if [ "$(manifest_tokens gmpi/manifest.json)" = 5000 ] && [ -f gmpi/manifest.rank1.json ] && ls gmpi/shard-r001-*.saes >/dev/null 2>&1; then ok; else bad "mpirun merged manifest"; fi
    # Uneven documents (one long story, then many one-word ones): ranks split the model batches,
    # not the documents, so two ranks still write the 5000 tokens one process writes (#22 item 4).
    { tr '\n' ' ' <stories.txt | sed 's/<|endoftext|>//g'; echo; for i in $(seq 60); do echo "Hi.<|endoftext|>"; done; } >uneven.txt
    expect "generate uneven, one process" 0 '' -- "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" \
      --set "dataset.paths=[$work/uneven.txt]" --set output_dir=guneven1
    expect "mpirun generate uneven" 0 '' -- timeout 120 mpirun --oversubscribe --bind-to none -np 2 \
      "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" --set "dataset.paths=[$work/uneven.txt]" --set output_dir=guneven2 --threads 1
    if [ "$(manifest_tokens guneven1/manifest.json)" = 5000 ] && [ "$(manifest_tokens guneven2/manifest.json)" = 5000 ] &&
      [ "$(manifest_tokens guneven2/manifest.rank0.json)" -gt 0 ] && [ "$(manifest_tokens guneven2/manifest.rank1.json)" -gt 0 ]; then ok
    else bad "uneven text: 1 process $(manifest_tokens guneven1/manifest.json), 2 ranks $(manifest_tokens guneven2/manifest.rank0.json) + $(manifest_tokens guneven2/manifest.rank1.json)"; fi
  fi
else
  echo "cli: SAES_TEST_ASSETS not set; skipping the saes-generate runs"
fi

# Per-tool cases (tests/cli/cases/*.sh) run in this shell after the cases above: they may use
# expect/one_line/ok/bad, $bin, $root, $work, $assets, $train_cfg and, when assets are present,
# $gen_cfg, "${gen_set[@]}", the shards in g1/ and the trained TopK run in t1/.
for case_file in "$root"/tests/cli/cases/*.sh; do
  [ -e "$case_file" ] || continue
  if [ -n "${SAES_CLI_CASES:-}" ] && [[ " $SAES_CLI_CASES " != *" $(basename "$case_file" .sh) "* ]]; then continue; fi
  cd "$work" || exit 1
  # shellcheck source=/dev/null
  source "$case_file"
done
cd "$work" || exit 1

echo "cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

# MoLT cases (sourced by run_cli_tests.sh): one-line rejections of MoLT configs that cannot work;
# with the assets: the example config (a MoLT replacing layer 3's MLP) trained on the fly (per-rank
# L0 metrics, the original's tensor names), 2 model ranks (every rank group split over them)
# equal to one process, and saes-analyze with the spliced evaluation at hook_mlp_out.
molt_cfg="$root/configs/train-stories260k-molt.yaml"
expect "molt rank_counts required" 2 'sae.rank_counts: required for molt' -- \
  "$bin/saes-train" "$molt_cfg" --set 'sae.rank_counts={}'
one_line "molt rank_counts required"
expect "molt expansion factor" 2 'sae.expansion_factor: must be within 0.1 of d_sae / d_model = 480 / 64 = 7.5' -- \
  "$bin/saes-train" "$molt_cfg" --set sae.expansion_factor=8
expect "molt bad rank" 2 'sae.rank_counts.x: a rank is an integer in \[1, d_model 64\]' -- \
  "$bin/saes-train" "$molt_cfg" --set 'sae.rank_counts={x: 4}' --set sae.expansion_factor=0.0625
expect "molt transpose init" 2 'initializer.init_encoder_with_decoder_transpose: W_E = W_D\^T is not defined for a molt' -- \
  "$bin/saes-train" "$molt_cfg" --set initializer.init_encoder_with_decoder_transpose=true
expect "rank_counts on an sae" 2 'sae.rank_counts: is for sae_type molt only' -- \
  "$bin/saes-train" "$train_cfg" --set 'sae.rank_counts={1: 4}'
expect "molt counts not divisible by the model group" 2 'model_parallel_size: must divide every count of sae.rank_counts .*rank 1 has 255' -- \
  "$bin/saes-train" "$molt_cfg" --set model_parallel_size=2 --set 'sae.rank_counts={1: 255, 2: 129, 4: 64, 8: 32}'

if [ -n "$assets" ] && [ -d "$assets/llama2c-stories260K" ]; then
  molt_fly=(--set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin"
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]"
    --set activation_factory.batch_size=512 --set trainer.total_training_tokens=4096 --set trainer.log_frequency=4
    --set logging.progress=off --threads 1)
  expect "molt train on the fly" 0 '' -- "$bin/saes-train" "$molt_cfg" "${molt_fly[@]}" --set trainer.exp_result_path=tmolt
  if [ "$(wc -l <tmolt/metrics.jsonl)" = 2 ] && tail -1 tmolt/metrics.jsonl | grep -Eq '"metrics/l0": ?16(\.0*)?[,}]' &&
    /usr/bin/python3 - tmolt <<'PY'
import json, struct, sys
m = json.loads(open(sys.argv[1] + "/metrics.jsonl").read().splitlines()[-1])
ranks = {1: 256, 2: 128, 4: 64, 8: 32}
l0 = [m[f"molt_metrics/l0_rank{r}"] for r in ranks]
assert abs(sum(l0) - m["metrics/l0"]) < 1e-6 * 16, (l0, m["metrics/l0"])
assert abs(sum(r * m[f"molt_metrics/l0_rank{r}"] for r in ranks) - m["molt_metrics/total_rank_sum"]) < 1e-4
assert abs(sum(m[f"molt_metrics/l0_rank{r}_ratio"] for r in ranks) - 1) < 1e-6
raw = open(sys.argv[1] + "/sae_weights.safetensors", "rb").read()
h = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
for r, c in ranks.items():
    assert h[f"U_matrices.{r}"]["shape"] == [c, 64, r] and h[f"V_matrices.{r}"]["shape"] == [c, r, 64], r
assert h["W_E"]["shape"] == [64, 480] and h["b_D"]["shape"] == [64]
assert json.loads(h["__metadata__"]["saes_config"])["rank_counts"] == {str(r): c for r, c in ranks.items()}
PY
  then ok; else bad "molt run folder: $(ls tmolt) $(tail -1 tmolt/metrics.jsonl)"; fi

  if command -v mpirun >/dev/null && declare -F max_diff >/dev/null; then  # max_diff: distributed.sh
    expect "molt 2 model ranks" 0 '' -- timeout 120 mpirun --oversubscribe --bind-to none -np 2 "$bin/saes-train" "$molt_cfg" \
      "${molt_fly[@]}" --set model_parallel_size=2 --set trainer.exp_result_path=tmolt_mp
    diff_mp="$(max_diff tmolt/sae_weights.safetensors tmolt_mp/sae_weights.safetensors 2>&1)"
    if below 1e-4 "$diff_mp" && cmp -s <(grep -o '"molt_metrics/l0_rank[0-9]": *[0-9.e+-]*' tmolt/metrics.jsonl) \
      <(grep -o '"molt_metrics/l0_rank[0-9]": *[0-9.e+-]*' tmolt_mp/metrics.jsonl); then ok
    else bad "molt 2 model ranks vs one process: $diff_mp; $(tail -1 tmolt_mp/metrics.jsonl)"; fi
  fi

  # the original's layout (config.json + weights without saes metadata) imports; probe reconstructs
  # from the input; SAELens has no MoLT (exit 5)
  expect "molt to native" 0 'wrote mnat' -- "$bin/saes-convert" tmolt --to native mnat
  mkdir -p morig && cp mnat/config.json morig/ && python3 -c 'import json,struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; h=json.loads(b[8:8+n]); h.pop("__metadata__"); t=json.dumps(h).encode(); t+=b" "*((8-len(t)%8)%8); open(sys.argv[2],"wb").write(struct.pack("<Q",len(t))+t+b[8+n:])' mnat/sae_weights.safetensors morig/sae_weights.safetensors
  expect "molt original layout import" 0 'read morig \(lmsaes layout\): act_fn topk, d_model 64, d_sae 480' -- "$bin/saes-convert" morig --to native mback
  if grep -q '"sae_type": "molt"' mnat/config.json && grep -q '"rank_counts"' mnat/config.json &&
    cmp -s mnat/sae_weights.safetensors mback/sae_weights.safetensors; then ok
  else bad "molt config.json / import: $(cat mnat/config.json)"; fi
  expect "molt to saelens" 5 'to: saelens: not implemented for sae_type molt' -- "$bin/saes-convert" tmolt --to saelens msl
  [ ! -e msl ] && ok || bad "a refused conversion left msl behind"
  expect "probe --dictionary molt" 0 '' -- "$bin/saes-generate" probe --model "$assets/llama2c-stories260K/stories260K.bin" \
    --text "Once upon a time" --dictionary tmolt --output pmolt.safetensors
  if grep -Eq '^tmolt.feature_acts +\[1, [0-9]+, 480\]' out.txt && grep -q '^tmolt.reconstruction.blocks.3.hook_mlp_out ' out.txt; then ok
  else bad "probe --dictionary molt: $(cat out.txt)"; fi

  expect "molt analyze with spliced eval" 0 'eval/loss_recovered = ' -- "$bin/saes-analyze" \
    "$root/configs/analyze-stories260k.yaml" --set sae.pretrained_name_or_path=tmolt \
    --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
    --set "activation_factory.hook_points=[blocks.3.ln2.hook_normalized, blocks.3.hook_mlp_out]" \
    --set analyzer.total_analyzing_tokens=2048 --set eval.total_eval_tokens=2048 --set output_dir=amolt --set logging.progress=off
  molt_db="$(/usr/bin/python3 - amolt/default.sqlite <<'PY' 2>&1
import math, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n, with_cos = db.execute("select count(*), count(max_decoder_cosine) from features").fetchone()
ev = dict(db.execute("select metric, value from eval"))
assert n == 480 and with_cos == 0, (n, with_cos)
assert all(math.isfinite(ev[k]) for k in ("loss_recovered", "explained_variance")), ev
print("ok")
PY
)"
  if [ "$molt_db" = ok ]; then ok; else bad "molt analysis database: $molt_db"; fi
fi

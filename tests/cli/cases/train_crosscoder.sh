# Crosscoder cases (sourced by run_cli_tests.sh): one-line rejections of crosscoder configs that
# cannot work; with the assets: the example config (the residuals after layers 1-3 in one latent)
# trained on the fly (per-head EV, the original's tensor names), 2 model ranks equal to one
# process, and saes-analyze (max over heads, per-head decoder norms, the H×H decoder matrices) with
# the spliced evaluation, on one process and with the features split over 2 ranks.
cc_cfg="$root/configs/train-stories260k-crosscoder.yaml"
expect "crosscoder hook_points required" 2 'sae.hook_points: required for a crosscoder' -- \
  "$bin/saes-train" "$cc_cfg" --set 'sae.hook_points=[]'
one_line "crosscoder hook_points required"
expect "crosscoder gating mandatory" 2 'sae.sparsity_include_decoder_norm: a crosscoder gates each head' -- \
  "$bin/saes-train" "$cc_cfg" --set sae.sparsity_include_decoder_norm=false
expect "crosscoder aux-k" 2 'trainer.auxk_coefficient: Aux-K is not defined for a crosscoder' -- \
  "$bin/saes-train" "$cc_cfg" --set trainer.auxk_coefficient=0.1
expect "crosscoder hook_point_in" 2 'a crosscoder reads and reconstructs sae.hook_points' -- \
  "$bin/saes-train" "$cc_cfg" --set sae.hook_point_in=blocks.1.hook_resid_post
expect "hook_points on an sae" 2 'sae.hook_points: is for sae_type crosscoder only' -- \
  "$bin/saes-train" "$train_cfg" --set 'sae.hook_points=[blocks.3.hook_resid_post]'
expect "crosscoder hook missing from the stream" 2 'must include the sae.s hook point "blocks.3.hook_resid_post"' -- \
  "$bin/saes-train" "$cc_cfg" --set 'activation_factory.hook_points=[blocks.1.hook_resid_post, blocks.2.hook_resid_post]'

if [ -n "$assets" ] && [ -d "$assets/llama2c-stories260K" ]; then
  cc_fly=(--set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin"
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]"
    --set activation_factory.batch_size=512 --set trainer.total_training_tokens=4096 --set trainer.log_frequency=4
    --set logging.progress=off --threads 1)
  expect "crosscoder train on the fly" 0 '' -- "$bin/saes-train" "$cc_cfg" "${cc_fly[@]}" --set trainer.exp_result_path=tcc
  if [ "$(wc -l <tcc/metrics.jsonl)" = 2 ] && grep -q '"metrics/explained_variance_L2"' tcc/metrics.jsonl &&
    /usr/bin/python3 - tcc <<'PY'
import json, struct, sys
raw = open(sys.argv[1] + "/sae_weights.safetensors", "rb").read()
h = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
assert h["W_E"]["shape"] == [3, 64, 512] and h["b_E"]["shape"] == [3, 512], h["W_E"]
assert h["W_D"]["shape"] == [3, 512, 64] and h["b_D"]["shape"] == [3, 64], h["W_D"]
for l in (1, 2, 3):
    assert f"dataset_average_activation_norm.blocks.{l}.hook_resid_post" in h
m = json.loads(open(sys.argv[1] + "/metrics.jsonl").read().splitlines()[-1])
assert 16 <= m["metrics/l0"] <= 48, m["metrics/l0"]  # active in any of the 3 heads, k = 16 each
PY
  then ok; else bad "crosscoder run folder: $(ls tcc) $(tail -1 tcc/metrics.jsonl)"; fi

  if command -v mpirun >/dev/null && declare -F max_diff >/dev/null; then  # max_diff: distributed.sh
    expect "crosscoder 2 model ranks" 0 '' -- timeout 120 mpirun --oversubscribe --bind-to none -np 2 "$bin/saes-train" "$cc_cfg" \
      "${cc_fly[@]}" --set model_parallel_size=2 --set trainer.exp_result_path=tcc_mp
    diff_mp="$(max_diff tcc/sae_weights.safetensors tcc_mp/sae_weights.safetensors 2>&1)"
    if below 1e-4 "$diff_mp"; then ok; else bad "crosscoder 2 model ranks vs one process: $diff_mp"; fi
  fi

  expect "crosscoder analyze with spliced eval" 0 'eval/loss_recovered = ' -- "$bin/saes-analyze" \
    "$root/configs/analyze-stories260k.yaml" --set sae.pretrained_name_or_path=tcc \
    --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
    --set "activation_factory.hook_points=[blocks.1.hook_resid_post, blocks.2.hook_resid_post, blocks.3.hook_resid_post]" \
    --set analyzer.total_analyzing_tokens=2048 --set eval.total_eval_tokens=2048 --set output_dir=acc --set logging.progress=off
  # The H×H decoder matrices per feature (decoder_similarity): 9 rows each, symmetric, the
  # diagonal the squared target_norms, the cosines those of the run's W_D (a fold rescales whole
  # heads, which no cosine sees).
  cc_db="$(/usr/bin/python3 - acc/default.sqlite tcc/sae_weights.safetensors <<'PY' 2>&1
import json, math, sqlite3, struct, sys
import numpy as np
db = sqlite3.connect(sys.argv[1])
n = db.execute("select count(*) from features").fetchone()[0]
heads = db.execute("select count(distinct target) from target_norms").fetchone()[0]
ev = dict(db.execute("select metric, value from eval"))
assert n == 512 and heads == 3, (n, heads)
assert all(math.isfinite(ev[k]) for k in ("loss_recovered", "explained_variance")), ev
rows = db.execute("select count(*), count(distinct feature), max(head_a), max(head_b) from decoder_similarity").fetchone()
assert rows == (512 * 9, 512, 2, 2), rows
m = {(f, a, b): (c, ip) for f, a, b, c, ip in db.execute("select * from decoder_similarity")}
norm = {(f, t): v for f, t, v in db.execute("select feature, target, decoder_norm from target_norms")}
for (f, a, b), (c, ip) in m.items():
    assert m[(f, b, a)] == (c, ip), (f, a, b)
    if a == b:
        assert abs(ip - norm[(f, a)] ** 2) <= 1e-4 * ip + 1e-9 and abs(c - 1) < 1e-5, (f, a, c, ip)
raw = open(sys.argv[2], "rb").read()
k = struct.unpack("<Q", raw[:8])[0]
info = json.loads(raw[8:8 + k])["W_D"]
w = np.frombuffer(raw[8 + k + info["data_offsets"][0]:8 + k + info["data_offsets"][1]], np.float32)
w = w.reshape(info["shape"]).astype(np.float64).transpose(1, 0, 2)  # [d_sae, H, d_model]
u = w / np.linalg.norm(w, axis=2, keepdims=True)
cos = np.einsum("fad,fbd->fab", u, u)
got = np.array([[[m[(f, a, b)][0] for b in range(3)] for a in range(3)] for f in range(512)])
assert np.abs(got - cos).max() < 1e-4, np.abs(got - cos).max()
print("ok")
PY
)"
  if [ "$cc_db" = ok ]; then ok; else bad "crosscoder analysis database: $cc_db"; fi

  if command -v mpirun >/dev/null && declare -F same_analysis_db >/dev/null; then  # same_analysis_db: distributed.sh
    expect "crosscoder analyze 2 model ranks" 0 '' -- timeout 120 mpirun --oversubscribe --bind-to none -np 2 "$bin/saes-analyze" \
      "$root/configs/analyze-stories260k.yaml" --set sae.pretrained_name_or_path=tcc \
      --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
      --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
      --set "activation_factory.hook_points=[blocks.1.hook_resid_post, blocks.2.hook_resid_post, blocks.3.hook_resid_post]" \
      --set analyzer.total_analyzing_tokens=2048 --set output_dir=acc2 --set logging.progress=off \
      --set model_parallel_size=2
    same_cc="$(same_analysis_db acc/default.sqlite acc2/default.sqlite eval)"
    if [ "$same_cc" = same ]; then ok; else bad "crosscoder analysis on 2 model ranks differs from one process: $same_cc"; fi
  fi
fi

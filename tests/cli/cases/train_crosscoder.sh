# Crosscoder cases (sourced by run_cli_tests.sh): one-line rejections of crosscoder configs that
# cannot work; with the assets: the example config (the residuals after layers 1-3 in one latent)
# trained on the fly (per-head EV and metrics, the original's tensor names), 2 model ranks and 3
# head ranks equal to one process, and saes-analyze (max over heads, per-head decoder norms, the
# H×H decoder matrices) with the spliced evaluation, on one process and with the features split
# over 2 ranks.
# Checkpoints as heads (model.checkpoints): hook names that name no listed checkpoint are refused;
# with the assets, saes-generate writes both checkpoints' hooks of the same tokens into one run,
# and the example crosscoder over a:/b:blocks.3.hook_resid_post trains from those shards and on
# the fly; saes-analyze runs on the fly and refuses the spliced evaluation (exit 5).
cc_cfg="$root/configs/train-stories260k-crosscoder.yaml"
ck_cfg="$root/configs/train-stories260k-crosscoder-checkpoints.yaml"
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
expect "checkpoint hook of an unlisted checkpoint" 2 'activation_factory.hook_points\[1\]: "b:blocks.3.hook_resid_post" names checkpoint "b", which model.checkpoints lacks \(checkpoints: a\)' -- \
  "$bin/saes-train" "$ck_cfg" --set 'model.checkpoints={a: a.bin}'
one_line "checkpoint hook of an unlisted checkpoint"
expect "unprefixed hook with checkpoints" 2 'names no checkpoint: with model.checkpoints set, write <checkpoint>:<hook>' -- \
  "$bin/saes-train" "$cc_cfg" --set 'model.checkpoints={a: a.bin}'
expect "prefixed hook without checkpoints" 2 '"a:blocks.3.hook_resid_post" names checkpoint "a", but model.checkpoints is not set' -- \
  "$bin/saes-generate" "$root/configs/generate-stories260k.yaml" --set 'hook_points=[a:blocks.3.hook_resid_post]'

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
for l in (1, 2, 3):  # the original's per-head metrics: k = 16 active per head and token
    prefix = f"crosscoder_metrics/blocks.{l}.hook_resid_post/"
    assert abs(m[prefix + "l0"] - 16) < 1e-6 and m[prefix + "l_rec"] > 0, (l, m)
PY
  then ok; else bad "crosscoder run folder: $(ls tcc) $(tail -1 tcc/metrics.jsonl)"; fi

  if command -v mpirun >/dev/null && declare -F max_diff >/dev/null; then  # max_diff: distributed.sh
    expect "crosscoder 2 model ranks" 0 '' -- timeout 120 mpirun --oversubscribe --bind-to none -np 2 "$bin/saes-train" "$cc_cfg" \
      "${cc_fly[@]}" --set model_parallel_size=2 --set trainer.exp_result_path=tcc_mp
    diff_mp="$(max_diff tcc/sae_weights.safetensors tcc_mp/sae_weights.safetensors 2>&1)"
    if below 1e-4 "$diff_mp"; then ok; else bad "crosscoder 2 model ranks vs one process: $diff_mp"; fi
    # Head parallelism: 3 ranks holding one head each give the one-process run; the checkpoint holds
    # every head; head_parallel_size is refused where it cannot work.
    expect "crosscoder 3 head ranks" 0 'head parallel: 3 ranks, 1 of the 3 crosscoder heads each' -- timeout 120 \
      mpirun --oversubscribe --bind-to none -np 3 "$bin/saes-train" "$cc_cfg" "${cc_fly[@]}" --set head_parallel_size=3 \
      --set trainer.exp_result_path=tcc_hp
    diff_hp="$(max_diff tcc/sae_weights.safetensors tcc_hp/sae_weights.safetensors 2>&1)"
    metrics_hp="$(/usr/bin/python3 - tcc/metrics.jsonl tcc_hp/metrics.jsonl <<'PY' 2>&1
import json, sys
a, b = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:])
assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
bad = [k for k in a if isinstance(a[k], float) and abs(a[k] - b[k]) > 1e-3 * abs(a[k]) + 1e-5]
print("same" if not bad else f"differ: {[(k, a[k], b[k]) for k in bad]}")
PY
)"
    if below 1e-4 "$diff_hp" && [ "$metrics_hp" = same ]; then ok; else bad "crosscoder 3 head ranks vs one process: $diff_hp, metrics $metrics_hp"; fi
    expect "head parallel must divide the heads" 2 'head_parallel_size: must divide the 3 sae.hook_points' -- \
      timeout 60 mpirun --oversubscribe --bind-to none -np 2 "$bin/saes-train" "$cc_cfg" --set head_parallel_size=2
  fi
  expect "head parallel on an sae" 2 'head_parallel_size: splits a crosscoder.s heads \(sae.hook_points\); sae_type sae has none' -- \
    "$bin/saes-train" "$train_cfg" --set head_parallel_size=2

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
  expect "analyze refuses head parallelism" 5 'head_parallel_size 3: saes-analyze reads every head' -- "$bin/saes-analyze" \
    "$root/configs/analyze-stories260k.yaml" --set sae.pretrained_name_or_path=tcc --set head_parallel_size=3 --set output_dir=acc_hp
  one_line "analyze refuses head parallelism"

  # model.checkpoints: b is stories260K with layer 2's MLP output weights (w2) × 1.5
  stories="$assets/llama2c-stories260K/stories260K.bin"
  /usr/bin/python3 - "$stories" ckpt_b.bin <<'PY'
import struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
d, hidden, L, nh, nkv, V, T = struct.unpack("<7i", raw[:28])
kv = nkv * (d // nh)
w = np.frombuffer(raw, dtype="<f4", offset=28).copy()
w2 = abs(V) * d + L * (2 * d + 2 * d * d + 2 * kv * d) + L * hidden * d  # floats before w2
w[w2 + 2 * d * hidden:w2 + 3 * d * hidden] *= 1.5
open(sys.argv[2], "wb").write(raw[:28] + w.tobytes())
PY
  ck_model=(--set "model.model_from_pretrained_path=$stories" --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin"
    --set "model.checkpoints={a: $stories, b: $work/ckpt_b.bin}")
  expect "checkpoints generate" 0 '' -- "$bin/saes-generate" "$root/configs/generate-stories260k.yaml" "${ck_model[@]}" \
    --set "dataset.paths=[$work/stories.txt]" --set total_tokens=4096 --set batch_size=2048 --set output_dir=gck \
    --set 'hook_points=[a:blocks.1.hook_resid_post, b:blocks.1.hook_resid_post, a:blocks.3.hook_resid_post, b:blocks.3.hook_resid_post]' \
    --set compression=raw --set logging.progress=off --threads 1
  ck_shards="$(/usr/bin/python3 - gck <<'PY' 2>&1
import glob, json, struct, sys
import numpy as np
m = json.load(open(sys.argv[1] + "/manifest.json"))
hooks = [f"{c}:blocks.{l}.hook_resid_post" for l in (1, 3) for c in "ab"]
assert m["hook_points"] == hooks, m["hook_points"]
files = sorted(glob.glob(sys.argv[1] + "/shard-*.saes"))
assert len(files) == 2, files
for f in files:
    raw = open(f, "rb").read()
    n = struct.unpack("<Q", raw[16:24])[0]
    sections = {s["name"]: s for s in json.loads(raw[32:32 + n])["sections"]}
    base = (32 + n + 63) // 64 * 64
    act = {}
    for h in hooks:
        s = sections["act/" + h]
        assert s["codec"] == "raw" and s["shape"] == [2048, 64], s
        act[h] = np.frombuffer(raw, dtype=s["dtype"], count=2048 * 64, offset=base + s["offset"])
    # the same tokens through both: equal before the perturbed layer 2, different after it
    assert np.array_equal(act[hooks[0]], act[hooks[1]])
    assert not np.array_equal(act[hooks[2]], act[hooks[3]])
    assert np.corrcoef(act[hooks[2]].astype(float), act[hooks[3]].astype(float))[0, 1] > 0.5
print("ok")
PY
)"
  if [ "$ck_shards" = ok ]; then ok; else bad "checkpoint shards: $ck_shards"; fi

  ck_train=(--set activation_factory.batch_size=512 --set trainer.total_training_tokens=4096 --set trainer.log_frequency=4
    --set logging.progress=off --threads 1)
  ck_check() {  # ck_check RUN_DIR: two heads, per-head metrics, the prefixed norm names
    /usr/bin/python3 - "$1" <<'PY'
import json, math, struct, sys
raw = open(sys.argv[1] + "/sae_weights.safetensors", "rb").read()
h = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
assert h["W_E"]["shape"] == [2, 64, 512] and h["W_D"]["shape"] == [2, 512, 64], h["W_E"]
for c in "ab":
    assert f"dataset_average_activation_norm.{c}:blocks.3.hook_resid_post" in h, list(h)
m = json.loads(open(sys.argv[1] + "/metrics.jsonl").read().splitlines()[-1])
for key in ("metrics/explained_variance_L0", "metrics/explained_variance_L1"):
    assert math.isfinite(m[key]) and m[key] <= 1.0, (key, m.get(key))
PY
  }
  expect "checkpoints crosscoder from shards" 0 '' -- "$bin/saes-train" "$ck_cfg" "${ck_train[@]}" \
    --set 'activation_factory.sources=[{type: activations, name: gck, path: gck}]' --set 'model=null' \
    --set trainer.exp_result_path=tck_shards
  if ck_check tck_shards; then ok; else bad "checkpoints crosscoder from shards: $(ls tck_shards)"; fi
  expect "checkpoints crosscoder on the fly" 0 '' -- "$bin/saes-train" "$ck_cfg" "${ck_train[@]}" "${ck_model[@]}" \
    --set "datasets.tinystories.paths=[$work/stories.txt]" --set trainer.exp_result_path=tck_fly
  if ck_check tck_fly; then ok; else bad "checkpoints crosscoder on the fly: $(ls tck_fly)"; fi

  ck_analyze=("$root/configs/analyze-stories260k.yaml" --set sae.pretrained_name_or_path=tck_fly "${ck_model[@]}"
    --set "datasets.tinystories.paths=[$work/stories.txt]" --set analyzer.total_analyzing_tokens=2048
    --set 'activation_factory.hook_points=[a:blocks.3.hook_resid_post, b:blocks.3.hook_resid_post]' --set logging.progress=off)
  expect "checkpoints analyze refuses the spliced eval" 5 'eval: the spliced evaluation .* model.checkpoints runs several models: not supported' -- \
    "$bin/saes-analyze" "${ck_analyze[@]}" --set eval.total_eval_tokens=2048 --set output_dir=ack_eval
  one_line "checkpoints analyze refuses the spliced eval"
  expect "checkpoints analyze on the fly" 0 '' -- "$bin/saes-analyze" "${ck_analyze[@]}" --set eval=null --set output_dir=ack
  ck_db="$(/usr/bin/python3 -c 'import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); print(db.execute("select count(*) from features").fetchone()[0], db.execute("select count(distinct target) from target_norms").fetchone()[0])' ack/default.sqlite 2>&1)"
  if [ "$ck_db" = "512 2" ]; then ok; else bad "checkpoints analysis database: $ck_db"; fi

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

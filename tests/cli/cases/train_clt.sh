# Cross-layer transcoder cases (sourced by run_cli_tests.sh): one-line rejections of CLT configs
# that cannot work; with the assets: the 10 hooks of a 5-layer CLT generated in one pass, the
# example config trained from those shards (per-layer metrics, the original's tensor names) and on
# the fly, 2 data-parallel ranks equal to one process, and saes-analyze with the spliced
# evaluation (every hook_mlp_out replaced at once).
clt_cfg="$root/configs/train-stories260k-clt.yaml"
expect "clt transpose init" 2 'initializer.init_encoder_with_decoder_transpose: W_E = W_D\^T is not defined for a clt' -- \
  "$bin/saes-train" "$clt_cfg" --set initializer.init_encoder_with_decoder_transpose=true
one_line "clt transpose init"
expect "clt layertopk for an sae" 2 'sae.act_fn: layertopk is for cross-layer transcoders' -- \
  "$bin/saes-train" "$train_cfg" --set sae.act_fn=layertopk
expect "clt hook lists of different lengths" 2 'sae.hook_points_out: expected 5 hooks' -- \
  "$bin/saes-train" "$clt_cfg" --set 'sae.hook_points_out=[blocks.0.hook_mlp_out]'
one_line "clt hook lists of different lengths"
expect "clt hook missing from the stream" 2 'must include the sae.s hook point "blocks.4.hook_mlp_out"' -- \
  "$bin/saes-train" "$clt_cfg" --set 'activation_factory.hook_points=[blocks.0.ln2.hook_normalized, blocks.1.ln2.hook_normalized, blocks.2.ln2.hook_normalized, blocks.3.ln2.hook_normalized, blocks.4.ln2.hook_normalized, blocks.0.hook_mlp_out, blocks.1.hook_mlp_out, blocks.2.hook_mlp_out, blocks.3.hook_mlp_out]'
expect "clt aux-k" 2 'trainer.auxk_coefficient: Aux-K is not defined for a clt' -- \
  "$bin/saes-train" "$clt_cfg" --set trainer.auxk_coefficient=0.1
expect "clt layertopk k too large" 2 'sae.top_k: expected 1 <= top_k <= d_sae \* layers \(1280\), got 2000' -- \
  "$bin/saes-train" "$clt_cfg" --set sae.top_k=2000 --set trainer.initial_k=null

if [ -n "$assets" ] && [ -d "$assets/llama2c-stories260K" ]; then
  clt_hooks='[blocks.0.ln2.hook_normalized, blocks.1.ln2.hook_normalized, blocks.2.ln2.hook_normalized, blocks.3.ln2.hook_normalized, blocks.4.ln2.hook_normalized, blocks.0.hook_mlp_out, blocks.1.hook_mlp_out, blocks.2.hook_mlp_out, blocks.3.hook_mlp_out, blocks.4.hook_mlp_out]'
  expect "clt generate 10 hooks in one pass" 0 '' -- "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" \
    --set "hook_points=$clt_hooks" --set total_tokens=8000 --set output_dir=gclt
  clt_shards=(--set 'activation_factory.sources=[{type: activations, name: gclt, path: gclt}]'
    --set activation_factory.batch_size=500 --set trainer.total_training_tokens=8000
    --set trainer.log_frequency=4 --set logging.progress=off --threads 1)
  expect "clt decode_with_csr against sparse_kernels off" 2 'sae.decode_with_csr: true contradicts sae.sparse_kernels: off' -- \
    "$bin/saes-train" "$clt_cfg" "${clt_shards[@]}" --set sae.decode_with_csr=true --set sae.sparse_kernels=off --set trainer.exp_result_path=tcsr
  one_line "clt decode_with_csr against sparse_kernels off"
  [ ! -e tcsr ] && ok || bad "a refused run left tcsr behind"
  expect "clt train from shards" 0 '' -- "$bin/saes-train" "$clt_cfg" "${clt_shards[@]}" --set trainer.exp_result_path=tclt
  if [ "$(wc -l <tclt/metrics.jsonl)" = 4 ] && tail -1 tclt/metrics.jsonl | grep -Eq '"metrics/l0": ?64(\.0*)?[,}]' &&
    grep -q '"metrics/explained_variance_L4"' tclt/metrics.jsonl && grep -q '"metrics/l0_layer4"' tclt/metrics.jsonl &&
    grep -q '"sparsity/dead_features_layer0"' tclt/metrics.jsonl &&
    grep -q '"W_D.4"' tclt/sae_weights.safetensors && grep -q '"b_D.4"' tclt/sae_weights.safetensors; then ok
  else bad "clt run folder: $(ls tclt) $(tail -1 tclt/metrics.jsonl)"; fi

  expect "clt convert topk to jumprelu" 0 'topk -> jumprelu: threshold .* from 500 rows' -- \
    "$bin/saes-convert" tclt tclt_jr --topk-to-jumprelu --activations gclt --batch-size 500
  if /usr/bin/python3 - tclt_jr <<'PY'
import json, struct, sys
cfg = json.load(open(sys.argv[1] + "/config.json"))
raw = open(sys.argv[1] + "/sae_weights.safetensors", "rb").read()
header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
assert cfg["act_fn"] == "jumprelu" and cfg["sae_type"] == "clt", cfg
assert header["activation_function.log_jumprelu_threshold"]["shape"] == [5, 256], header.keys()
PY
  then ok; else bad "clt jumprelu conversion: $(ls tclt_jr)"; fi
  expect "clt convert to saelens" 5 'to: saelens: not implemented for sae_type clt' -- \
    "$bin/saes-convert" tclt tclt_sl --to saelens
  [ ! -e tclt_sl ] && ok || bad "a refused conversion left tclt_sl behind"
  expect "clt layertopk layer export refused" 5 'clt_layer: a layertopk CLT selects across layers' -- \
    "$bin/saes-convert" tclt tclt_sl --to saelens --clt-layer 2
  expect "clt layer 2 to saelens" 0 'clt_layer 2: wrote the layer as a transcoder .* dropped' -- \
    "$bin/saes-convert" tclt_jr tclt_l2 --to saelens --clt-layer 2
  if python3 -c 'import json,sys; c=json.load(open("tclt_l2/cfg.json")); m=c["metadata"]; assert c["architecture"].startswith("jumprelu") and m["hook_name"]=="blocks.2.ln2.hook_normalized" and m["hook_name_out"]=="blocks.2.hook_mlp_out" and c["d_sae"]==256, c' 2>err_py.txt; then ok
  else bad "clt layer export cfg.json: $(cat err_py.txt)"; fi

  expect "clt train on the fly" 0 '' -- "$bin/saes-train" "$clt_cfg" \
    --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
    --set activation_factory.batch_size=512 --set trainer.total_training_tokens=4096 --set trainer.log_frequency=4 \
    --set trainer.exp_result_path=tclt_fly --set logging.progress=off
  if [ "$(wc -l <tclt_fly/metrics.jsonl)" = 2 ]; then ok; else bad "clt on the fly: $(cat tclt_fly/metrics.jsonl)"; fi

  if command -v mpirun >/dev/null && declare -F max_diff >/dev/null; then  # max_diff: distributed.sh
    expect "clt 2 data ranks" 0 '' -- timeout 120 mpirun --oversubscribe --bind-to none -np 2 "$bin/saes-train" "$clt_cfg" \
      "${clt_shards[@]}" --set data_parallel_size=2 --set trainer.exp_result_path=tclt_dp
    diff_clt="$(max_diff tclt/sae_weights.safetensors tclt_dp/sae_weights.safetensors 2>&1)"
    if below 1e-4 "$diff_clt"; then ok; else bad "clt 2 data ranks vs one process: $diff_clt"; fi
    expect "clt 2 model ranks" 0 '' -- timeout 120 mpirun --oversubscribe --bind-to none -np 2 "$bin/saes-train" "$clt_cfg" \
      "${clt_shards[@]}" --set model_parallel_size=2 --set trainer.exp_result_path=tclt_mp
    diff_mp="$(max_diff tclt/sae_weights.safetensors tclt_mp/sae_weights.safetensors 2>&1)"
    if below 1e-4 "$diff_mp" && cmp -s <(grep -o '"metrics/l0_layer[0-9]": *[0-9.e+-]*' tclt/metrics.jsonl) \
      <(grep -o '"metrics/l0_layer[0-9]": *[0-9.e+-]*' tclt_mp/metrics.jsonl); then ok
    else bad "clt 2 model ranks vs one process: $diff_mp; $(tail -1 tclt_mp/metrics.jsonl)"; fi
    # a 2-model-rank checkpoint (the whole dictionary and Adam state) resumes in one process
    expect "clt model parallel with checkpoints" 0 '' -- timeout 120 mpirun --oversubscribe --bind-to none -np 2 \
      "$bin/saes-train" "$clt_cfg" "${clt_shards[@]}" --set model_parallel_size=2 --set trainer.exp_result_path=tclt_res \
      --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear
    # 16 steps: a checkpoint at step 8 (the end writes the final weights); drop the end as a crash would
    if [ -d tclt_res/checkpoints/step_8 ]; then ok; else bad "clt checkpoints: $(ls tclt_res/checkpoints)"; fi
    rm -rf tclt_res/sae_weights.safetensors
    expect "clt model-parallel checkpoint resumed in one process" 0 'resuming from .*step_8' -- "$bin/saes-train" "$clt_cfg" "${clt_shards[@]}" \
      --set trainer.exp_result_path=tclt_res --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear \
      --set trainer.from_pretrained_path=tclt_res
    diff_res="$(max_diff tclt_mp/sae_weights.safetensors tclt_res/sae_weights.safetensors 2>&1)"
    if below 1e-5 "$diff_res"; then ok; else bad "clt model-parallel run resumed in one process differs: $diff_res"; fi
  fi
  if declare -F max_diff >/dev/null; then  # the dense step trains the same dictionary
    expect "clt dense kernels" 0 '' -- "$bin/saes-train" "$clt_cfg" "${clt_shards[@]}" \
      --set sae.sparse_kernels=off --set trainer.exp_result_path=tclt_dense
    diff_dense="$(max_diff tclt/sae_weights.safetensors tclt_dense/sae_weights.safetensors 2>&1)"
    if below 1e-4 "$diff_dense"; then ok; else bad "clt sparse vs dense step: $diff_dense"; fi
  fi

  expect "clt analyze with spliced eval" 0 'eval/loss_recovered = ' -- "$bin/saes-analyze" \
    "$root/configs/analyze-stories260k-clt.yaml" --set sae.pretrained_name_or_path=tclt \
    --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
    --set analyzer.total_analyzing_tokens=2048 --set eval.total_eval_tokens=2048 --set output_dir=aclt --set logging.progress=off
  if [ -s aclt/default.sqlite ] && grep -q '1280 features' err.txt; then ok; else bad "clt analysis: $(tail -3 err.txt)"; fi
  clt_db="$(/usr/bin/python3 - aclt/default.sqlite <<'PY' 2>&1
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
meta = dict(db.execute("select key, value from meta"))
assert meta["feature_layers"] == "5" and meta["target_hooks"].split(",")[4] == "blocks.4.hook_mlp_out", meta
n, zero_below = db.execute("select count(*), sum(target < feature / 256 and decoder_norm = 0) from target_norms").fetchone()
below = db.execute("select count(*) from target_norms where target < feature / 256").fetchone()[0]
assert n == 1280 * 5 and zero_below == below, (n, zero_below, below)
print("ok")
PY
)"
  if [ "$clt_db" = ok ]; then ok; else bad "clt analysis database: $clt_db"; fi
  if command -v mpirun >/dev/null && declare -F same_analysis_db >/dev/null; then  # features split over 2 ranks
    expect "clt analyze 2 model ranks" 0 '' -- timeout 120 mpirun --oversubscribe --bind-to none -np 2 "$bin/saes-analyze" \
      "$root/configs/analyze-stories260k-clt.yaml" --set sae.pretrained_name_or_path=tclt \
      --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
      --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
      --set analyzer.total_analyzing_tokens=2048 --set eval.total_eval_tokens=2048 --set output_dir=aclt2 --set logging.progress=off \
      --set model_parallel_size=2
    # eval is data parallel over the ranks (other documents per rank): left out
    same_clt="$(same_analysis_db aclt/default.sqlite aclt2/default.sqlite eval)"
    if [ "$same_clt" = same ]; then ok; else bad "clt analysis on 2 model ranks differs from one process: $same_clt"; fi
  fi
  # analyzer.clt_layer: layer 2's 256 features, the same statistics as features 512..767 of aclt
  expect "clt analyze clt_layer" 0 '' -- "$bin/saes-analyze" \
    "$root/configs/analyze-stories260k-clt.yaml" --set sae.pretrained_name_or_path=tclt \
    --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
    --set analyzer.total_analyzing_tokens=2048 --set eval=null --set output_dir=aclt_l2 --set logging.progress=off \
    --set analyzer.clt_layer=2
  layer_db="$(/usr/bin/python3 - aclt/default.sqlite aclt_l2/default.sqlite <<'PY' 2>&1
import sqlite3, sys
full, one = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
meta = dict(one.execute("select key, value from meta"))
assert meta["d_sae"] == "256" and meta["clt_layer"] == "2", meta
a = full.execute("select act_times, max_act from features where id >= 512 and id < 768 order by id").fetchall()
b = one.execute("select act_times, max_act from features order by id").fetchall()
assert len(b) == 256 and all(x[0] == y[0] and abs(x[1] - y[1]) <= 1e-5 * max(x[1], 1e-6) for x, y in zip(a, b)), (a[:3], b[:3])
assert sum(x[0] for x in b) > 0
print("ok")
PY
)"
  if [ "$layer_db" = ok ]; then ok; else bad "clt_layer analysis: $layer_db"; fi
  expect "clt analyze clt_layer out of range" 2 'analyzer.clt_layer: expected 0..4 \(the dictionary.s layers\), got 7' -- \
    "$bin/saes-analyze" "$root/configs/analyze-stories260k-clt.yaml" --set sae.pretrained_name_or_path=tclt \
    --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
    --set output_dir=aclt_bad --set analyzer.clt_layer=7
  one_line "clt analyze clt_layer out of range"
fi

if [ -n "$assets" ] && [ -s tclt/sae_weights.safetensors ]; then
  # probe --dictionary: the hooks it reads, its feature acts as the variant shapes them and one
  # reconstruction per label hook; an SAE run folder works the same way.
  expect "probe --dictionary clt" 0 '' -- "$bin/saes-generate" probe --model "$assets/llama2c-stories260K/stories260K.bin" \
    --text "Once upon a time" --dictionary tclt --output pclt.safetensors
  if grep -Eq '^tclt.feature_acts +\[1, [0-9]+, 5, 256\]' out.txt && grep -q '^tclt.reconstruction.blocks.4.hook_mlp_out ' out.txt &&
    grep -q '^blocks.2.ln2.hook_normalized ' out.txt && [ -s pclt.safetensors ]; then ok; else bad "probe --dictionary clt: $(cat out.txt)"; fi
  if [ -s t1/sae_weights.safetensors ]; then
    expect "probe --dictionary sae" 0 '' -- "$bin/saes-generate" probe --model "$assets/llama2c-stories260K/stories260K.bin" \
      --text "Once upon a time" --dictionary t1 --output psae.safetensors
    if grep -Eq '^t1.feature_acts +\[1, [0-9]+, 512\]' out.txt && grep -q '^t1.reconstruction.blocks.3.hook_resid_post ' out.txt; then ok
    else bad "probe --dictionary sae: $(cat out.txt)"; fi
  fi
  expect "probe --dictionary missing" 3 'nowhere does not exist' -- "$bin/saes-generate" probe \
    --model "$assets/llama2c-stories260K/stories260K.bin" --text "Once" --dictionary nowhere --output p.safetensors
fi

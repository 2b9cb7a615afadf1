# Lorsa cases (sourced by run_cli_tests.sh): one-line rejections of Lorsa configs that cannot
# work; with the assets: the example config trained on the fly from stories260K (k annealed to 16,
# the original's tensor names and buffers in the weights), a checkpointed run resumed to the
# same metrics, and the MHSA + active-subspace init from the model's own layer.
lorsa_cfg="$root/configs/train-stories260k-lorsa.yaml"
expect "lorsa 1-D activations" 2 'activation_factory.target: a lorsa trains on sequences' -- \
  "$bin/saes-train" "$lorsa_cfg" --set activation_factory.target=activations-1d
one_line "lorsa 1-D activations"
expect "lorsa ov group" 2 'sae.n_qk_heads: d_sae 512 must be divisible by n_qk_heads 7' -- \
  "$bin/saes-train" "$lorsa_cfg" --set sae.n_qk_heads=7
expect "lorsa same hooks" 2 'sae.hook_point_out: a lorsa reconstructs another hook than it reads' -- \
  "$bin/saes-train" "$lorsa_cfg" --set sae.hook_point_out=blocks.2.ln1.hook_normalized \
  --set 'activation_factory.hook_points=[blocks.2.ln1.hook_normalized]'
expect "lorsa key on an sae" 2 'sae.n_qk_heads: is for sae_type lorsa only' -- \
  "$bin/saes-train" "$train_cfg" --set sae.n_qk_heads=4
expect "lorsa mhsa init without model_layer" 2 'initializer.model_layer: required with initialize_lorsa_with_mhsa' -- \
  "$bin/saes-train" "$lorsa_cfg" --set initializer.initialize_lorsa_with_mhsa=true
expect "mhsa init on an sae" 2 'initializer.initialize_lorsa_with_mhsa: only for sae_type lorsa' -- \
  "$bin/saes-train" "$train_cfg" --set initializer.initialize_lorsa_with_mhsa=true --set initializer.model_layer=2
expect "model cache_dir" 5 'model.cache_dir: not supported: saes does not download models' -- \
  "$bin/saes-train" "$lorsa_cfg" --set model.cache_dir=/tmp/hf-cache --set trainer.exp_result_path=tcache
[ ! -e tcache ] && ok || bad "a refused model.cache_dir left tcache"

if [ -n "$assets" ] && [ -d "$assets/llama2c-stories260K" ]; then
  lorsa_live=(--set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin"
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin"
    --set "datasets.tinystories.paths=[$work/stories.txt]" --set trainer.total_training_tokens=16384
    --set trainer.log_frequency=2 --set logging.progress=off --threads 1)
  expect "dataset is_dataset_on_disk" 5 'is_dataset_on_disk: not supported' -- \
    "$bin/saes-train" "$lorsa_cfg" "${lorsa_live[@]}" --set datasets.tinystories.is_dataset_on_disk=true --set trainer.exp_result_path=tdisk
  expect "generator_device cuda" 5 'buffer_shuffle.generator_device: "cuda" is not supported' -- \
    "$bin/saes-train" "$lorsa_cfg" "${lorsa_live[@]}" --set 'activation_factory.buffer_shuffle={perm_seed: 1, generator_device: cuda}' --set trainer.exp_result_path=tgen
  expect "lorsa rotary_scale" 5 'sae.rotary_scale: only 1 is supported' -- \
    "$bin/saes-train" "$lorsa_cfg" "${lorsa_live[@]}" --set sae.rotary_scale=2 --set trainer.exp_result_path=tlsc
  expect "lorsa train on the fly" 0 '' -- "$bin/saes-train" "$lorsa_cfg" "${lorsa_live[@]}" \
    --set trainer.exp_result_path=tlorsa --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear
  if [ "$(wc -l <tlorsa/metrics.jsonl)" = 4 ] && tail -1 tlorsa/metrics.jsonl | grep -Eq '"metrics/l0": ?16(\.0*)?[,}]' &&
    grep -q '"W_Q"' tlorsa/sae_weights.safetensors && grep -q '"rotary_sin"' tlorsa/sae_weights.safetensors &&
    grep -q 'lorsa' tlorsa/sae_weights.safetensors; then ok; else bad "lorsa run folder: $(ls tlorsa; cat tlorsa/metrics.jsonl)"; fi
  # OV-head parallelism: 2 model ranks (4 QK heads and their OV heads each) train what one
  # process trains (metrics equal to float32 rounding of the partial sums)
  if command -v mpirun >/dev/null; then
    expect "lorsa model parallel" 0 '' -- timeout 300 mpirun --oversubscribe --bind-to none -np 2 \
      "$bin/saes-train" "$lorsa_cfg" "${lorsa_live[@]}" --set trainer.exp_result_path=tlmp --set model_parallel_size=2
    if python3 -c 'import json,sys; a=[json.loads(l) for l in open(sys.argv[1])]; b=[json.loads(l) for l in open(sys.argv[2])]; sys.exit(not (len(a)==len(b)==4 and all(abs(x["losses/mse_loss"]-y["losses/mse_loss"])<=1e-4*abs(x["losses/mse_loss"]) and x["metrics/l0"]==y["metrics/l0"] for x,y in zip(a,b))))' tlorsa/metrics.jsonl tlmp/metrics.jsonl; then ok; else bad "lorsa model-parallel metrics differ: $(cat tlmp/metrics.jsonl)"; fi
    expect "lorsa model parallel needs whole QK heads" 2 'model_parallel_size: must divide sae.n_qk_heads \(8\)' -- \
      "$bin/saes-train" "$lorsa_cfg" --set model_parallel_size=16 --set sae.n_qk_heads=8 --set sae.expansion_factor=16
  fi
  # Q/K copied from the model's layer-2 attention, W_V/W_O in its heads' value subspaces
  expect "lorsa mhsa + active-subspace init" 0 'init: Q/K from model .*stories260K.bin blocks.2.attn \(8 heads repeated to 8\)' -- \
    "$bin/saes-train" "$lorsa_cfg" "${lorsa_live[@]}" --set trainer.exp_result_path=tlmhsa \
    --set initializer.initialize_lorsa_with_mhsa=true --set initializer.initialize_W_D_with_active_subspace=true \
    --set initializer.model_layer=2 --set initializer.init_encoder_bias_with_mean_hidden_pre=true
  if grep -q 'init: decoder in the active subspace of each head' err.txt && [ -s tlmhsa/sae_weights.safetensors ]; then ok; else bad "lorsa mhsa init: $(cat err.txt)"; fi
  expect "lorsa mhsa init on another layer" 2 'initializer.initialize_lorsa_with_mhsa: with model_layer 1 the dictionary must read blocks.1.ln1.hook_normalized' -- \
    "$bin/saes-train" "$lorsa_cfg" "${lorsa_live[@]}" --set trainer.exp_result_path=tlmhsa1 \
    --set initializer.initialize_lorsa_with_mhsa=true --set initializer.model_layer=1
  [ ! -e tlmhsa1/sae_weights.safetensors ] && ok || bad "a refused init left weights"
  # saes-analyze: z-patterns of the sampled contexts, spliced evaluation at hook_attn_out
  expect "lorsa analyze" 0 'z-patterns of [0-9]+ sampled contexts' -- "$bin/saes-analyze" "$root/configs/analyze-stories260k.yaml" \
    --set sae.pretrained_name_or_path=tlmhsa --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
    --set 'activation_factory.hook_points=[blocks.2.ln1.hook_normalized, blocks.2.hook_attn_out]' --set output_dir=alorsa \
    --set analyzer.total_analyzing_tokens=4096 --set 'eval={total_eval_tokens: 4096, batch_size: 16}' --set logging.progress=off
  if python3 -c 'import sqlite3,sys,math; c=sqlite3.connect(sys.argv[1]); n=c.execute("select count(*) from z_patterns").fetchone()[0]; m=dict(c.execute("select metric, value from eval")); sys.exit(not (n > 100 and all(math.isfinite(m[k]) for k in ("loss_recovered", "explained_variance", "kl_div_spliced"))))' alorsa/default.sqlite; then ok; else bad "lorsa analysis db"; fi
  # the original's layout: config.json + sae_weights.safetensors without saes metadata (what the
  # original writes, buffers included) imports; ours exports with the original's key set
  expect "lorsa to native" 0 'wrote lnat' -- "$bin/saes-convert" tlorsa --to native lnat
  mkdir -p lorig && cp lnat/config.json lorig/ && python3 -c 'import json,struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; h=json.loads(b[8:8+n]); h.pop("__metadata__"); t=json.dumps(h).encode(); t+=b" "*((8-len(t)%8)%8); open(sys.argv[2],"wb").write(struct.pack("<Q",len(t))+t+b[8+n:])' lnat/sae_weights.safetensors lorig/sae_weights.safetensors
  expect "lorsa original layout import" 0 'read lorig \(lmsaes layout\): act_fn topk, d_model 64, d_sae 512' -- "$bin/saes-convert" lorig --to native lback
  if grep -q '"n_qk_heads": 8' lnat/config.json && grep -q '"sae_type": "lorsa"' lnat/config.json; then ok; else bad "lorsa config.json: $(cat lnat/config.json)"; fi
  # probe: a Lorsa run folder (the whole context at once), and --ids on a model without a
  # tokenizer beside it (#20)
  expect "probe --dictionary lorsa" 0 '' -- "$bin/saes-generate" probe --model "$assets/llama2c-stories260K/stories260K.bin" \
    --text "Once upon a time" --dictionary tlorsa --output plorsa.safetensors
  if grep -Eq '^tlorsa.feature_acts +\[1, [0-9]+, 512\]' out.txt && grep -q '^tlorsa.reconstruction.blocks.2.hook_attn_out ' out.txt; then ok
  else bad "probe --dictionary lorsa: $(cat out.txt)"; fi
  mkdir -p notok && cp "$assets/llama2c-stories260K/stories260K.bin" notok/
  expect "probe --ids without a tokenizer" 0 '' -- "$bin/saes-generate" probe --model notok/stories260K.bin --ids 1,403,407 --logits --output pids.safetensors
  grep -q 'logits .*\[1, 3, 512\]' out.txt && ok || bad "probe --ids: $(cat out.txt)"
  expect "probe --text without a tokenizer" 3 'no tokenizer' -- "$bin/saes-generate" probe --model notok/stories260K.bin --text "Once" --logits --output ptext.safetensors
  ev=$(tail -1 tlorsa/metrics.jsonl | python3 -c 'import json,sys; print(json.load(sys.stdin)["metrics/explained_variance"])')
  echo "cli: lorsa on the fly, 8 steps: explained variance $ev"
  # a resumed run continues to the same metrics
  rm -rf tlorsa2 && cp -r tlorsa tlorsa2 && rm tlorsa2/sae_weights.safetensors
  expect "lorsa --resume" 0 'resuming from' -- "$bin/saes-train" --resume tlorsa2/checkpoints/step_4
  # the resumed process runs the model with the default thread count: float32 last bits differ
  if python3 -c 'import json,sys; a=[json.loads(l) for l in open(sys.argv[1])]; b=[json.loads(l) for l in open(sys.argv[2])]; sys.exit(not (len(a)==len(b)==4 and all(abs(x["losses/mse_loss"]-y["losses/mse_loss"])<=1e-4*abs(x["losses/mse_loss"]) for x,y in zip(a,b))))' tlorsa/metrics.jsonl tlorsa2/metrics.jsonl; then ok; else bad "lorsa resumed metrics differ"; fi
fi

# saes-train cases (sourced by run_cli_tests.sh): one-line rejections of bad setups, and with the
# assets: resume through --resume equal to an uninterrupted run, a sweep in sub-folders, and the
# transcoder example on the fly.
expect "train k > d_sae" 2 'sae.top_k: expected 1 <= top_k <= d_sae \(512\), got 1000' -- \
  "$bin/saes-train" "$train_cfg" --set sae.top_k=1000 --set trainer.initial_k=null
one_line "train k > d_sae"
expect "train amp_dtype" 5 'trainer.amp_dtype: mixed-precision autocast is not implemented' -- \
  "$bin/saes-train" "$train_cfg" --set trainer.amp_dtype=bfloat16
one_line "train amp_dtype"
expect "train eval" 5 'eval: evaluation during training is not implemented' -- \
  "$bin/saes-train" "$train_cfg" --set eval=true
expect "train sweep run-level key" 2 'sweep item a: trainer.log_frequency is shared by every dictionary' -- \
  "$bin/saes-train" "$train_cfg" --set 'sweep=[{sae_name: a, set: [trainer.log_frequency=3]}]'
one_line "train sweep run-level key"
expect "train missing shards" 3 'no-such-shards' -- "$bin/saes-train" "$train_cfg" \
  --set 'activation_factory.sources=[{type: activations, name: x, path: no-such-shards}]'
one_line "train missing shards"
expect "train resume without checkpoint folder" 3 'no-such-run' -- "$bin/saes-train" --resume no-such-run
expect "train without config or resume" 2 'config is required' -- "$bin/saes-train"

if [ -n "$assets" ] && [ -d "$assets/llama2c-stories260K" ]; then
  g1_set=(--set 'activation_factory.sources=[{type: activations, name: g1, path: g1}]'
    --set activation_factory.batch_size=500 --set trainer.total_training_tokens=5000
    --set trainer.log_frequency=1 --set logging.progress=off)
  expect "train d_model mismatch" 2 'd_model 64 does not match d_model 32' -- \
    "$bin/saes-train" "$train_cfg" "${g1_set[@]}" --set sae.d_model=32 --set trainer.exp_result_path=tdm
  one_line "train d_model mismatch"

  # Resume: a run interrupted after its step-5 checkpoint (final weights gone, metrics cut back
  # by the resume) continues to the same metrics and weights.
  expect "train with checkpoints" 0 '' -- "$bin/saes-train" "$train_cfg" "${g1_set[@]}" \
    --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear --set trainer.exp_result_path=tfull
  for target in tres tres/checkpoints/step_5; do
    rm -rf tres && cp -r tfull tres && rm tres/sae_weights.safetensors
    expect "train --resume $target" 0 'resuming from .*step_5' -- "$bin/saes-train" --resume "$target"
    if cmp -s tfull/metrics.jsonl tres/metrics.jsonl && [ "$(wc -l <tres/metrics.jsonl)" = 10 ] &&
      cmp -s tfull/sae_weights.safetensors tres/sae_weights.safetensors; then ok; else bad "train --resume $target: metrics or weights differ"; fi
  done

  # Resume on other data (#22 item 7): g1 regenerated from other text at the same path is refused
  # (the checkpoint records the manifest digest); resume_allow_data_change: true accepts it.
  awk 'NR % 2 == 0' stories.txt >stories_other.txt
  expect "generate other data" 0 '' -- "$bin/saes-generate" "$gen_cfg" "${gen_set[@]}" \
    --set "dataset.paths=[$work/stories_other.txt]" --set output_dir=gother
  mv g1 g1.orig && mv gother g1
  rm -rf tres && cp -r tfull tres && rm tres/sae_weights.safetensors
  expect "train --resume on other data" 2 'source g1 \(g1\) is not the data the checkpoint was trained on .*resume_allow_data_change' -- \
    "$bin/saes-train" --resume tres
  if [ ! -e tres/sae_weights.safetensors ] && [ "$(wc -l <tres/metrics.jsonl)" = 10 ]; then ok; else bad "refused resume changed the run folder"; fi
  expect "train --resume on other data, allowed" 0 'resuming from' -- \
    "$bin/saes-train" --resume tres --set resume_allow_data_change=true
  mv g1 gother && mv g1.orig g1
  # Other trainer settings are refused on resume (#22 item 1); a longer run is a continuation.
  rm -rf tres && cp -r tfull tres && rm tres/sae_weights.safetensors
  expect "train --resume with another lr" 2 'tres was trained with other trainer settings \(this run: lr: 0.5; the run.s config.resolved.yaml has lr: ' -- \
    "$bin/saes-train" --resume tres --set trainer.lr=0.5
  one_line "train --resume with another lr"
  expect "train --resume longer" 0 'resuming from .*step_5' -- "$bin/saes-train" --resume tres/checkpoints/step_5/ \
    --set trainer.total_training_tokens=6000

  # A sweep: one sub-folder per dictionary; the k16 member is the single run t1 (same settings).
  expect "train sweep" 0 '' -- "$bin/saes-train" "$train_cfg" "${g1_set[@]}" --set trainer.log_frequency=5 \
    --set 'sweep=[{sae_name: k8, set: [sae.top_k=8, trainer.initial_k=32]}, {sae_name: k16}]' --set trainer.exp_result_path=tsweep
  if grep -Eq '"metrics/l0": ?8(\.0*)?[,}]' tsweep/k8/metrics.jsonl && cmp -s t1/metrics.jsonl tsweep/k16/metrics.jsonl &&
    [ -s tsweep/k8/sae_weights.safetensors ] && [ -f tsweep/k8/config.resolved.yaml ]; then ok; else bad "train sweep folders: $(ls tsweep tsweep/k8)"; fi

  # The transcoder example, on the fly from the model, for 8 steps.
  expect "train transcoder" 0 '' -- "$bin/saes-train" "$root/configs/train-stories260k-transcoder.yaml" \
    --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
    --set activation_factory.batch_size=512 --set trainer.total_training_tokens=4096 --set trainer.log_frequency=4 \
    --set trainer.exp_result_path=ttc --set logging.progress=off
  if [ "$(wc -l <ttc/metrics.jsonl)" = 2 ] && grep -Eq '"metrics/l0": ?16(\.0*)?[,}]' ttc/metrics.jsonl &&
    grep -q 'blocks.3.hook_mlp_out' ttc/sae_weights.safetensors; then ok; else bad "train transcoder run folder: $(ls ttc)"; fi
  # ... initialized from the model's MLP (spec §4 step 7), the decoder then in the label's top
  # 32-dimensional subspace
  expect "train transcoder mlp init" 0 'init: decoder from the MLP of model .*stories260K.bin blocks.3' -- \
    "$bin/saes-train" "$root/configs/train-stories260k-transcoder.yaml" \
    --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin" \
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin" --set "datasets.tinystories.paths=[$work/stories.txt]" \
    --set activation_factory.batch_size=512 --set trainer.total_training_tokens=4096 --set trainer.log_frequency=4 \
    --set trainer.exp_result_path=ttcmlp --set logging.progress=off --set initializer.initialize_tc_with_mlp=true \
    --set initializer.model_layer=3 --set initializer.init_encoder_with_decoder_transpose=false \
    --set initializer.initialize_W_D_with_active_subspace=true --set initializer.d_active_subspace=32
  grep -q 'init: decoder in the active subspace of dimension 32' err.txt && ok || bad "no active-subspace line: $(cat err.txt)"
fi

# saes-analyze (sourced by ../run_cli_tests.sh): bad inputs give one-line errors with the right
# exit codes; with assets, a 2-D analysis of the trained TopK run t1/ writes a database that
# `export` turns into one JSON per feature.
cat >analyze.yaml <<'YAML'
sae: {pretrained_name_or_path: nowhere}
sae_name: x
sae_series: x
activation_factory:
  sources: [{type: activations, name: a, path: nowhere}]
  target: activations-2d
  hook_points: [blocks.3.hook_resid_post]
  batch_size: 4
analyzer: {total_analyzing_tokens: 100}
output_dir: out
device_type: cpu
YAML
expect "analyze missing run folder" 3 'sae.pretrained_name_or_path: nowhere does not exist' -- "$bin/saes-analyze" analyze.yaml
one_line "analyze missing run folder"
expect "analyze 1-d target" 2 'activations-2d' -- "$bin/saes-analyze" analyze.yaml --set activation_factory.target=activations-1d
expect "analyze export missing db" 3 'nothere.sqlite: no such database file' -- "$bin/saes-analyze" export nothere.sqlite json
one_line "analyze export missing db"
expect "analyze model ranks without mpirun" 2 'model_parallel_size \(2\) = 2 needs 2 ranks' -- "$bin/saes-analyze" analyze.yaml --set model_parallel_size=2

if [ -n "$assets" ] && [ -d t1 ]; then
  an_set=(--set sae.pretrained_name_or_path=t1
    --set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin"
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin"
    --set "datasets.tinystories.paths=[$work/stories.txt]"
    --set analyzer.total_analyzing_tokens=2048 --set output_dir=a1 --set logging.progress=off)
  an_cfg="$root/configs/analyze-stories260k.yaml"
  expect "analyze" 0 '' -- "$bin/saes-analyze" "$an_cfg" "${an_set[@]}"
  if [ -s a1/default.sqlite ] && [ ! -e a1/default.sqlite.tmp ] && [ -f a1/config.resolved.yaml ]; then ok; else bad "analyze output: $(ls a1)"; fi
  # A full disk (a 100 KiB file-size limit) while writing the database: exit 3, no .tmp left,
  # and the next run into the same folder succeeds.
  expect "analyze on a full disk" 3 'default.sqlite.tmp' -- bash -c 'trap "" XFSZ; ulimit -f 100; exec "$@"' limited \
    "$bin/saes-analyze" "$an_cfg" "${an_set[@]}" --set output_dir=afull
  if [ ! -e afull/default.sqlite.tmp ] && [ ! -e afull/default.sqlite ]; then ok; else bad "full disk left: $(ls afull)"; fi
  expect "analyze after the full disk" 0 '' -- "$bin/saes-analyze" "$an_cfg" "${an_set[@]}" --set output_dir=afull
  expect "analyze export" 0 '' -- "$bin/saes-analyze" export a1/default.sqlite a1/json
  if [ "$(ls a1/json/feature_*.json | wc -l)" = 512 ] && grep -q '"token_texts"' a1/json/feature_0.json; then ok; else bad "export files: $(ls a1/json | head)"; fi
  expect "analyze unknown hook" 2 "blocks.3.hook_resid_post" -- "$bin/saes-analyze" "$an_cfg" "${an_set[@]}" \
    --set 'activation_factory.hook_points=[blocks.2.hook_resid_post]'
  one_line "analyze unknown hook"
fi

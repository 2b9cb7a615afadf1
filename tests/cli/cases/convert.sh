# saes-convert: export the trained TopK run t1/ to SAELens (v6 and v5), import it back, TopK ->
# JumpReLU on the g1/ shards, dtype casts, and bad inputs (one-line errors, exit codes, no partial
# output). Sourced by run_cli_tests.sh (needs assets for t1/ and g1/).
expect "convert no args" 2 "config is required" -- "$bin/saes-convert"
expect "convert one non-yaml arg" 2 "expected INPUT OUTPUT" -- "$bin/saes-convert" nothere
one_line "convert one non-yaml arg"
expect "convert missing input" 3 "input nothere does not exist" -- "$bin/saes-convert" nothere --to saelens cx
one_line "convert missing input"
if [ ! -e cx ] && [ ! -e cx.tmp ]; then ok; else bad "convert missing input left output behind"; fi
expect "convert bad --to" 2 "to:" -- "$bin/saes-convert" nothere --to onnx cx
mkdir -p notadict && echo '{}' >notadict/cfg.json
expect "convert unknown layout" 3 "no known dictionary layout" -- "$bin/saes-convert" notadict --to native cx
one_line "convert unknown layout"
if [ -s t1/sae_weights.safetensors ]; then
  expect "convert export saelens" 0 '' -- "$bin/saes-convert" t1 --to saelens sl6 --model-name stories260K
  if python3 -c 'import json,sys; c=json.load(open("sl6/cfg.json")); assert c["architecture"]=="topk" and c["k"]==16 and c["normalize_activations"]=="none" and c["metadata"]["sae_lens_version"].startswith("6") and c["metadata"]["model_name"]=="stories260K"' && [ -s sl6/sae_weights.safetensors ] && [ ! -e sl6.tmp ]; then ok; else bad "saelens v6 folder: $(cat sl6/cfg.json)"; fi
  expect "convert existing output" 2 "not empty; pass --overwrite" -- "$bin/saes-convert" t1 --to saelens sl6
  one_line "convert existing output"
  expect "convert overwrite" 0 '' -- "$bin/saes-convert" t1 --to saelens sl6 --overwrite
  expect "convert export saelens v5" 0 '' -- "$bin/saes-convert" t1 --to saelens sl5 --saelens-version 5
  if python3 -c 'import json; c=json.load(open("sl5/cfg.json")); assert c["activation_fn_str"]=="topk" and c["activation_fn_kwargs"]["k"]==16 and c["hook_layer"]==3 and "metadata" not in c'; then ok; else bad "saelens v5 cfg: $(cat sl5/cfg.json)"; fi
  expect "convert import saelens" 0 'saelens layout' -- "$bin/saes-convert" sl6 --to native back
  if [ -s back/sae_weights.safetensors ] && [ -s back/config.json ]; then ok; else bad "native import folder: $(ls back)"; fi
  expect "convert round trip to saelens again" 0 '' -- "$bin/saes-convert" back --to saelens sl6b
  if cmp -s sl6/sae_weights.safetensors sl6b/sae_weights.safetensors; then ok; else bad "export -> import -> export changed the weights"; fi
  expect "convert bf16" 0 '' -- "$bin/saes-convert" t1 bf16 --dtype bf16
  if grep -q '"BF16"' bf16/sae_weights.safetensors; then ok; else bad "bf16 native weights"; fi
  expect "convert bad dtype" 2 "dtype" -- "$bin/saes-convert" t1 bfx --dtype int8
  expect "convert unfold" 0 '' -- "$bin/saes-convert" t1 unfolded --unfold
  if grep -q '"saes_folded":"false"' unfolded/sae_weights.safetensors; then ok; else bad "unfold state not recorded"; fi
  expect "convert topk to jumprelu" 0 'topk -> jumprelu: threshold' -- "$bin/saes-convert" t1 --to saelens jr --topk-to-jumprelu --activations g1 --batch-size 500
  if python3 -c 'import json; c=json.load(open("jr/cfg.json")); assert c["architecture"]=="jumprelu"'; then ok; else bad "jumprelu export: $(cat jr/cfg.json)"; fi
  expect "convert topk to jumprelu without data" 2 "activation_factory" -- "$bin/saes-convert" t1 jr2 --topk-to-jumprelu
  if [ ! -e jr2 ] && [ ! -e jr2.tmp ]; then ok; else bad "failed conversion left output behind"; fi
fi

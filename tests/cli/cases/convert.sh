# saes-convert: export the trained TopK run t1/ to SAELens (v6 and v5), import it back, TopK ->
# JumpReLU on the g1/ shards, dtype casts, sparsity.safetensors from analyze.sh's a1/default.sqlite,
# and bad inputs (one-line errors, exit codes, no partial output). Sourced by run_cli_tests.sh
# (needs assets for t1/ and g1/).
expect "convert no args" 2 "config is required" -- "$bin/saes-convert"
expect "convert one non-yaml arg" 2 "expected INPUT OUTPUT" -- "$bin/saes-convert" nothere
one_line "convert one non-yaml arg"
expect "convert missing input" 3 "input nothere does not exist" -- "$bin/saes-convert" nothere --to saelens cx
one_line "convert missing input"
if [ ! -e cx ] && [ ! -e cx.tmp ]; then ok; else bad "convert missing input left output behind"; fi
expect "convert bad --to" 2 "to:" -- "$bin/saes-convert" nothere --to onnx cx
expect "convert sparsity with native output" 2 "sparsity_from" -- "$bin/saes-convert" nothere cx --sparsity x.sqlite
one_line "convert sparsity with native output"
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
  # The output never replaces, lands inside or holds the input, even with --overwrite.
  t1_before="$(ls -R t1 | cksum)"
  expect "convert onto its input" 2 'output t1: is, or lies inside, the input t1' -- "$bin/saes-convert" t1 t1 --overwrite
  one_line "convert onto its input"
  expect "convert into its input" 2 'output t1/sub: is, or lies inside, the input' -- "$bin/saes-convert" t1 t1/sub --overwrite
  expect "convert onto its input file" 2 'is, or lies inside, the input t1/sae_weights.safetensors' -- \
    "$bin/saes-convert" t1/sae_weights.safetensors ./t1/sae_weights.safetensors --overwrite
  expect "convert over a folder holding the input" 2 'output .: contains the input t1' -- "$bin/saes-convert" t1 . --overwrite
  [ "$(ls -R t1 | cksum)" = "$t1_before" ] && [ ! -e t1/sub ] && ok || bad "a refused conversion changed t1: $(ls t1)"
  expect "convert unfold" 0 '' -- "$bin/saes-convert" t1 unfolded --unfold
  if grep -q '"saes_folded":"false"' unfolded/sae_weights.safetensors; then ok; else bad "unfold state not recorded"; fi
  expect "convert topk to jumprelu" 0 'topk -> jumprelu: threshold' -- "$bin/saes-convert" t1 --to saelens jr --topk-to-jumprelu --activations g1 --batch-size 500
  if python3 -c 'import json; c=json.load(open("jr/cfg.json")); assert c["architecture"]=="jumprelu"'; then ok; else bad "jumprelu export: $(cat jr/cfg.json)"; fi
  if [ -s a1/default.sqlite ]; then
    expect "convert sparsity" 0 'sparsity.safetensors from a1/default.sqlite' -- "$bin/saes-convert" t1 --to saelens sp --sparsity a1/default.sqlite
    # The tensor (parsed from the raw safetensors bytes) must be log10(frequency + 1e-10) per feature id.
    if python3 - <<'PY'
import json, math, sqlite3, struct
raw = open("sp/sparsity.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
header.pop("__metadata__", None)
assert list(header) == ["sparsity"], header
t = header["sparsity"]
assert t["dtype"] == "F32" and t["shape"] == [512], t
b, e = t["data_offsets"]
vals = struct.unpack("<512f", raw[8 + n + b:8 + n + e])
freq = [f for (f,) in sqlite3.connect("a1/default.sqlite").execute("SELECT frequency FROM features ORDER BY id")]
assert len(freq) == 512
for v, f in zip(vals, freq):
    assert abs(v - math.log10(f + 1e-10)) < 1e-6, (v, f)
    assert f > 0 or v == -10.0, (v, f)
PY
    then ok; else bad "sparsity.safetensors values"; fi
    expect "convert import saelens with sparsity" 0 'sparsity.safetensors present' -- "$bin/saes-convert" sp --to native spn
    expect "convert sparsity missing db" 3 'nothere.sqlite' -- "$bin/saes-convert" t1 --to saelens spx --sparsity nothere.sqlite
    cp a1/default.sqlite d256.sqlite
    python3 -c "import sqlite3; c = sqlite3.connect('d256.sqlite'); c.execute(\"UPDATE meta SET value = '256' WHERE key = 'd_sae'\"); c.commit()"
    expect "convert sparsity d_sae mismatch" 3 'd_sae 256, the dictionary has d_sae 512' -- "$bin/saes-convert" t1 --to saelens spx --sparsity d256.sqlite
    if [ ! -e spx ] && [ ! -e spx.tmp ]; then ok; else bad "failed sparsity export left output behind"; fi
  fi
  expect "convert topk to jumprelu without data" 2 "activation_factory" -- "$bin/saes-convert" t1 jr2 --topk-to-jumprelu
  if [ ! -e jr2 ] && [ ! -e jr2.tmp ]; then ok; else bad "failed conversion left output behind"; fi
fi

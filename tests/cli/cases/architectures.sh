# Architecture cases (sourced by run_cli_tests.sh): `saes-generate probe --ids` on each Qwen3,
# Mistral and Gemma 2/3 fixture folder of tests/data/hf (no tokenizer there, ids given), and the
# probed hooks and logits against the float64 reference values in the folder's
# reference.safetensors (tests/reference/make_arch_fixtures.py), 1e-4 + 1e-4 x scale.
cat >compare_probe.py <<'PY'
import json, struct, sys
def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        fmt = {"F32": "f", "I64": "q"}[h["dtype"]]
        out[name] = (h["shape"], struct.unpack(f"<{(b - a) // struct.calcsize(fmt)}{fmt}", data[a:b]))
    return out
probe, ref = read(sys.argv[1]), read(sys.argv[2])
names = [n for n in probe if n != "tokens"]
assert len(names) >= 3, names
for name in names:
    shape, got = probe[name]
    ref_shape, want = ref[name]
    row = len(want) // ref_shape[0]  # the reference holds two rows; the probe ran the first
    want = want[:row]
    assert shape == [1] + ref_shape[1:], (name, shape, ref_shape)
    scale = max(abs(v) for v in want)
    err = max(abs(g - w) for g, w in zip(got, want))
    assert err < 1e-4 + 1e-4 * scale, (name, err, scale)
print("compared", len(names), "arrays")
PY
for fixture in qwen3 mistral gemma2 gemma3 gemma3-multimodal; do
  dir="$root/tests/data/hf/$fixture"
  ids=$(python3 -c 'import json,struct,sys
f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; h=json.loads(f.read(n)); d=f.read()
a,b=h["input_ids"]["data_offsets"]; v=struct.unpack("<%dq"%((b-a)//8),d[a:b]); print(",".join(map(str,v[:len(v)//2])))' "$dir/reference.safetensors")
  hooks="blocks.1.hook_resid_post,blocks.0.attn.hook_q,blocks.1.hook_mlp_out"
  case "$fixture" in gemma*) hooks="$hooks,blocks.1.ln1_post.hook_normalized,blocks.0.ln2_post.hook_normalized" ;; esac
  expect "probe $fixture" 0 '' -- "$bin/saes-generate" probe --model "$dir" --ids "$ids" --hooks "$hooks" --logits --output "probe-$fixture.safetensors"
  python3 compare_probe.py "probe-$fixture.safetensors" "$dir/reference.safetensors" >cmp.txt 2>&1 && ok || bad "probe $fixture vs reference: $(cat cmp.txt)"
done
expect "no sandwich-norm hooks on qwen3" 2 "unknown hook 'blocks.0.ln1_post.hook_normalized'" -- \
  "$bin/saes-generate" probe --model "$root/tests/data/hf/qwen3" --ids 1,2 --hooks blocks.0.ln1_post.hook_normalized --output pbad.safetensors
one_line "no sandwich-norm hooks on qwen3"
[ ! -e pbad.safetensors ] && ok || bad "a refused probe left pbad.safetensors"
mkdir -p badgemma && cp "$root/tests/data/hf/gemma3/model.safetensors" badgemma/ &&
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["layer_types"]=["full_attention"]; json.dump(c,open(sys.argv[2],"w"))' "$root/tests/data/hf/gemma3/config.json" badgemma/config.json
expect "gemma3 layer_types length" 2 "badgemma/config.json: key 'layer_types' must list one type per layer \(3\)" -- \
  "$bin/saes-generate" probe --model badgemma --ids 1,2 --logits --output pbad.safetensors
one_line "gemma3 layer_types length"

# Circuit-tracing cases (sourced by run_cli_tests.sh): `saes-analyze attribute` refuses configs
# that cannot work (one line, exit 2); with the assets: a CLT trained on the fly traces "Once upon
# a time there was a little" on stories260K into circuit-tracer JSON (the format's required
# fields, node ids, links between emitted nodes, the front-end's constraints) and graphs.sqlite,
# a second run of the same graph is refused and changes nothing, and per-layer transcoders (two
# layers; the others are error nodes) trace the same prompt.
attr_cfg="$root/configs/attribute-stories260k.yaml"
expect "attribute prompt and prompt_ids" 2 'prompt: set exactly one of prompt \(text\) and prompt_ids' -- \
  "$bin/saes-analyze" attribute "$attr_cfg" --set 'prompt_ids=[1, 2]'
one_line "attribute prompt and prompt_ids"
expect "attribute graph_name path" 2 'graph_name: is a file name, not a path' -- \
  "$bin/saes-analyze" attribute "$attr_cfg" --set graph_name=a/b
expect "attribute thresholds" 2 'attribution.node_threshold: expected in \(0, 1\], got 1.5' -- \
  "$bin/saes-analyze" attribute "$attr_cfg" --set attribution.node_threshold=1.5

if [ -n "$assets" ] && [ -d "$assets/llama2c-stories260K" ]; then
  lm_set=(--set "model.model_from_pretrained_path=$assets/llama2c-stories260K/stories260K.bin"
    --set "model.tokenizer_path=$assets/llama2c-stories260K/tok512.bin")
  fly=("${lm_set[@]}" --set "datasets.tinystories.paths=[$work/stories.txt]" --set activation_factory.batch_size=512
    --set trainer.total_training_tokens=8192 --set trainer.log_frequency=8 --set logging.progress=off --threads 1)
  expect "attribute: train a clt" 0 '' -- "$bin/saes-train" "$root/configs/train-stories260k-clt.yaml" "${fly[@]}" \
    --set trainer.exp_result_path=ctclt
  expect "attribute with a clt" 0 'graph once-upon: 9 tokens, .* kept [0-9]+ nodes and [0-9]+ links; replacement score' -- \
    "$bin/saes-analyze" attribute "$attr_cfg" "${lm_set[@]}" --set 'dictionaries=[ctclt]' --set output_dir=graphs --threads 1
  graph_check="$(/usr/bin/python3 - graphs/once-upon.json graphs/graphs.sqlite <<'PY' 2>&1
import json, sqlite3, sys
g = json.load(open(sys.argv[1]))
assert set(g) >= {"metadata", "qParams", "nodes", "links"}, list(g)
m = g["metadata"]
for k in ("slug", "scan", "prompt_tokens", "prompt"):
    assert k in m, k
assert m["slug"] == "once-upon" and m["scan"] == "stories260K" and len(m["prompt_tokens"]) == 9, m
types = {"cross layer transcoder", "mlp reconstruction error", "embedding", "logit"}
ids = set()
for n in g["nodes"]:
    for k in ("node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId", "clerp"):
        assert k in n, (k, n)
    assert n["feature_type"] in types, n
    assert n["node_id"] not in ids, n["node_id"]
    ids.add(n["node_id"])
    if n["feature_type"] == "logit":
        assert n["layer"] == "6" and "(p=" in n["clerp"] and n["ctx_idx"] == 8, n
    if n["feature_type"] == "embedding":
        assert n["node_id"].startswith("E_") and n["layer"] == "E", n
    if n["feature_type"] == "cross layer transcoder":
        l, i, p = map(int, n["node_id"].split("_"))
        assert n["feature"] == (l + i) * (l + i + 1) // 2 + i and p == n["ctx_idx"] and p >= 1, n
        assert 0 <= n["influence"] <= 1 and n["activation"] > 0, n
assert sum(n["feature_type"] == "embedding" for n in g["nodes"]) == 9
assert any(n["feature_type"] == "cross layer transcoder" for n in g["nodes"])
assert any(n["feature_type"] in types - {"embedding", "logit"} and int(n["layer"]) >= 1 for n in g["nodes"])
assert g["links"], "no links"
for e in g["links"]:
    assert e["source"] in ids and e["target"] in ids and isinstance(e["weight"], float), e
db = sqlite3.connect(sys.argv[2])
(n_graphs,) = db.execute("select count(*) from graphs").fetchone()
(kept,) = db.execute("select count(*) from graph_nodes where graph = 'once-upon' and kept = 1").fetchone()
assert n_graphs == 1 and kept == len(g["nodes"]), (n_graphs, kept, len(g["nodes"]))
print("ok", len(g["nodes"]), "nodes", len(g["links"]), "links")
PY
)"
  case "$graph_check" in ok*) ok; echo "cli: once-upon graph: $graph_check";; *) bad "attribute graph json/sqlite: $graph_check";; esac
  graph_sum="$(cat graphs/once-upon.json graphs/graphs.sqlite | cksum)"
  expect "attribute refuses an existing graph" 2 'graph_name: graphs/once-upon.json already exists; set overwrite: true' -- \
    "$bin/saes-analyze" attribute "$attr_cfg" "${lm_set[@]}" --set 'dictionaries=[ctclt]' --set output_dir=graphs
  one_line "attribute refuses an existing graph"
  [ "$(cat graphs/once-upon.json graphs/graphs.sqlite | cksum)" = "$graph_sum" ] && ok || bad "a refused attribute changed the graph"

  # per-layer transcoders on layers 1 and 3; layers 0, 2, 4 are error nodes only
  for l in 1 3; do
    expect "attribute: train transcoder $l" 0 '' -- "$bin/saes-train" "$root/configs/train-stories260k-transcoder.yaml" "${fly[@]}" \
      --set "sae.hook_point_in=blocks.$l.ln2.hook_normalized" --set "sae.hook_point_out=blocks.$l.hook_mlp_out" \
      --set "activation_factory.hook_points=[blocks.$l.ln2.hook_normalized, blocks.$l.hook_mlp_out]" \
      --set trainer.exp_result_path=ctc$l
  done
  expect "attribute with transcoders" 0 'graph tc-once: 9 tokens' -- "$bin/saes-analyze" attribute "$attr_cfg" "${lm_set[@]}" \
    --set 'dictionaries=[ctc1, ctc3]' --set graph_name=tc-once --set output_dir=graphs --set attribution.max_feature_nodes=40
  [ -s graphs/tc-once.json ] && ok || bad "transcoder graph json missing"
  if [ -s t1/sae_weights.safetensors ]; then  # the residual-stream SAE of run_cli_tests.sh
    expect "attribute with a residual sae" 2 'a replacement dictionary writes MLP outputs' -- "$bin/saes-analyze" attribute \
      "$attr_cfg" "${lm_set[@]}" --set 'dictionaries=[t1]' --set graph_name=bad --set output_dir=graphs
    [ ! -e graphs/bad.json ] && ok || bad "a refused attribute left graphs/bad.json"
  fi
fi

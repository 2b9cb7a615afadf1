# Circuit-tracing cases (sourced by run_cli_tests.sh): `saes-analyze attribute` refuses configs
# that cannot work (one line, exit 2); with the assets: a CLT trained on the fly traces "Once upon
# a time there was a little" on stories260K into circuit-tracer JSON (the format's required
# fields, node ids, links between emitted nodes, the front-end's constraints) and graphs.sqlite,
# a second run of the same graph is refused and changes nothing, per-layer transcoders (two
# layers; the others are error nodes) trace the same prompt, with a Lorsa on layer 2's attention
# too (interleaved layers, attention patterns, QK tracing), and a chosen feature as the target.
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
  expect "attribute qk tracing without a lorsa" 2 'attribution.enable_qk_tracing: QK tracing needs an attention dictionary' -- \
    "$bin/saes-analyze" attribute "$attr_cfg" "${lm_set[@]}" --set 'dictionaries=[ctc1, ctc3]' --set graph_name=noqk \
    --set output_dir=graphs --set attribution.enable_qk_tracing=true
  one_line "attribute qk tracing without a lorsa"

  # a Lorsa replacing layer 2's attention beside the transcoders: attention features and errors on
  # interleaved layers (attention of l = 2l, its MLP = 2l + 1), their patterns, and QK tracing
  lorsa_fly=("${lm_set[@]}" --set "datasets.tinystories.paths=[$work/stories.txt]" --set trainer.total_training_tokens=8192
    --set trainer.log_frequency=4 --set logging.progress=off --threads 1)
  expect "attribute: train a lorsa" 0 '' -- "$bin/saes-train" "$root/configs/train-stories260k-lorsa.yaml" "${lorsa_fly[@]}" \
    --set trainer.exp_result_path=ctlorsa
  expect "attribute with a lorsa" 0 'QK tracing: [1-9][0-9]* of the kept attention features traced' -- \
    "$bin/saes-analyze" attribute "$attr_cfg" "${lm_set[@]}" --set 'dictionaries=[ctc1, ctlorsa, ctc3]' \
    --set graph_name=lorsa-once --set output_dir=graphs --set attribution.enable_qk_tracing=true \
    --set attribution.node_threshold=0.95 --threads 1  # a Lorsa of 8192 tokens: kept only at 0.95
  lorsa_check="$(/usr/bin/python3 - graphs/lorsa-once.json <<'PY' 2>&1
import json, sys
g = json.load(open(sys.argv[1]))
ids = {n["node_id"] for n in g["nodes"]}
types = {n["feature_type"] for n in g["nodes"]}
assert types <= {"cross layer transcoder", "mlp reconstruction error", "lorsa", "lorsa error", "embedding", "logit"}, types
assert "lorsa" in types, types
traced = 0
for n in g["nodes"]:
    t, layer = n["feature_type"], n["layer"]
    if t in ("lorsa", "lorsa error"):
        assert layer == "4", n
    if t == "lorsa":
        p = n["lorsa_pattern"]
        assert len(p) == 9 and abs(sum(p) - 1) < 1e-4 and all(x == 0 for x in p[n["ctx_idx"] + 1:]), p
    if t == "cross layer transcoder":
        assert layer in ("3", "7"), n  # MLP of layers 1 and 3
    if t == "logit":
        assert layer == "10", n
    q = n.get("qk_tracing_results")
    if q is None:
        continue
    assert t == "lorsa", n
    traced += 1
    assert set(q) == {"pair_wise_contributors", "top_q_marginal_contributors", "top_k_marginal_contributors"}, q
    assert 0 < len(q["pair_wise_contributors"]) <= 10, q
    for qn, kn, v in q["pair_wise_contributors"]:
        assert qn in ids and kn in ids and isinstance(v, float), (qn, kn)
    values = [v for _, _, v in q["pair_wise_contributors"]]
    assert values == sorted(values, reverse=True), values
    for key in ("top_q_marginal_contributors", "top_k_marginal_contributors"):
        for nid, v in q[key]:
            assert nid in ids, nid
assert traced >= 1
best = max((n for n in g["nodes"] if n["feature_type"] == "cross layer transcoder" and n["layer"] == "7" and n["ctx_idx"] == 8),
           key=lambda n: -n["influence"])
print("ok", traced, best["node_id"].split("_")[1])
PY
)"
  case "$lorsa_check" in ok*) ok; echo "cli: lorsa graph: $lorsa_check";; *) bad "attribute lorsa graph json: $lorsa_check";; esac
  # a chosen feature as the target: that transcoder-3 feature at the last position
  target_index="${lorsa_check##* }"
  expect "attribute with a target feature" 0 "target features 7_${target_index}_8" -- \
    "$bin/saes-analyze" attribute "$attr_cfg" "${lm_set[@]}" --set 'dictionaries=[ctc1, ctlorsa, ctc3]' \
    --set graph_name=feature-target --set output_dir=graphs --threads 1 \
    --set "attribution.target_features=[{layer: 3, position: -1, index: $target_index}]"
  grep -q "\"node_id\": \"7_${target_index}_8\"" graphs/feature-target.json && ok || bad "the target feature is not in its graph"
  expect "attribute with an inactive target" 2 'target_features\[0\]: layer 3 feature 0 is not active at position 1' -- \
    "$bin/saes-analyze" attribute "$attr_cfg" "${lm_set[@]}" --set 'dictionaries=[ctc1, ctc3]' --set graph_name=inactive \
    --set output_dir=graphs --set "attribution.target_features=[{layer: 3, position: 1, index: 0}]"
  one_line "attribute with an inactive target"
  [ ! -e graphs/inactive.json ] && ok || bad "a refused attribute left graphs/inactive.json"

  if [ -s t1/sae_weights.safetensors ]; then  # the residual-stream SAE of run_cli_tests.sh
    expect "attribute with a residual sae" 2 'a replacement dictionary writes MLP outputs' -- "$bin/saes-analyze" attribute \
      "$attr_cfg" "${lm_set[@]}" --set 'dictionaries=[t1]' --set graph_name=bad --set output_dir=graphs
    [ ! -e graphs/bad.json ] && ok || bad "a refused attribute left graphs/bad.json"
  fi
fi

# ---- viewer graph pages (issue #19; docs/viewer.md "Graphs") -------------------------------------
# An analysis database of the ctclt CLT (gclt/), served with --graphs graphs/graphs.sqlite: the
# list and the once-upon page (one SVG shape per kept node, one line per link), a feature node's
# panel linking its feature page (layer·256 + index), 404s, the CSP, the store beside the database,
# --graphs errors, and the page rendered in headless chromium (DOM + screenshot; SAES_UPDATE_DOCS=1
# copies it to docs/images/graph-page.png).
# graphs_serve DB LOG [ARGS...]: saes-analyze serve on a free port; sets graphs_pid and graphs_url.
graphs_serve() {
  local db="$1" log="$2"; shift 2
  viewer_serve "$db $*" "$log" || return 1
  graphs_pid=$viewer_pid
  graphs_url=$viewer_url
}
# graphs_get NAME CODE PATH OUT: GET PATH into OUT, the status must be CODE.
graphs_get() {
  local got; got=$(curl -s --path-as-is -o "$4" -w '%{http_code}' "$graphs_url${3#/}")
  if [ "$got" = "$2" ]; then ok; else bad "graphs viewer $1: GET $3 gave $got, expected $2"; fi
}
graphs_viewer() {
  expect "graphs: analyse the clt" 0 '' -- "$bin/saes-analyze" "$root/configs/analyze-stories260k-clt.yaml" \
    "${lm_set[@]}" --set sae.pretrained_name_or_path=ctclt --set "datasets.tinystories.paths=[$work/stories.txt]" \
    --set analyzer.total_analyzing_tokens=2048 --set eval=null --set output_dir=gclt --set logging.progress=off --threads 1
  [ -s gclt/default.sqlite ] || { bad "graphs: no gclt/default.sqlite: $(tail -3 err.txt)"; return; }
  expect "serve --graphs missing" 3 'serve: --graphs nothere.sqlite: no such file' -- \
    "$bin/saes-analyze" serve gclt/default.sqlite --graphs nothere.sqlite --port 0
  one_line "serve --graphs missing"
  expect "serve --graphs not a store" 3 'serve: --graphs: gclt/default.sqlite: not an saes graph store' -- \
    "$bin/saes-analyze" serve gclt/default.sqlite --graphs gclt/default.sqlite --port 0
  one_line "serve --graphs not a store"

  graphs_serve gclt/default.sqlite graphs_serve.log --graphs graphs/graphs.sqlite || return
  local pid=$graphs_pid
  grep -q 'viewer: graphs from graphs/graphs.sqlite (4 graphs)' graphs_serve.log && ok || bad "graphs viewer: log: $(cat graphs_serve.log)"
  # the Lorsa graph: attention features drawn as triangles on their own rows
  graphs_get "lorsa page" 200 /graphs/lorsa-once graph_lorsa.html
  local n_lorsa; n_lorsa=$(grep -o '"feature_type": "lorsa"' graphs/lorsa-once.json | wc -l)
  [ "$(grep -o '<polygon class="node feature attn' graph_lorsa.html | wc -l)" = "$n_lorsa" ] && grep -q '>L2 attn<' graph_lorsa.html &&
    ok || bad "graphs viewer: the lorsa page has $(grep -o '<polygon class="node feature attn' graph_lorsa.html | wc -l) triangles for $n_lorsa lorsa nodes"
  # a QK-traced Lorsa feature's panel shows where its head attends and the pairs that make it
  local qk_id; qk_id=$(/usr/bin/python3 -c 'import json, sys
g = json.load(open(sys.argv[1]))
print(next(n["node_id"] for n in g["nodes"] if "qk_tracing_results" in n))' graphs/lorsa-once.json)
  graphs_get "lorsa qk node" 200 "/graphs/lorsa-once?node=$qk_id" graph_qk.html
  grep -q '<h3>QK tracing</h3>' graph_qk.html && grep -q 'attends most to position' graph_qk.html &&
    [ "$(grep -o '<table class="edges qk-pairs">.*</table>' graph_qk.html | grep -o '<tr><td' | wc -l)" -ge 1 ] &&
    ok || bad "graphs viewer: the panel of $qk_id lacks its QK tracing"
  graphs_get "list" 200 /graphs graphs_list.html
  graphs_get "page" 200 /graphs/once-upon graph_page.html
  graphs_get "api" 200 /api/graphs/once-upon graph_api.json
  for path in /graphs/nope /graphs/once-upon/ /graphs/../eval /api/graphs/once-upon/nodes/9_9_9 \
      "/graphs/once-upon?node=nope"; do
    graphs_get "bad route" 404 "$path" /dev/null
  done
  local csp; csp=$(curl -s -D - -o /dev/null "${graphs_url}graphs/once-upon" | tr -d '\r' | grep -i '^content-security-policy:')
  if echo "$csp" | grep -q "script-src 'self';" && ! echo "$csp" | grep -q 'unsafe-inline'; then ok; else bad "graphs viewer CSP: $csp"; fi
  local picked
  picked="$(/usr/bin/python3 - graphs/once-upon.json graph_page.html graph_api.json graphs_list.html <<'PY' 2>&1
import json, sys
g = json.load(open(sys.argv[1]))
page = open(sys.argv[2]).read()
api = json.load(open(sys.argv[3]))
listing = open(sys.argv[4]).read()
assert 'href="/graphs/once-upon"' in listing and 'href="/graphs/tc-once"' in listing, "list lacks a graph"
assert page.count('class="node ') == len(g["nodes"]), (page.count('class="node '), len(g["nodes"]))
assert page.count('<line class="e ') == len(g["links"]), (page.count('<line class="e '), len(g["links"]))
assert page.count('<circle class="node feature') == sum(n["feature_type"] == "cross layer transcoder" for n in g["nodes"])
assert [n["node_id"] for n in api["nodes"]] == [n["node_id"] for n in g["nodes"]], "api nodes differ from the json"
feats = [n for n in api["nodes"] if n["kind"] == "feature"]
assert feats and all(n["feature_id"] == n["layer"] * 256 + n["feature_index"] for n in feats), feats[:3]
best = min(feats, key=lambda n: n["influence"])
print(best["node_id"], best["feature_id"])
PY
)"
  local nid fid
  read -r nid fid <<<"$picked"
  if [ -n "$fid" ] && [ "$fid" -ge 0 ] 2>/dev/null; then ok; else bad "graphs viewer: page/api check: $picked"; nid=none; fid=0; fi
  graphs_get "selected node" 200 "/graphs/once-upon?node=$nid" graph_node.html
  grep -q "<a class=\"feature-link\" href=\"/features/$fid\">" graph_node.html && grep -q 'class="node feature sel"' graph_node.html &&
    grep -q 'Strongest inputs' graph_node.html && ok || bad "graphs viewer: the panel of $nid lacks its feature link /features/$fid"
  graphs_get "linked feature page" 200 "/features/$fid" /dev/null
  echo "graphs viewer: once-upon: $(grep -o 'class="node ' graph_page.html | wc -l) nodes, $(grep -o '<line class="e ' graph_page.html | wc -l) links, $(wc -c <graph_page.html) bytes; $nid → /features/$fid"

  if command -v chromium >/dev/null; then
    local chrome=(timeout 90 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium-graphs" --hide-scrollbars)
    "${chrome[@]}" --dump-dom "${graphs_url}graphs/once-upon?node=$nid" >graph_dom.html 2>chromium_graphs.log
    local shapes; shapes=$(grep -o 'class="node ' graph_dom.html | wc -l)
    if grep -q '<svg id="graph-svg"' graph_dom.html && [ "$shapes" = "$(grep -o 'class="node ' graph_page.html | wc -l)" ] &&
      grep -q "href=\"/features/$fid\"" graph_dom.html; then ok
    else bad "graphs viewer: chromium DOM lacks the graph ($shapes node shapes, $(wc -c <graph_dom.html) bytes; $(tail -2 chromium_graphs.log))"; fi
    if grep -q 'Refused to' chromium_graphs.log; then bad "graphs viewer: CSP refusals: $(grep 'Refused to' chromium_graphs.log | head -2)"; else ok; fi
    "${chrome[@]}" --screenshot="$work/graph-page.png" --window-size=1500,1000 "${graphs_url}graphs/once-upon?node=$nid" >/dev/null 2>>chromium_graphs.log
    if [ -s "$work/graph-page.png" ]; then ok; else bad "graphs viewer: chromium wrote no screenshot: $(tail -2 chromium_graphs.log)"; fi
    "${chrome[@]}" --screenshot="$work/graph-lorsa.png" --window-size=1500,1400 "${graphs_url}graphs/lorsa-once?node=$qk_id" >/dev/null 2>>chromium_graphs.log
    if [ -s "$work/graph-lorsa.png" ]; then ok; else bad "graphs viewer: chromium wrote no lorsa screenshot: $(tail -2 chromium_graphs.log)"; fi
    if [ "${SAES_UPDATE_DOCS:-}" = 1 ] && [ -s "$work/graph-page.png" ]; then
      mkdir -p "$root/docs/images" && cp "$work/graph-page.png" "$root/docs/images/graph-page.png"
      cp "$work/graph-lorsa.png" "$root/docs/images/graph-page-lorsa.png"
    fi
    # /graph.js: a click on a node swaps in its panel and selection without reloading the page
    if command -v node >/dev/null; then
      local clicked
      clicked="$(timeout 60 node "$root/tests/cli/graph_click.js" "${graphs_url}graphs/once-upon" "$nid" "$work/chromium-click" 2>&1)"
      if /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.argv[1]); b, a = r["before"], r["after"]; nid, fid = sys.argv[2], sys.argv[3]
assert r["clicked"] and not b["sel"] and a["sel"] == [nid] and a["hl"] > 0, r
assert a["href"].endswith("/graphs/once-upon?node=" + nid) and a["feature"].endswith("/features/" + fid), r
assert a["marker"] == 42 and a["nodes"] == b["nodes"] and not r["errors"], r
' "$clicked" "$nid" "$fid" 2>/dev/null; then ok; else bad "graphs viewer: clicking $nid: $clicked"; fi
    else
      echo "graphs viewer: node is not installed; skipping the click check"
    fi
  else
    echo "graphs viewer: chromium is not installed; skipping the browser check"
  fi
  kill -TERM "$pid"
  wait "$pid" && ok || bad "graphs viewer: serve exit $? after SIGTERM: $(tail -2 graphs_serve.log)"

  # the database beside graphs.sqlite: its graphs are served without --graphs
  cp gclt/default.sqlite graphs/analysis.sqlite
  graphs_serve graphs/analysis.sqlite graphs_beside.log || return
  graphs_get "store beside the db" 200 /graphs graphs_beside.html
  grep -q 'href="/graphs/once-upon"' graphs_beside.html && ok || bad "graphs viewer: the store beside the database is not served"
  kill -TERM "$graphs_pid"
  wait "$graphs_pid"
  rm -f graphs/analysis.sqlite
}
if [ -n "$assets" ] && [ -s ctclt/sae_weights.safetensors ] && [ -s graphs/graphs.sqlite ]; then
  graphs_viewer
fi
# ---- end of the viewer graph pages ----------------------------------------------------------------

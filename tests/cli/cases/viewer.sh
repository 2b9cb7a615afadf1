# saes-analyze serve (the web viewer, docs/viewer.md): analyse the trained t1 run on stories260K,
# serve the database on a free port, fetch pages with curl (200s; 404s for unknown routes, bad
# ids and path tricks; 405 for writes), time the feature page, render it in headless chromium
# (highlighted context + SVG histogram), stop with SIGTERM; then the CLT and crosscoder databases
# of train_clt.sh / train_crosscoder.sh. Sourced by ../run_cli_tests.sh.
# SAES_UPDATE_DOCS=1 also copies the screenshots to docs/images/.

expect "serve missing db" 3 'nothere.sqlite' -- "$bin/saes-analyze" serve nothere.sqlite --port 0
one_line "serve missing db"
expect "serve bad port" 2 'port' -- "$bin/saes-analyze" serve nothere.sqlite --port 70000

# viewer_fetch PATH [CURL ARGS...]: prints the HTTP status of GET http://host:port/PATH (as sent).
viewer_fetch() {
  local path="$1"; shift
  curl -s --path-as-is -o fetched.txt -w '%{http_code}' "$@" "$viewer_url${path#/}"
}
# viewer_status NAME CODE PATH [CURL ARGS...]
viewer_status() {
  local name="$1" code="$2" path="$3"; shift 3
  local got; got=$(viewer_fetch "$path" "$@")
  if [ "$got" = "$code" ]; then ok; else bad "viewer $name: GET $path gave $got, expected $code"; fi
}

viewer_run() {
  local stories="$work/stories.txt" model="$assets/llama2c-stories260K"
  expect "viewer analyze t1" 0 '' -- "$bin/saes-analyze" "$root/configs/analyze-stories260k.yaml" \
    --set sae.pretrained_name_or_path=t1 --set "model.model_from_pretrained_path=$model/stories260K.bin" \
    --set "model.tokenizer_path=$model/tok512.bin" --set "datasets.tinystories.paths=[$stories]" \
    --set analyzer.total_analyzing_tokens=4096 --set output_dir=v1 --set logging.progress=off
  [ -s v1/default.sqlite ] || { bad "viewer: no v1/default.sqlite: $(cat err.txt)"; return; }

  viewer_serve v1/default.sqlite serve.log || return
  local pid=$viewer_pid
  # The port is the first server's alone: a second one on it fails at start-up.
  local port_used="${viewer_url##*:}"; port_used="${port_used%/}"
  expect "viewer second server on the same port" 3 "cannot listen on 127.0.0.1:$port_used" -- \
    timeout 20 "$bin/saes-analyze" serve v1/default.sqlite --port "$port_used"

  for path in / /eval /style.css /features/0 /api/features /api/features/0 /api/eval /run /api/run \
      "/?sort=frequency&order=desc&q=the&page=1"; do
    viewer_status "page" 200 "$path"
  done
  for path in /nothing /features/ /features/999999 /features/abc /features/-1 /features/1e3 \
      /features/../eval /features/%2e%2e /features/%2e%2e/%2e%2e/etc/passwd /../../etc/passwd \
      /%2e%2e/%2e%2e/etc/passwd /features/0/../1 /eval/ /features/123456789012345678901234567890 \
      /static/../style.css /api/features/x /run/ /run/x /api/run/; do
    viewer_status "bad route" 404 "$path"
  done
  local csp; csp=$(curl -s -D - -o /dev/null "${viewer_url}features/0" | tr -d '\r' | grep -i '^content-security-policy:')
  if echo "$csp" | grep -q "style-src 'self';" && ! echo "$csp" | grep -q 'unsafe-inline'; then ok; else bad "viewer CSP: $csp"; fi
  viewer_status "bad query" 400 "/?sort=nope"
  viewer_status "bad filter" 400 "/?min_freq=abc"
  viewer_status "filters" 200 "/?min_freq=0.001&max_act=100&sort=max_act"
  # a random alive feature: a 302 to /features/<id> of a feature that fired
  local random; random=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "${viewer_url}features/random")
  case "$random" in "302 ${viewer_url}features/"[0-9]*) ok;; *) bad "viewer random feature: $random";; esac
  viewer_fetch "/api/features/${random##*/}" >/dev/null
  python3 -c 'import json; assert json.load(open("fetched.txt"))["act_times"] > 0' 2>/dev/null && ok ||
    bad "viewer: the random feature ${random##*/} is not alive: $(head -c 200 fetched.txt)"
  viewer_status "write" 405 /features/0 -X POST -d x=1

  # The database's sae_path is the run folder t1: /run charts its metrics.jsonl.
  if grep -q 'viewer: training curves from t1/metrics.jsonl' serve.log; then ok; else bad "viewer: no training curves from t1: $(cat serve.log)"; fi
  viewer_fetch /api/run >/dev/null
  local run_check
  run_check="$(viewer_check_run fetched.txt t1/metrics.jsonl)"
  [ "$run_check" = ok ] && ok || bad "viewer: /api/run vs t1/metrics.jsonl: $run_check"

  # The most frequent feature is a real analysed one with stored contexts.
  viewer_fetch "/api/features?sort=frequency&order=desc&per_page=1" >/dev/null
  local id
  id=$(python3 -c 'import json; print(json.load(open("fetched.txt"))["features"][0]["id"])' 2>/dev/null)
  if [ -z "$id" ]; then bad "viewer: no feature in /api/features: $(head -c 300 fetched.txt)"; id=0; fi
  viewer_fetch "/features/$id" >/dev/null
  if grep -Eq 'class="t a[0-9]+ peak"' fetched.txt && grep -q '<svg class="hist"' fetched.txt; then ok; else bad "viewer: /features/$id lacks a highlighted context or histogram"; fi

  # Live inference: the model and the dictionary the database records (stories260K, t1) run on
  # our text; the JSON agrees with the page; a text past the limits is a 400 naming it.
  viewer_status "infer page" 200 "/infer?text=Once%20upon%20a%20time%20there%20was"
  grep -q 'class="toks live"' fetched.txt && grep -Eq 'class="t a[0-9]+" title=' fetched.txt && ok ||
    bad "viewer infer: no shaded tokens: $(head -c 300 fetched.txt)"
  viewer_status "infer api" 200 "/api/infer?text=Once%20upon%20a%20time%20there%20was&feature=$id"
  python3 -c 'import json
j = json.load(open("fetched.txt"))
assert len(j["tokens"]) >= 6 and len(j["top"]) == len(j["tokens"]) == len(j["feature"]), j
assert any(row for row in j["top"]) and all(v > 0 for row in j["top"] for _, v in row), j["top"]
assert all(row == sorted(row, key=lambda e: -e[1]) for row in j["top"]), j["top"]' 2>/dev/null && ok ||
    bad "viewer infer api: $(head -c 400 fetched.txt)"
  if command -v chromium >/dev/null; then  # the page as a browser renders it (CSP included)
    timeout 90 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium-live" \
      --dump-dom "${viewer_url}infer?text=Once%20upon%20a%20time%20there%20was%20a%20little%20girl" >dom_live.html 2>chromium_live.log
    grep -q 'class="toks live"' dom_live.html && grep -q '<table class="features live">' dom_live.html &&
      ! grep -q 'Refused to' chromium_live.log && ok || bad "viewer infer: chromium DOM lacks the shaded text ($(wc -c <dom_live.html) bytes)"
    timeout 90 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium-live" --hide-scrollbars \
      --screenshot="$work/live-inference.png" --window-size=1200,800 \
      "${viewer_url}infer?text=Once%20upon%20a%20time%20there%20was%20a%20little%20girl" >/dev/null 2>&1
    if [ "${SAES_UPDATE_DOCS:-}" = 1 ] && [ -s "$work/live-inference.png" ]; then cp "$work/live-inference.png" "$root/docs/images/live-inference.png"; fi
  fi
  viewer_status "feature with text" 200 "/features/$id?text=Once%20upon%20a%20time"
  grep -q '<section class="live"><h2>Your text</h2>' fetched.txt && ok || bad "viewer: /features/$id?text= lacks the shaded text"
  local long; long=$(python3 -c 'print("%20".join(["once"] * 300))')
  viewer_status "infer too many tokens" 400 "/infer?text=$long"
  grep -q 'tokens, the limit is' fetched.txt && ok || bad "viewer infer: the refusal does not name the limit: $(head -c 300 fetched.txt)"
  viewer_status "infer too long" 400 "/infer?text=$(head -c 2001 /dev/zero | tr '\0' a)"
  # a bounded load test of the live route: 200 requests from 20 clients, all answered, RSS bounded
  local rss0 rss1 load_t0 load_t1
  rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  load_t0=$(date +%s.%N)
  seq 1 200 | timeout 300 xargs -P 20 -I{} curl -s -o /dev/null -m 60 -w '%{http_code}\n' \
    "${viewer_url}api/infer?text=Once%20upon%20a%20time%20{}" >load.txt
  load_t1=$(date +%s.%N)
  rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  if [ "$(grep -c '^200$' load.txt)" = 200 ] && [ $((rss1 - rss0)) -lt 204800 ]; then ok
  else bad "viewer infer load: $(sort load.txt | uniq -c | tr '\n' ' ') RSS ${rss0} -> ${rss1} kB"; fi
  echo "viewer: live inference load test: 200 requests from 20 clients in $(awk -v a="$load_t0" -v b="$load_t1" 'BEGIN { printf "%.2f", b - a }') s, RSS ${rss0} -> ${rss1} kB"

  # 40 idle connections (opened, nothing sent) do not stall a request.
  local fds=() fd
  for _ in $(seq 1 40); do exec {fd}<>"/dev/tcp/127.0.0.1/$port_used" && fds+=("$fd"); done
  local idle_t
  idle_t=$(curl -s -o /dev/null -m 20 -w '%{time_total}' "${viewer_url}features/$id")
  for fd in "${fds[@]}"; do exec {fd}>&-; done
  if below 1.0 "$idle_t"; then ok; else bad "viewer: a request behind ${#fds[@]} idle connections took ${idle_t} s"; fi
  echo "viewer: a request behind ${#fds[@]} idle connections: ${idle_t} s"

  # Response time of the feature page (20 sequential requests; median, milliseconds).
  viewer_fetch "/features/$id" >/dev/null
  local times
  times=$(for _ in $(seq 1 20); do curl -s -o /dev/null -w '%{time_total}\n' "${viewer_url}features/$id"; done | sort -n)
  echo "viewer: feature page $id, $(wc -c <fetched.txt) bytes: median $(echo "$times" | sed -n 10p | awk '{printf "%.2f", $1 * 1000}') ms, max $(echo "$times" | tail -1 | awk '{printf "%.2f", $1 * 1000}') ms over 20 requests"

  if command -v chromium >/dev/null; then
    local chrome=(timeout 90 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium" --hide-scrollbars)
    "${chrome[@]}" --dump-dom "${viewer_url}features/$id" >dom.html 2>chromium.log
    if grep -Eq 'class="t a[0-9]+ peak"' dom.html && grep -q 'title="[^"]*: [0-9]' dom.html && grep -q '<rect class="bar"' dom.html; then ok; else bad "viewer: chromium DOM of /features/$id lacks the highlighted context or histogram ($(wc -c <dom.html) bytes; $(tail -2 chromium.log))"; fi
    "${chrome[@]}" --screenshot="$work/feature-page.png" --window-size=1200,900 "${viewer_url}features/$id" >/dev/null 2>>chromium.log
    if [ -s "$work/feature-page.png" ]; then ok; else bad "viewer: chromium wrote no screenshot: $(tail -2 chromium.log)"; fi
    if [ "${SAES_UPDATE_DOCS:-}" = 1 ] && [ -s "$work/feature-page.png" ]; then
      mkdir -p "$root/docs/images" && cp "$work/feature-page.png" "$root/docs/images/feature-page.png"
    fi
  else
    echo "viewer: chromium is not installed (scripts/deps.sh installs it); skipping the browser check"
  fi

  kill -TERM "$pid"
  wait "$pid"
  local rc=$?
  if [ "$rc" = 0 ] && grep -q 'viewer: stopped (SIGTERM)' serve.log; then ok; else bad "viewer: serve exit $rc after SIGTERM: $(tail -2 serve.log)"; fi
}

# viewer_check_run API_JSON METRICS_JSONL: /api/run holds every line's step and values.
viewer_check_run() {
  /usr/bin/python3 - "$1" "$2" <<'PY' 2>&1
import json, math, sys
api = json.load(open(sys.argv[1]))
lines = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
assert api["steps"] == [l["step"] for l in lines], (api["steps"], len(lines))
assert api["x_axis"] == "details/n_training_tokens", api["x_axis"]
for name, column in api["metrics"].items():
    want = [l.get(name) for l in lines]
    assert len(column) == len(want), name
    for g, w in zip(column, want):
        assert (g is None and w is None) or math.isclose(g, w, rel_tol=1e-12, abs_tol=0), (name, g, w)
assert set(api["metrics"]) == {k for l in lines for k in l} - {"step"}
print("ok")
PY
}

# The training-run page (/run) of tfull (train.sh: 10 logged steps) given with --run: one SVG
# line chart per metric with a marker per step, in curl and the Chromium DOM, a screenshot; and
# the one-line start-up errors of a missing run and a malformed metrics.jsonl.
# SAES_UPDATE_DOCS=1 charts a 400-step run on gsigref instead (~1 min) and copies the screenshot
# to docs/images/training-curves.png.
viewer_training() {
  local run=tfull
  if [ "${SAES_UPDATE_DOCS:-}" = 1 ] && [ -d gsigref ]; then
    expect "viewer training docs run" 0 '' -- "$bin/saes-train" "$train_cfg" \
      --set 'activation_factory.sources=[{type: activations, name: g, path: gsigref}]' \
      --set activation_factory.batch_size=500 --set trainer.total_training_tokens=200000 \
      --set trainer.log_frequency=8 --set trainer.exp_result_path=trun_docs --set logging.progress=off
    run=trun_docs
  fi
  expect "serve --run missing" 3 '^saes-analyze: error: serve: --run nowhere: nowhere: no such file' -- \
    "$bin/saes-analyze" serve v1/default.sqlite --run nowhere --port 0
  one_line "serve --run missing"
  mkdir -p tbadrun && { head -1 tfull/metrics.jsonl; echo '{"step": 2, "losses/overall_loss": '; head -3 tfull/metrics.jsonl | tail -1; } >tbadrun/metrics.jsonl
  expect "serve --run malformed" 3 'serve: --run tbadrun: tbadrun/metrics.jsonl:2: not a JSON object' -- \
    "$bin/saes-analyze" serve v1/default.sqlite --run tbadrun --port 0
  one_line "serve --run malformed"

  # Served from a copy, which gets more lines at the end.
  rm -rf trun_live && cp -r "$run" trun_live && run=trun_live
  "$bin/saes-analyze" serve v1/default.sqlite --run "$run" --port 0 2>serve_run.log &
  local pid=$!
  local port=""
  for _ in $(seq 1 100); do
    port=$(sed -n 's|.*at http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' serve_run.log)
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -z "$port" ]; then bad "viewer --run: no URL logged: $(cat serve_run.log)"; kill -TERM "$pid"; wait "$pid"; return; fi
  viewer_url="http://127.0.0.1:$port/"
  grep -q "viewer: training curves from $run/metrics.jsonl" serve_run.log && ok || bad "viewer --run: $(cat serve_run.log)"
  viewer_status "run page" 200 /run
  local n_lines n_metrics charts markers
  n_lines=$(grep -c . "$run/metrics.jsonl")
  n_metrics=$(/usr/bin/python3 -c 'import json,sys; print(len({k for l in open(sys.argv[1]) for k in json.loads(l)} - {"step", "details/n_training_tokens"}))' "$run/metrics.jsonl")
  charts=$(grep -o '<svg class="curve"' fetched.txt | wc -l)
  markers=$(grep -o '<circle class="pt"' fetched.txt | wc -l)
  if [ "$charts" = "$n_metrics" ] && [ "$markers" -ge $((n_lines * 5)) ] && grep -q '<h2>Losses</h2>' fetched.txt &&
    grep -q 'aria-label="metrics/l0 — L0' fetched.txt && grep -q 'aria-label="details/current_learning_rate' fetched.txt; then ok
  else bad "viewer /run: $charts charts for $n_metrics metrics, $markers markers for $n_lines lines"; fi
  viewer_fetch /api/run >/dev/null
  local run_check; run_check="$(viewer_check_run fetched.txt "$run/metrics.jsonl")"
  [ "$run_check" = ok ] && ok || bad "viewer: /api/run vs $run/metrics.jsonl: $run_check"
  if command -v chromium >/dev/null; then
    local chrome=(timeout 90 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium" --hide-scrollbars)
    "${chrome[@]}" --dump-dom "${viewer_url}run" >dom_run.html 2>chromium.log
    if [ "$(grep -o '<svg class="curve"' dom_run.html | wc -l)" = "$n_metrics" ] && grep -q '<path class="line" d="M' dom_run.html &&
      ! grep -qi 'refused to' chromium.log; then ok
    else bad "viewer: chromium DOM of /run lacks the charts ($(wc -c <dom_run.html) bytes; $(tail -2 chromium.log))"; fi
    "${chrome[@]}" --screenshot="$work/training-curves.png" --window-size=1200,1000 "${viewer_url}run" >/dev/null 2>>chromium.log
    if [ -s "$work/training-curves.png" ]; then ok; else bad "viewer: chromium wrote no /run screenshot: $(tail -2 chromium.log)"; fi
    if [ "${SAES_UPDATE_DOCS:-}" = 1 ] && [ -s "$work/training-curves.png" ]; then
      mkdir -p "$root/docs/images" && cp "$work/training-curves.png" "$root/docs/images/training-curves.png"
    fi
  fi
  # A line appended while the viewer runs shows on the next request (the file is read per
  # request); a torn last line is left out; a bad line makes the page a 500 naming file and line.
  tail -1 "$run/metrics.jsonl" | sed 's/^{"step": *[0-9]*/{"step": 100000/' >>"$run/metrics.jsonl"
  printf '{"step": 100001, "losses/overall_loss": 0.' >>"$run/metrics.jsonl"
  viewer_fetch /api/run >/dev/null
  if python3 -c 'import json,sys; d = json.load(open("fetched.txt")); assert d["steps"][-1] == 100000 and d["incomplete_last_line"]' 2>/dev/null; then ok
  else bad "viewer: /api/run after appending: $(head -c 300 fetched.txt)"; fi
  printf '5\n' >>"$run/metrics.jsonl"
  viewer_status "run page, bad line" 500 /run
  grep -q "cannot read the training curves: $run/metrics.jsonl:$((n_lines + 2)): not a JSON object" fetched.txt && ok ||
    bad "viewer: the 500 page does not name $run/metrics.jsonl:$((n_lines + 2)): $(head -c 400 fetched.txt)"
  kill -TERM "$pid"; wait "$pid"
}

# A cross-layer transcoder's database (aclt/, from train_clt.sh): a layer-2 feature's page shows
# its source layer and the decoder-norm bars of targets 2..4, in the browser's DOM too.
viewer_clt() {
  viewer_serve aclt/default.sqlite serve_clt.log || return
  local pid=$viewer_pid
  local id=$((2 * 256 + 7))
  viewer_status "clt feature page" 200 "/features/$id"
  local bars; bars=$(grep -o '<title>blocks\.[0-9]\.hook_mlp_out: ' fetched.txt | sort -u | tr -d '\n')
  if grep -q "<dt>source layer</dt><dd>2 (feature 7 of the layer)</dd>" fetched.txt &&
    [ "$bars" = '<title>blocks.2.hook_mlp_out: <title>blocks.3.hook_mlp_out: <title>blocks.4.hook_mlp_out: ' ]; then ok
  else bad "viewer clt: /features/$id lacks the source layer or the bars of targets 2-4 ($bars)"; fi
  if command -v chromium >/dev/null; then
    timeout 90 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium" \
      --dump-dom "${viewer_url}features/$id" >dom_clt.html 2>chromium.log
    if grep -q 'source layer' dom_clt.html && grep -q '<svg class="bars"' dom_clt.html; then ok
    else bad "viewer clt: chromium DOM lacks the layer chart ($(wc -c <dom_clt.html) bytes)"; fi
  fi
  kill -TERM "$pid"
  wait "$pid"
}

# A crosscoder's database (acc/, from train_crosscoder.sh): the page of the alive feature whose
# heads' decoders differ most draws the 3×3 heat map of its decoder cosines, each cell titled with
# both head names and the stored cosine and inner product (curl, then the Chromium DOM and a
# screenshot). SAES_UPDATE_DOCS=1 runs this on the example config trained in full instead (~1
# min: after 4096 tokens the heads, which start identical, still agree to 0.99) and copies the
# screenshot to docs/images/crosscoder-feature-page.png.
viewer_crosscoder() {
  local db=acc/default.sqlite
  if [ "${SAES_UPDATE_DOCS:-}" = 1 ]; then
    local model="$assets/llama2c-stories260K" cc_full=()
    cc_full=(--set "model.model_from_pretrained_path=$model/stories260K.bin" --set "model.tokenizer_path=$model/tok512.bin"
      --set "datasets.tinystories.paths=[$work/stories.txt]" --set logging.progress=off)
    expect "viewer crosscoder docs train" 0 '' -- "$bin/saes-train" "$root/configs/train-stories260k-crosscoder.yaml" \
      "${cc_full[@]}" --set trainer.exp_result_path=tcc_docs
    expect "viewer crosscoder docs analyze" 0 '' -- "$bin/saes-analyze" "$root/configs/analyze-stories260k.yaml" "${cc_full[@]}" \
      --set sae.pretrained_name_or_path=tcc_docs --set output_dir=acc_docs \
      --set "activation_factory.hook_points=[blocks.1.hook_resid_post, blocks.2.hook_resid_post, blocks.3.hook_resid_post]"
    db=acc_docs/default.sqlite
  fi
  local id
  id=$(/usr/bin/python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(
    "select d.feature from decoder_similarity d join features f on f.id = d.feature where f.act_times > 0 "
    "and d.head_a < d.head_b order by d.cosine, d.feature limit 1").fetchone()[0])' "$db" 2>&1)
  case "$id" in *[!0-9]*|"") bad "viewer crosscoder: no alive feature in $db: $id"; return;; esac
  viewer_serve "$db" serve_cc.log || return
  local pid=$viewer_pid
  viewer_status "crosscoder feature page" 200 "/features/$id"
  local cells
  cells="$(/usr/bin/python3 - fetched.txt "$db" "$id" <<'PY' 2>&1
import re, sqlite3, sys
html = open(sys.argv[1], encoding="utf-8").read()
db = sqlite3.connect(sys.argv[2])
hooks = dict(db.execute("select key, value from meta"))["target_hooks"].split(",")
svg = html[html.index('<svg class="heat"'):]
svg = svg[:svg.index("</svg>")]
titles = re.findall(r'<rect class="cell"[^>]*><title>(\S+) × (\S+): cosine ([^,]+), inner product ([^<]+)</title>', svg)
assert len(titles) == 9, len(titles)
for a, b, c, ip in titles:
    want = db.execute("select cosine, inner_product from decoder_similarity where feature = ? and head_a = ? and head_b = ?",
                      (int(sys.argv[3]), hooks.index(a), hooks.index(b))).fetchone()
    assert abs(float(c) - want[0]) <= 1e-3 * abs(want[0]) + 1e-9, (a, b, c, want)
    assert abs(float(ip) - want[1]) <= 1e-3 * abs(want[1]) + 1e-9, (a, b, ip, want)
print("ok")
PY
)"
  if [ "$cells" = ok ]; then ok; else bad "viewer crosscoder: /features/$id heat map: $cells"; fi
  viewer_fetch "/api/features/$id" >/dev/null
  if python3 -c 'import json,sys; d = json.load(open("fetched.txt"))["decoder_similarity"]; assert len(d["cosine"]) == 3 and all(len(r) == 3 for r in d["inner_product"])' 2>/dev/null; then ok
  else bad "viewer crosscoder: /api/features/$id lacks the 3×3 decoder_similarity: $(head -c 300 fetched.txt)"; fi
  if command -v chromium >/dev/null; then
    local chrome=(timeout 90 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium" --hide-scrollbars)
    "${chrome[@]}" --dump-dom "${viewer_url}features/$id" >dom_cc.html 2>chromium.log
    if grep -q '<svg class="heat"' dom_cc.html && [ "$(grep -o '<rect class="cell"' dom_cc.html | wc -l)" = 9 ]; then ok
    else bad "viewer crosscoder: chromium DOM lacks the 3×3 heat map ($(wc -c <dom_cc.html) bytes)"; fi
    "${chrome[@]}" --screenshot="$work/crosscoder-feature-page.png" --window-size=1200,900 "${viewer_url}features/$id" >/dev/null 2>>chromium.log
    if [ -s "$work/crosscoder-feature-page.png" ]; then ok; else bad "viewer crosscoder: chromium wrote no screenshot: $(tail -2 chromium.log)"; fi
    if [ "${SAES_UPDATE_DOCS:-}" = 1 ] && [ -s "$work/crosscoder-feature-page.png" ]; then
      mkdir -p "$root/docs/images" && cp "$work/crosscoder-feature-page.png" "$root/docs/images/crosscoder-feature-page.png"
    fi
  fi
  kill -TERM "$pid"
  wait "$pid"
}

if [ -n "$assets" ] && [ -s t1/sae_weights.safetensors ] && [ -s "$work/stories.txt" ]; then
  viewer_run
else
  echo "viewer: SAES_TEST_ASSETS not set (or no t1 run); skipping the served-database checks"
fi
# Many dictionaries in one viewer: the t1 and CLT databases (and a folder holding one of them):
# the home page lists both with their facts, each one's pages live under /d/<name>/ with their
# links moved there, and --graphs with several databases is refused.
viewer_many() {
  expect "serve --graphs with two databases" 2 'serve: --graphs serves one database' -- \
    "$bin/saes-analyze" serve v1/default.sqlite aclt/default.sqlite --graphs x.sqlite --port 0
  one_line "serve --graphs with two databases"
  expect "serve an empty folder" 3 'serve: empty: no analysis database in the folder' -- \
    "$bin/saes-analyze" serve "$(mkdir -p empty && echo empty)" --port 0
  one_line "serve an empty folder"
  expect "serve --run with two databases" 2 'serve: --run names one database' -- \
    "$bin/saes-analyze" serve v1/default.sqlite aclt/default.sqlite --run t1 --port 0
  one_line "serve --run with two databases"
  expect "serve a new annotations file beside a bad database" 3 'nothere.sqlite' -- \
    "$bin/saes-analyze" serve nothere.sqlite --annotations fresh_notes.sqlite --port 0
  [ ! -e fresh_notes.sqlite ] && ok || bad "a refused serve left fresh_notes.sqlite"
  viewer_serve "v1/default.sqlite aclt" serve_many.log || return
  local pid=$viewer_pid
  grep -q 'viewer: serving 2 dictionaries' serve_many.log && ok || bad "viewer many: log: $(cat serve_many.log)"
  viewer_status "home" 200 /
  local home; home=$(cat fetched.txt)
  viewer_status "dictionaries api" 200 /api/dictionaries
  local names
  names=$(python3 -c 'import json
d = json.load(open("fetched.txt"))["dictionaries"]
assert len(d) == 2 and all(x["url"] == "/d/%s/" % x["name"] and x["d_sae"] > 0 for x in d), d
assert {x["sae_type"] for x in d} <= {"sae", "clt", ""}, d
assert any(x["l0"] is not None and x["l0"] > 0 and x["explained_variance"] is not None for x in d), d
print(" ".join(x["name"] for x in d))' 2>&1)
  local first="${names%% *}" second="${names##* }"
  if [ -n "$first" ] && [ "$first" != "$second" ] && echo "$home" | grep -q "href=\"/d/$first/\""; then ok
  else bad "viewer many: home page / api: $names"; fi
  viewer_status "first dictionary" 200 "/d/$first/"
  grep -q "href=\"/d/$first/features/" fetched.txt && grep -q "action=\"/d/$first/\"" fetched.txt &&
    ! grep -q 'href="/features/' fetched.txt && ok || bad "viewer many: /d/$first/ links are not under the prefix"
  viewer_status "second dictionary feature" 200 "/d/$second/features/0"
  viewer_status "unprefixed feature" 404 /features/0
  viewer_status "unknown dictionary" 404 /d/nope/
  local random; random=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "${viewer_url}d/$second/features/random")
  case "$random" in "302 ${viewer_url}d/$second/features/"[0-9]*) ok;; *) bad "viewer many: random: $random";; esac
  if command -v chromium >/dev/null; then
    timeout 90 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium-many" --hide-scrollbars \
      --screenshot="$work/viewer-home.png" --window-size=1200,400 "$viewer_url" >/dev/null 2>chromium_many.log
    [ -s "$work/viewer-home.png" ] && ok || bad "viewer many: no screenshot: $(tail -2 chromium_many.log)"
    if [ "${SAES_UPDATE_DOCS:-}" = 1 ] && [ -s "$work/viewer-home.png" ]; then cp "$work/viewer-home.png" "$root/docs/images/viewer-home.png"; fi
  fi
  kill -TERM "$pid"
  wait "$pid" && ok || bad "viewer many: serve exit $? after SIGTERM"
}

if [ -s v1/default.sqlite ] && [ -s tfull/metrics.jsonl ]; then viewer_training; fi
# Annotations (--annotations FILE): curl POSTs from our origin are saved (303 to the feature
# page), cross-site ones (another Origin, none) refused with 403 and nothing saved; the label
# shows in the table and is searchable; a bookmark filter; headless Chromium fills and submits
# the form as a user does; the analysis database is unchanged.
viewer_annotations() {
  local db_sum; db_sum=$(cksum <v1/default.sqlite)
  expect "serve annotations on an analysis database" 3 'not an saes annotations file' -- \
    "$bin/saes-analyze" serve v1/default.sqlite --annotations v1/default.sqlite --port 0
  one_line "serve annotations on an analysis database"
  viewer_serve "v1/default.sqlite --annotations notes.sqlite" serve_notes.log || return
  local pid=$viewer_pid origin="${viewer_url%/}"
  viewer_status "annotation post" 303 /features/3/annotation -X POST -H "Origin: $origin" \
    --data-urlencode 'label=tiny dragons' --data-urlencode 'notes=first notes' -d bookmarked=1
  viewer_status "cross-site post" 403 /features/4/annotation -X POST -H 'Origin: http://evil.example' -d label=pwned
  viewer_status "post without origin" 403 /features/4/annotation -X POST -d label=pwned
  viewer_status "post as json" 403 /features/4/annotation -X POST -H "Origin: $origin" -H 'Content-Type: application/json' -d '{}'
  viewer_status "annotated feature" 200 /features/3
  grep -q 'value="tiny dragons"' fetched.txt && ok || bad "viewer annotations: the label is not on /features/3"
  viewer_status "search by label" 200 "/?q=DRAGONS"
  [ "$(grep -o '<tr><td><a href="/features/[0-9]*"' fetched.txt | tr -d '\n')" = '<tr><td><a href="/features/3"' ] &&
    grep -q '★</span> tiny dragons</td>' fetched.txt && ok || bad "viewer annotations: the search by label: $(grep -o '<tr><td>.\{0,80\}' fetched.txt | head -3)"
  viewer_status "bookmarks" 200 "/?bookmarked=1"
  [ "$(grep -c '<tr><td><a href="/features/' fetched.txt)" = 1 ] && ok || bad "viewer annotations: the bookmark filter"
  python3 - notes.sqlite <<'PY' && ok || bad "viewer annotations: notes.sqlite holds $(sqlite3 notes.sqlite 'select * from annotations' 2>&1)"
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("select dictionary, feature, label, notes, bookmarked from annotations").fetchall()
assert rows == [("stories260k-l3-topk", 3, "tiny dragons", "first notes", 1)], rows
PY
  if command -v chromium >/dev/null && command -v node >/dev/null; then
    local typed
    typed="$(timeout 60 node "$root/tests/cli/annotate.js" "${viewer_url}features/5" "from the browser" "$work/chromium-annotate" 2>&1)"
    if python3 -c '
import json, sys
r = json.loads(sys.argv[1]); a = r["after"]
assert r["filled"] and a["href"].endswith("/features/5") and a["label"] == "from the browser", r
assert a["bookmarked"] and a["saved"].startswith("saved ") and not r["errors"], r' "$typed" 2>/dev/null; then ok
    else bad "viewer annotations: chromium's form submission: $typed"; fi
    timeout 90 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium-notes" --hide-scrollbars \
      --screenshot="$work/feature-annotation.png" --window-size=1200,700 "${viewer_url}features/5" >/dev/null 2>/dev/null
    if [ "${SAES_UPDATE_DOCS:-}" = 1 ] && [ -s "$work/feature-annotation.png" ]; then cp "$work/feature-annotation.png" "$root/docs/images/feature-annotation.png"; fi
  fi
  kill -TERM "$pid"
  wait "$pid" && ok || bad "viewer annotations: serve exit $?"
  [ "$(cksum <v1/default.sqlite)" = "$db_sum" ] && ok || bad "viewer annotations: the analysis database changed"
}

if [ -s v1/default.sqlite ]; then viewer_annotations; fi
if [ -s aclt/default.sqlite ]; then viewer_clt; fi
if [ -s aclt/default.sqlite ] && [ -s v1/default.sqlite ]; then viewer_many; fi
if [ -s acc/default.sqlite ]; then viewer_crosscoder; fi

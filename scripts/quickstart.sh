#!/usr/bin/env bash
# Quickstart: the whole saes pipeline on a small default (stories260K on TinyStories text).
# Model and text come from $SAES_ASSETS when set (offline machines, CI), else from their public
# homes. Run from anywhere after scripts/setup.sh (or scripts/build.sh); writes into data/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SAES_BUILD_DIR:-$root/build}"
cd "$root"

model_url="https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin"
tok_url="https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/tok512.bin"
text_url="https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-valid.txt"

mkdir -p data/stories260K data/tinystories

fetch() {  # fetch URL DEST
  [ -s "$2" ] && return 0
  echo "quickstart: downloading $1"
  if ! curl -fL --retry 3 -o "$2.part" "$1"; then
    rm -f "$2.part"
    echo "quickstart: error: could not download $1" >&2
    echo "  Offline? Point SAES_ASSETS at a copy of the test assets (llama2c-stories260K/," >&2
    echo "  corpora/tinystories/) or put the file at $2 yourself and re-run." >&2
    exit 3
  fi
  mv "$2.part" "$2"
}

if [ -n "${SAES_ASSETS:-}" ]; then
  echo "quickstart: using model and text from SAES_ASSETS=$SAES_ASSETS"
  for f in llama2c-stories260K/stories260K.bin llama2c-stories260K/tok512.bin; do
    [ -f "$SAES_ASSETS/$f" ] || { echo "quickstart: error: $SAES_ASSETS/$f not found" >&2; exit 3; }
    ln -sf "$SAES_ASSETS/$f" "data/stories260K/$(basename "$f")"
  done
  shopt -s nullglob
  texts=("$SAES_ASSETS"/corpora/tinystories/*.txt)
  [ "${#texts[@]}" -gt 0 ] || { echo "quickstart: error: no $SAES_ASSETS/corpora/tinystories/*.txt" >&2; exit 3; }
  for f in "${texts[@]}"; do ln -sf "$f" "data/tinystories/$(basename "$f")"; done
else
  command -v curl >/dev/null || { echo "quickstart: error: curl is needed to download (or set SAES_ASSETS)" >&2; exit 3; }
  fetch "$model_url" data/stories260K/stories260K.bin
  fetch "$tok_url" data/stories260K/tok512.bin
  fetch "$text_url" data/tinystories/TinyStoriesV2-GPT4-valid.txt
fi

generate="$build/apps/saes-generate"
train="$build/apps/saes-train"
analyze="$build/apps/saes-analyze"
convert="$build/apps/saes-convert"
for exe in "$generate" "$train" "$analyze" "$convert"; do
  [ -x "$exe" ] || { echo "quickstart: error: $exe not built; run scripts/build.sh" >&2; exit 2; }
done

echo "quickstart: step 1/4: generate activations (configs/generate-stories260k.yaml)"
"$generate" configs/generate-stories260k.yaml "$@"
echo "quickstart: activation shards are in $root/data/stories260K/activations-1d" \
  "(manifest.json lists them; docs/generate.md explains the layout)"

echo "quickstart: step 2/4: train a TopK SAE (configs/train-stories260k-topk.yaml)"
"$train" configs/train-stories260k-topk.yaml --set overwrite=true  # a rerun replaces the demo run
echo "quickstart: the trained SAE is in $root/data/runs/stories260k-l3-topk" \
  "(sae_weights.safetensors, metrics.jsonl; docs/train.md explains the layout)"

echo "quickstart: step 3/4: analyze the SAE's features (configs/analyze-stories260k.yaml)"
"$analyze" configs/analyze-stories260k.yaml
echo "quickstart: the analysis is in $root/data/analysis/stories260k-l3-topk/default.sqlite" \
  "(docs/analysis.md; 'saes-analyze export' writes one JSON per feature)"
echo "quickstart: browse it with: $analyze serve $root/data/analysis/stories260k-l3-topk/default.sqlite" \
  "(then open http://127.0.0.1:24577/; docs/viewer.md)"

echo "quickstart: step 4/4: export the SAE to SAELens (configs/convert-saelens.yaml)"
"$convert" configs/convert-saelens.yaml --set overwrite=true
echo "quickstart: the SAELens folder is in $root/data/saelens/stories260k-l3-topk" \
  "(cfg.json, sae_weights.safetensors, sparsity.safetensors; docs/convert.md explains the mapping)"

#!/usr/bin/env bash
# Submits generate → train → analyze → convert as a dependent SLURM job chain: each job starts only
# after the previous one succeeded (--dependency=afterok). Pre-empted or timed-out training jobs
# checkpoint and requeue themselves (train.sbatch), so the chain survives pre-emption.
# Usage: scripts/slurm/submit_chain.sh GENERATE.yaml TRAIN.yaml ANALYZE.yaml CONVERT.yaml
#   Environment: SAES_BIN (folder of the saes-* executables, default build/apps), SBATCH_ARGS
#   (extra sbatch options for every job, e.g. "--partition=gpu --account=me").
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ "$#" -eq 4 ] || { echo "usage: $0 GENERATE.yaml TRAIN.yaml ANALYZE.yaml CONVERT.yaml" >&2; exit 2; }
export SAES_BIN="${SAES_BIN:-$(pwd)/build/apps}"
read -r -a extra <<<"${SBATCH_ARGS:-}"

submit() {  # submit DEPENDENCY SCRIPT CONFIG → job id
  local dep=() 
  [ -n "$1" ] && dep=(--dependency="afterok:$1" --kill-on-invalid-dep=yes)
  sbatch --parsable --export=ALL "${extra[@]}" "${dep[@]}" "$2" "$3" | cut -d';' -f1
}

gen=$(submit "" "$here/generate.sbatch" "$1")
train=$(submit "$gen" "$here/train.sbatch" "$2")
analyze=$(submit "$train" "$here/analyze.sbatch" "$3")
convert=$(submit "$analyze" "$here/convert.sbatch" "$4")
echo "generate $gen → train $train → analyze $analyze → convert $convert"

#!/usr/bin/env bash
# Runs every test of saes: installs dependencies and builds when needed (scripts/setup.sh), then
# runs CTest (unit tests, mpirun -np 2 and -np 4 collectives, CLI end-to-end tests).
# Tests that need the shared assets read $SAES_TEST_ASSETS and skip with a message when it is unset.
# Cost: a few minutes on 2 cores with a cold build; the tests themselves take well under a minute.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SAES_BUILD_DIR:-$root/build}"
"$root/scripts/setup.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ -n "${SAES_TEST_ASSETS:-}" ]; then
  [ -d "$SAES_TEST_ASSETS" ] || { echo "test: SAES_TEST_ASSETS=$SAES_TEST_ASSETS is not a folder" >&2; exit 2; }
  SAES_TEST_ASSETS="$(cd "$SAES_TEST_ASSETS" && pwd)"
  export SAES_TEST_ASSETS
else
  echo "test: SAES_TEST_ASSETS is unset: tests that need the real model, tokenizers and corpora will be skipped"
fi
python3 "$root/scripts/check_layering.py" "$root/lib/saes"
cd "$build"
ctest --output-on-failure --timeout 900 "$@"

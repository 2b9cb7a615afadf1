#!/usr/bin/env bash
# One-time set-up on a fresh Debian 12 machine: installs the dependencies (scripts/deps.sh), then
# configures and builds saes (Release) into build/. Idempotent; fails loudly on the first error.
# Cost: ~1 min of apt + a clean build of a few minutes on 2 cores (seconds with a warm ccache).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/deps.sh"
"$root/scripts/build.sh" "$@"
echo "setup: built $(ls "${SAES_BUILD_DIR:-$root/build}"/apps/saes-* | xargs -n1 basename | tr '\n' ' ')"

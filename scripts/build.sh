#!/usr/bin/env bash
# Configure and build saes (Release) into ${SAES_BUILD_DIR:-build}. Extra args go to cmake configure.
# Cost: clean build ~N min on 2 cores (see README); with a warm ccache a few seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SAES_BUILD_DIR:-$root/build}"
jobs="${SAES_JOBS:-2}"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE="${SAES_BUILD_TYPE:-Release}" "$@"
elif [ "$#" -gt 0 ]; then
  cmake "$build" "$@"
fi
cmake --build "$build" -j "$jobs"

#!/usr/bin/env bash
# ASan + UBSan run of the test suite: configures build-asan (cmake --preset asan: GCC,
# -fsanitize=address,undefined, -fno-sanitize-recover=undefined, -O1 -g), builds the test binaries
# and the four executables, then runs the unit tests, the MPI tests (2 ranks) and the CLI tests
# against that build. Any sanitizer report fails the run. docs/fuzzing.md gives its duration.
#
#   SAES_TEST_ASSETS=../shared/assets scripts/sanitize.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-asan"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
[ -f "$build/CMakeCache.txt" ] || (cd "$root" && cmake --preset asan >/dev/null)
t0=$(date +%s)
cmake --build "$build" -j "${SAES_JOBS:-2}" --target saes_tests saes_mpi_tests saes-train \
  saes-generate saes-analyze saes-convert
t1=$(date +%s)
# Leak checking is off: LibTorch keeps process-lifetime allocations (operator registry, thread
# pools) that LeakSanitizer reports at exit. Everything else aborts at the first report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:detect_odr_violation=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
status=0
"$build/tests/saes_tests" "~[slow]" --order lex || status=1
t2=$(date +%s)
mpirun --oversubscribe --bind-to none -np 2 "$build/tests/saes_mpi_tests" || status=1
t3=$(date +%s)
bash "$root/tests/cli/run_cli_tests.sh" "$build" || status=1
t4=$(date +%s)
echo "sanitize: build $((t1 - t0)) s, unit $((t2 - t1)) s, mpi-np2 $((t3 - t2)) s, cli $((t4 - t3)) s"
exit "$status"

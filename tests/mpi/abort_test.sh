#!/usr/bin/env bash
# Failure injection under mpirun: rank 1 throws while the other ranks wait in a barrier (the hidden
# "[abort]" case of saes_mpi_tests), and rank 1's batch source throws at step 3 of data-parallel
# training while the others wait in the step's all-reduce ("[abort_train]"). The job must end within seconds, with the error's exit code (3,
# DataError) and the rank-prefixed message on stderr. Also checks that a test failing on rank 1 only
# fails the whole saes_mpi_tests run ("[fails_on_rank_one]"). Cost: ~12 s.
# Usage: abort_test.sh <mpiexec> <saes_mpi_tests> [ranks]
set -u
mpiexec="$1"
binary="$2"
ranks="${3:-2}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
stderr_file="$(mktemp)"
trap 'rm -f "$stderr_file"' EXIT

fail() {
  echo "abort_test: $*" >&2
  echo "--- stderr of mpirun ---" >&2
  cat "$stderr_file" >&2
  exit 1
}

start=$(date +%s)
timeout 60 "$mpiexec" --oversubscribe --bind-to none -np "$ranks" "$binary" "[abort]" \
  >/dev/null 2>"$stderr_file"
abort_rc=$?
elapsed=$(($(date +%s) - start))

[ "$abort_rc" -ne 124 ] || fail "mpirun still running after 60 s: the abort did not end the waiting ranks"
[ "$abort_rc" -eq 3 ] ||
  fail "mpirun exited with $abort_rc, expected 3 (the DataError exit code given to MPI_Abort)"
grep -q "^\[rank 1/$ranks\] injected failure on rank 1" "$stderr_file" ||
  fail "stderr lacks the message '[rank 1/$ranks] injected failure on rank 1 ...'"
[ "$elapsed" -le 30 ] || fail "the abort took ${elapsed} s, expected a few seconds"
start=$(date +%s)
timeout 60 "$mpiexec" --oversubscribe --bind-to none -np "$ranks" "$binary" "[abort_train]" \
  >/dev/null 2>"$stderr_file"
train_rc=$?
train_elapsed=$(($(date +%s) - start))
[ "$train_rc" -ne 124 ] || fail "training: mpirun still running after 60 s: the abort did not end the other ranks"
[ "$train_rc" -eq 3 ] || fail "training: mpirun exited with $train_rc, expected 3 (DataError)"
grep -q "^\[rank 1/$ranks\] injected failure: bad shard on rank 1 at step 3" "$stderr_file" ||
  fail "training: stderr lacks '[rank 1/$ranks] injected failure: bad shard on rank 1 at step 3'"
[ "$train_elapsed" -le 30 ] || fail "training: the abort took ${train_elapsed} s, expected a few seconds"
timeout 60 "$mpiexec" --oversubscribe --bind-to none -np "$ranks" "$binary" "[fails_on_rank_one]" \
  >/dev/null 2>"$stderr_file"
rc=$?
[ "$rc" -eq 1 ] || fail "a test failing on rank 1 only: saes_mpi_tests exited with $rc, expected 1"
grep -q "^\[rank 1/$ranks\] 1 failed test case(s)" "$stderr_file" ||
  fail "a test failing on rank 1 only: stderr lacks rank 1's failure report"
echo "abort_test: ok ($ranks ranks, exit code $abort_rc after ${elapsed} s, training abort after ${train_elapsed} s)"

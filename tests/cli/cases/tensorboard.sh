# saes-train's TensorBoard event files (logging.tensorboard, sourced by run_cli_tests.sh): a tiny
# run on the g1 shards writes one events.out.tfevents.* beside metrics.jsonl; tests/cli/
# tfevents_check.py reads it with its own record and protobuf-wire parser (no tensorboard package)
# and compares every Event with metrics.jsonl. A resumed run appends a second file (SessionLog
# START after the checkpoint) and leaves the first untouched; the files count as the run's (a new
# run is refused, overwrite: true replaces them); a sweep writes one per dictionary folder.
if [ -n "$assets" ] && [ -d "$assets/llama2c-stories260K" ] && [ -d g1 ]; then
  tb_set=(--set 'activation_factory.sources=[{type: activations, name: g1, path: g1}]'
    --set activation_factory.batch_size=500 --set trainer.total_training_tokens=5000
    --set trainer.log_frequency=1 --set logging.progress=off --set logging.tensorboard=true)
  tb_check() { /usr/bin/python3 "$root/tests/cli/tfevents_check.py" "$@" 2>&1; }
  expect "train tensorboard" 0 'tensorboard: ttb/events.out.tfevents.' -- "$bin/saes-train" "$train_cfg" "${tb_set[@]}" \
    --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear --set trainer.exp_result_path=ttb
  tb_files=(ttb/events.out.tfevents.*)
  if [ "${#tb_files[@]}" = 1 ] && [ -s "${tb_files[0]}" ] && [ "$(wc -l <ttb/metrics.jsonl)" = 10 ]; then ok
  else bad "tensorboard: expected one events file and 10 metric lines in ttb: $(ls ttb)"; fi
  tb_out="$(tb_check "${tb_files[0]}" ttb/metrics.jsonl)"
  [ "$tb_out" = "ok: 11 events" ] && ok || bad "tensorboard: ${tb_files[0]}: $tb_out"
  # The same run without TensorBoard logs the same metrics (the writer changes nothing else).
  expect "train without tensorboard" 0 '' -- "$bin/saes-train" "$train_cfg" "${tb_set[@]}" --set logging.tensorboard=false \
    --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear --set trainer.exp_result_path=ttb0
  if cmp -s ttb/metrics.jsonl ttb0/metrics.jsonl && ! ls ttb0/events.out.tfevents.* >/dev/null 2>&1; then ok
  else bad "tensorboard: metrics with and without it differ, or ttb0 has an events file"; fi

  # Resume from the step-5 checkpoint: a second file, the first one byte for byte as it was.
  rm -rf ttbres && cp -r ttb ttbres && rm ttbres/sae_weights.safetensors
  tb_first="ttbres/${tb_files[0]#ttb/}"
  tb_sum="$(cksum <"$tb_first")"
  expect "train tensorboard --resume" 0 'resuming from .*step_5' -- "$bin/saes-train" --resume ttbres/checkpoints/step_5
  tb_new=()
  for f in ttbres/events.out.tfevents.*; do [ "$f" = "$tb_first" ] || tb_new+=("$f"); done
  if [ "${#tb_new[@]}" = 1 ] && [ "$(cksum <"$tb_first")" = "$tb_sum" ] && cmp -s ttb/metrics.jsonl ttbres/metrics.jsonl; then ok
  else bad "tensorboard resume: files $(ls ttbres), first file changed or metrics differ"; fi
  tb_out="$(tb_check "${tb_new[0]}" ttbres/metrics.jsonl --resumed-after 5)"
  [ "$tb_out" = "ok: 7 events" ] && ok || bad "tensorboard resumed file ${tb_new[0]}: $tb_out"

  # The events files belong to the run: a new run into it is refused naming them, overwrite:
  # true removes them (and writes one new file).
  expect "train into a run with events" 2 'ttb already holds a run \(.*events\.out\.tfevents\.' -- \
    "$bin/saes-train" "$train_cfg" "${tb_set[@]}" --set trainer.exp_result_path=ttb
  one_line "train into a run with events"
  cp -r ttb ttbover
  expect "train tensorboard overwrite" 0 'overwrite: removed .*events\.out\.tfevents\.' -- \
    "$bin/saes-train" "$train_cfg" "${tb_set[@]}" --set trainer.exp_result_path=ttbover --set overwrite=true
  tb_over=(ttbover/events.out.tfevents.*)
  if [ "${#tb_over[@]}" = 1 ] && [ "$(tb_check "${tb_over[0]}" ttbover/metrics.jsonl)" = "ok: 11 events" ]; then ok
  else bad "tensorboard overwrite: $(ls ttbover)"; fi

  # A sweep: one file in each dictionary's folder, none in the run folder.
  expect "train tensorboard sweep" 0 '' -- "$bin/saes-train" "$train_cfg" "${tb_set[@]}" --set trainer.log_frequency=5 \
    --set 'sweep=[{sae_name: k8, set: [sae.top_k=8, trainer.initial_k=32]}, {sae_name: k16}]' --set trainer.exp_result_path=ttbsweep
  tb_sweep_ok=1
  for m in k8 k16; do
    f=(ttbsweep/$m/events.out.tfevents.*)
    [ "${#f[@]}" = 1 ] && [ "$(tb_check "${f[0]}" "ttbsweep/$m/metrics.jsonl")" = "ok: 3 events" ] || tb_sweep_ok=0
  done
  ls ttbsweep/events.out.tfevents.* >/dev/null 2>&1 && tb_sweep_ok=0
  [ "$tb_sweep_ok" = 1 ] && ok || bad "tensorboard sweep: $(ls ttbsweep ttbsweep/k8)"

  # When the tensorboard package is installed, its own reader agrees (not required).
  if /usr/bin/python3 -c 'import tensorboard' >/dev/null 2>&1; then
    tb_ref="$(/usr/bin/python3 - ttb <<'PY' 2>&1
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
lines = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
got = [(e.step, e.value) for e in acc.Scalars("losses/overall_loss")]
want = [(l["step"], l["losses/overall_loss"]) for l in lines]
assert [s for s, _ in got] == [s for s, _ in want], (got, want)
assert all(abs(g - w) <= 1e-6 * abs(w) for (_, g), (_, w) in zip(got, want)), (got, want)
print("ok")
PY
)"
    [ "$tb_ref" = ok ] && ok || bad "tensorboard package reading ttb: $tb_ref"
  else
    echo "tensorboard: the tensorboard Python package is not installed; checked with tests/cli/tfevents_check.py only"
  fi
fi

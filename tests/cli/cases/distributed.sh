# Distributed saes-train under mpirun (sourced by run_cli_tests.sh): mesh errors on every rank,
# 2 data-parallel ranks and 2 feature-parallel ranks reproducing the single-process run t1/
# (weights within fp32 tolerance), a resumed 2-rank run, a feature-parallel checkpoint resumed in
# one process, saes-analyze with the features split over 2 ranks writing the one-process
# database, and a rank that fails mid-training ending the whole job with its message.
if command -v mpirun >/dev/null; then
  mpi2=(timeout 120 mpirun --oversubscribe --bind-to none -np 2)
  expect "mpirun model parallel needs d_sae divisible" 2 'model_parallel_size 2 must divide d_sae|must divide d_sae' -- \
    "${mpi2[@]}" "$bin/saes-train" "$train_cfg" --set model_parallel_size=2 --set sae.expansion_factor=1.015625
  expect "mpirun mesh mismatch" 2 'data_parallel_size \(1\) × model_parallel_size \(1\) = 1 does not match the 2 ranks' -- \
    "${mpi2[@]}" "$bin/saes-train" "$train_cfg"

  if [ -n "${assets:-}" ] && [ -s t1/sae_weights.safetensors ]; then
    # max |a - b| over the tensors of two safetensors files (float32/16 only).
    max_diff() {
      /usr/bin/python3 - "$1" "$2" <<'PY'
import json, struct, sys
import numpy as np
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__": continue
        a, b = info["data_offsets"]
        dt = {"F32": np.float32, "F16": np.float16}[info["dtype"]]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).astype(np.float64)
    return out
x, y = load(sys.argv[1]), load(sys.argv[2])
assert x.keys() == y.keys(), (sorted(x), sorted(y))
print(max(float(np.abs(x[k] - y[k]).max() / (np.abs(x[k]).max() + 1e-12)) for k in x))
PY
    }
    # same_analysis_db A B [TABLES]: prints "same" when two saes-analyze databases hold the same
    # rows (floats and float32 blobs within 1e-5 relative), else what differs; TABLES: a
    # comma-separated list of tables to leave out.
    same_analysis_db() {
      /usr/bin/python3 - "$1" "$2" "${3:-}" <<'PY' 2>&1
import sqlite3, sys
def rows(path):
    db = sqlite3.connect(path)
    skip = {"meta"} | set(filter(None, sys.argv[3].split(",")))
    tables = [t for (t,) in db.execute("select name from sqlite_master where type='table'") if t not in skip]
    # Contexts: (feature, band, rank, score) only — contexts whose peaks tie (the same story
    # opening twice) may swap when the encoder GEMM of a feature slice rounds the last bit
    # differently; their scores still agree. Logit lens: (feature, side, rank, value) only, for
    # the same reason: two tokens whose logits agree to float32 rounding (a feature's slice of
    # W_D·W_U is another GEMM shape on each rank) may swap ranks; their values still agree.
    special = {"contexts": "feature, band, rank, score", "logits": "feature, side, rank, value"}
    cols = {t: special.get(t, "*") for t in tables}
    return {t: sorted(db.execute(f"select {cols[t]} from {t}").fetchall(), key=repr) for t in tables}
from array import array
def close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-5 * max(abs(a), abs(b), 1e-6)
    if isinstance(a, bytes) and a != b and len(a) == len(b) and len(a) % 4 == 0:
        return all(close(x, y) for x, y in zip(array("f", a), array("f", b)))  # float32 acts
    return a == b
x, y = rows(sys.argv[1]), rows(sys.argv[2])
assert x.keys() == y.keys(), (sorted(x), sorted(y))
for t in x:
    assert len(x[t]) == len(y[t]), (t, len(x[t]), len(y[t]))
    for r, s in zip(x[t], y[t]):
        assert len(r) == len(s) and all(close(a, b) for a, b in zip(r, s)), (t, r[:4], s[:4])
print("same")
PY
    }
    dp_set=(--set 'activation_factory.sources=[{type: activations, name: g1, path: g1}]'
      --set activation_factory.batch_size=500 --set trainer.total_training_tokens=5000 --set trainer.log_frequency=5
      --set logging.progress=off --set data_parallel_size=2 --threads 1)
    expect "mpirun train 2 data ranks" 0 '' -- "${mpi2[@]}" "$bin/saes-train" "$train_cfg" "${dp_set[@]}" --set trainer.exp_result_path=tdp
    diff_dp="$(max_diff t1/sae_weights.safetensors tdp/sae_weights.safetensors 2>&1)"
    if below 1e-4 "$diff_dp" && [ "$(wc -l <tdp/metrics.jsonl)" = 2 ]; then ok; else bad "2 data ranks vs one process: relative max diff $diff_dp, metrics $(cat tdp/metrics.jsonl)"; fi

    # Checkpoints at steps 5 and 10; drop the end to look like a crash after step 5, resume on 2 ranks.
    expect "mpirun train with checkpoints" 0 '' -- "${mpi2[@]}" "$bin/saes-train" "$train_cfg" "${dp_set[@]}" \
      --set trainer.exp_result_path=tres --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear
    rm -rf tres/checkpoints/step_10 tres/sae_weights.safetensors
    expect "mpirun resume on 2 ranks" 0 '' -- "${mpi2[@]}" "$bin/saes-train" "$train_cfg" "${dp_set[@]}" \
      --set trainer.exp_result_path=tres --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear \
      --set trainer.from_pretrained_path=tres
    diff_res="$(max_diff tdp/sae_weights.safetensors tres/sae_weights.safetensors 2>&1)"
    if below 1e-6 "$diff_res"; then ok; else bad "resumed 2-rank run differs: $diff_res"; fi

    # Feature parallel: 2 model ranks reproduce t1; a 2-rank checkpoint resumes in one process.
    run_set=(--set 'activation_factory.sources=[{type: activations, name: g1, path: g1}]'
      --set activation_factory.batch_size=500 --set trainer.total_training_tokens=5000 --set trainer.log_frequency=5
      --set logging.progress=off --threads 1)
    expect "mpirun train 2 model ranks" 0 '' -- "${mpi2[@]}" "$bin/saes-train" "$train_cfg" "${run_set[@]}" \
      --set model_parallel_size=2 --set trainer.exp_result_path=tmp2
    diff_mp="$(max_diff t1/sae_weights.safetensors tmp2/sae_weights.safetensors 2>&1)"
    if below 1e-4 "$diff_mp" && [ "$(wc -l <tmp2/metrics.jsonl)" = 2 ]; then ok; else bad "2 model ranks vs one process: relative max diff $diff_mp, metrics $(cat tmp2/metrics.jsonl)"; fi
    expect "mpirun model parallel with checkpoints" 0 '' -- "${mpi2[@]}" "$bin/saes-train" "$train_cfg" "${run_set[@]}" \
      --set model_parallel_size=2 --set trainer.exp_result_path=tmpres --set trainer.n_checkpoints=2 \
      --set trainer.check_point_save_mode=linear
    rm -rf tmpres/checkpoints/step_10 tmpres/sae_weights.safetensors
    expect "model-parallel checkpoint resumed in one process" 0 '' -- "$bin/saes-train" "$train_cfg" "${run_set[@]}" \
      --set trainer.exp_result_path=tmpres --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear \
      --set trainer.from_pretrained_path=tmpres
    diff_mpres="$(max_diff tmp2/sae_weights.safetensors tmpres/sae_weights.safetensors 2>&1)"
    if below 1e-5 "$diff_mpres"; then ok; else bad "model-parallel run resumed in one process differs: $diff_mpres"; fi

    # saes-analyze with the features split over 2 ranks writes the database one process writes.
    if [ -n "${an_cfg:-}" ] && [ -s a1/default.sqlite ]; then
      expect "mpirun analyze 2 model ranks" 0 '' -- "${mpi2[@]}" "$bin/saes-analyze" "$an_cfg" "${an_set[@]}" \
        --set output_dir=a2 --set model_parallel_size=2
      same_db="$(same_analysis_db a1/default.sqlite a2/default.sqlite)"
      if [ "$same_db" = same ]; then ok; else bad "2-rank analysis differs from one process: $same_db"; fi
    fi

    # A new run into a folder that holds (part of) a run is refused on every rank.
    mkdir -p tbusy && : >tbusy/checkpoints
    expect "mpirun new run into a non-empty run folder" 2 'tbusy already holds a run \(checkpoints\); continue that run with saes-train --resume' -- \
      "${mpi2[@]}" "$bin/saes-train" "$train_cfg" "${dp_set[@]}" --set trainer.exp_result_path=tbusy
    # Rank 0 cannot write its checkpoint (a file-size limit: the write fails with EFBIG) while
    # rank 1 waits in the next step's all-reduce: both must end within seconds with rank 0's
    # message and code 3, and no staging folder is left.
    start=$(date +%s)
    expect "mpirun failing rank aborts all with its code" 3 '\[rank 0/2\] saes-train: error: .*checkpoint.*File too large' -- \
      "${mpi2[@]}" bash -c 'trap "" XFSZ; ulimit -f 200; exec "$@"' limited "$bin/saes-train" "$train_cfg" "${dp_set[@]}" \
      --set trainer.exp_result_path=tfail --set trainer.n_checkpoints=2 --set trainer.check_point_save_mode=linear
    if [ -z "$(ls tfail/checkpoints)" ]; then ok; else bad "failing checkpoint left $(ls tfail/checkpoints)"; fi
    if [ $(($(date +%s) - start)) -le 60 ]; then ok; else bad "failing rank: the job took $(($(date +%s) - start)) s to end"; fi
  fi
fi

#!/usr/bin/env bash
# The CUDA checks, in one run, on a GPU machine that has a pip PyTorch (with CUDA and NCCL) and
# `transformers` but no Debian dev packages and no network:
#   1. tests/reference/make_hf_fixtures.py → the HF fixtures (tests/data/hf, hf-fixtures.tar.gz);
#   2. unpack the Debian packages carried in .gpudeps/ (scripts/gpu-check.sh --fetch-debs, run on
#      a Debian 12 machine, downloads them) into a private prefix, never into /;
#   3. configure and build saes against the pip LibTorch (CUDA) with NCCL and without MPI;
#   4. run the [cuda] tests, the HF fixture test, the whole unit suite, and a generate → train
#      run on CUDA; 5. the training-step benchmark on CUDA (fp32 and bf16) vs PyTorch eager.
# Results go to $OUT (default ./gpu-out): gpu-check.log, bench-*.md, hf-fixtures.tar.gz.
# Usage: scripts/gpu-check.sh [--fetch-debs] ; assets: $SAES_TEST_ASSETS (default .gpuassets).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
DEBS=$ROOT/.gpudeps
PACKAGES="libyaml-cpp-dev libyaml-cpp0.7 libfmt-dev libfmt9 libcli11-dev nlohmann-json3-dev catch2
  libzstd-dev libzstd1 libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
  libutf8proc-dev libutf8proc2 libsqlite3-dev libsqlite3-0 libcpp-httplib-dev libcpp-httplib0.11
  pkgconf pkgconf-bin libpkgconf3 libbrotli1 libbrotli-dev libssl-dev libssl3 zlib1g-dev"
if [[ "${1:-}" == "--fetch-debs" ]]; then
  mkdir -p "$DEBS" && cd "$DEBS" && exec apt-get download $PACKAGES
fi

OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
LOG=$OUT/gpu-check.log
: > "$LOG"
say() { echo "== $(date +%T) $*" | tee -a "$LOG"; }
run() { "$@" >> "$LOG" 2>&1; }
JOBS=$(nproc)
export TORCH_CUDA_ARCH_LIST=9.0
command -v nvcc >/dev/null && export CUDACXX=$(command -v nvcc)
[[ -d /usr/local/cuda ]] && export CUDAToolkit_ROOT=/usr/local/cuda
export SAES_TEST_ASSETS=${SAES_TEST_ASSETS:-$ROOT/.gpuassets}

say "machine"
run nvidia-smi -L
run python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "abi", torch._C._GLIBCXX_USE_CXX11_ABI, "transformers", transformers.__version__)'
run g++ --version
run cmake --version

if [[ "${SAES_GPU_FIXTURES:-1}" == 1 ]]; then
  say "1. HF fixtures with transformers (SAES_GPU_FIXTURES=0 keeps the committed ones)"
  rm -rf tests/data/hf
  if timeout 120 python3 tests/reference/make_hf_fixtures.py tests/data/hf >> "$LOG" 2>&1; then
    say "fixtures ok: $(du -sh tests/data/hf | cut -f1)"
  else
    say "fixtures FAILED (see above)"
  fi
  [[ -d tests/data/hf ]] && tar -czf "$OUT/hf-fixtures.tar.gz" -C tests/data hf
fi
if [[ "${SAES_GPU_TORCH_HEADERS:-0}" == 1 ]]; then
  # LibTorch 2.x headers, for compile checks on a machine that only has Debian's 1.13.
  TORCH_DIR=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
  (cd "$TORCH_DIR" && nice tar -cf - include | xz -6 -T4 | split -b 15M - "$OUT/torch-include.tar.xz.") &
fi

say "2. Debian packages into a private prefix"
PREFIX=/tmp/saes-deps
rm -rf "$PREFIX" && mkdir -p "$PREFIX/rt"
for f in "$DEBS"/*.deb; do dpkg -x "$f" "$PREFIX"; done
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
for pc in "$LIBDIR"/pkgconfig/*.pc "$PREFIX"/usr/share/pkgconfig/*.pc; do
  [[ -f "$pc" ]] && sed -i -e "s|=/usr\$|=$PREFIX/usr|" -e "s|=/usr/|=$PREFIX/usr/|g" -e "s| /usr/| $PREFIX/usr/|g" "$pc"
done
# Runtime libraries the system lacks (keep the system's own libssl, zstd, sqlite, pcre2 for python).
for so in "$LIBDIR"/lib*.so.*; do
  name=$(basename "$so")
  soname=$(echo "$name" | sed -E 's/(\.so\.[0-9]+).*/\1/')
  ldconfig -p | grep -q " $soname " || ln -sf "$so" "$PREFIX/rt/$soname"
done
run ls "$PREFIX/rt"
cat > "$PREFIX/pkg-config" <<EOF
#!/bin/sh
LD_LIBRARY_PATH=$LIBDIR PKG_CONFIG_LIBDIR=$LIBDIR/pkgconfig:$PREFIX/usr/share/pkgconfig exec $PREFIX/usr/bin/pkgconf "\$@"
EOF
chmod +x "$PREFIX/pkg-config"

say "3. configure + build (pip LibTorch, CUDA, NCCL, no MPI; $JOBS jobs)"
TORCH_CMAKE=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
NV=$(python3 -c 'import nvidia,os;print(list(nvidia.__path__)[0])' 2>/dev/null)
NCCL_H=$(find "$NV" -name nccl.h 2>/dev/null | head -1)
NCCL_SO=$(find "$NV" -name 'libnccl.so*' 2>/dev/null | head -1)
say "nccl: $NCCL_H $NCCL_SO"
B=$ROOT/build-gpu
run cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_CMAKE;$PREFIX/usr" -DPKG_CONFIG_EXECUTABLE="$PREFIX/pkg-config" \
  -DSQLite3_INCLUDE_DIR="$PREFIX/usr/include" -DSQLite3_LIBRARY="$LIBDIR/libsqlite3.so" \
  -DSAES_WITH_MPI=OFF -DSAES_WITH_NCCL=ON -DNCCL_INCLUDE_DIR="$(dirname "$NCCL_H")" \
  -DNCCL_LIBRARY="$NCCL_SO" -DTORCH_CUDA_ARCH_LIST=9.0 -DCMAKE_CUDA_ARCHITECTURES=90
T0=$(date +%s)
timeout "${SAES_GPU_BUILD_TIMEOUT:-330}" ninja -C "$B" -k 0 -j "$JOBS" saes_tests bench_train_step \
  saes-generate saes-train >> "$LOG" 2>&1
say "build rc $? in $(( $(date +%s) - T0 )) s"
grep -E "error:|undefined reference" "$LOG" | sort | uniq -c | sort -rn | head -60 > "$OUT/build-errors.txt"

export LD_LIBRARY_PATH=$PREFIX/rt${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [[ -x "$B/tests/saes_tests" ]]; then
  say "4a. [cuda] tests"
  timeout 120 "$B/tests/saes_tests" "[cuda]" -s -r compact >> "$LOG" 2>&1; say "[cuda] rc $?"
  if [[ -n "${SAES_GPU_GDB_TEST:-}" ]] && command -v cuda-gdb > /dev/null; then
    say "4a'. backtrace of '$SAES_GPU_GDB_TEST'"
    timeout 90 cuda-gdb -batch -ex run -ex bt -ex "info threads" --args "$B/tests/saes_tests" \
      "$SAES_GPU_GDB_TEST" >> "$LOG" 2>&1
  fi
  say "4b. HF fixture test"
  timeout 60 "$B/tests/saes_tests" "[hf]" >> "$LOG" 2>&1; say "[hf] rc $?"
fi
if [[ "${SAES_GPU_E2E:-1}" == 1 && -x "$B/apps/saes-train" && -d "$SAES_TEST_ASSETS/llama2c-stories260K" ]]; then
  say "4d. saes-generate + saes-train on CUDA (stories260K)"
  mkdir -p data/stories260K data/tinystories
  cp "$SAES_TEST_ASSETS"/llama2c-stories260K/{stories260K.bin,tok512.bin} data/stories260K/
  cp "$SAES_TEST_ASSETS"/corpora/tinystories/*.txt data/tinystories/
  timeout 60 "$B/apps/saes-generate" configs/generate-stories260k.yaml --set model.device=cuda \
    --set device_type=cuda --set overwrite=true >> "$LOG" 2>&1; say "generate rc $?"
  timeout 90 "$B/apps/saes-train" configs/train-stories260k-topk.yaml --set sae.device=cuda \
    --set device_type=cuda --set activation_factory.sources.0.device=cuda --set overwrite=true >> "$LOG" 2>&1
  say "train rc $?"
  tail -n 3 data/runs/stories260k-l3-topk/*.jsonl >> "$LOG" 2>/dev/null
fi
if [[ "${SAES_GPU_BENCH:-1}" == 1 && -x "$B/bench/bench_train_step" ]]; then
  say "5. training step on CUDA vs PyTorch eager"
  W=relu:768:24576:4096,jumprelu:768:24576:4096,topk:768:24576:4096,batchtopk:768:24576:4096
  export SAES_BENCH_PYTHON=python3
  for dt in bf16 fp32; do
    timeout 120 "$B/bench/bench_train_step" 8 5 "$W" all cuda $dt > "$OUT/bench-cuda-$dt.md" 2>&1
    say "bench $dt rc $?"; cat "$OUT/bench-cuda-$dt.md" >> "$LOG"
  done
fi
if [[ -x "$B/tests/saes_tests" ]]; then
  say "4c. unit suite by tag (CPU, LibTorch $(python3 -c 'import torch;print(torch.__version__)'))"
  # One process per tag: a crash stops its own tag only.
  for tag in $("$B/tests/saes_tests" --list-tags | grep -oE '\[[A-Za-z0-9_-]+\]' | sort -u |
               grep -v -e '\[slow\]' -e '\[cuda\]' -e '\[nccl\]' -e '\[mpi\]'); do
    timeout 60 "$B/tests/saes_tests" "$tag~[slow]~[cuda]" --order lex > /tmp/tag.log 2>&1
    rc=$?
    echo "tag $tag rc $rc: $(grep -E '^(All tests|test cases)' /tmp/tag.log | tr '\n' ' ')" >> "$LOG"
    [[ $rc -ne 0 ]] && grep -B2 -A8 -E 'FAILED|failed' /tmp/tag.log | head -n 60 >> "$LOG"
    if [[ $rc -eq 139 && ${crashes:-0} -lt 3 ]] && command -v cuda-gdb > /dev/null; then
      crashes=$(( ${crashes:-0} + 1 ))
      timeout 60 cuda-gdb -batch -ex run -ex bt --args "$B/tests/saes_tests" "$tag~[slow]~[cuda]" \
        --order lex 2>&1 | grep -E '^#|SIGSEGV|^-----|^[A-Za-z].*\(\)$' | head -n 30 >> "$LOG"
    fi
  done
  say "unit suite done"
fi
wait
say "done"

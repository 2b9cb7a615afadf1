#!/usr/bin/env bash
# Installs every Debian 12 package saes needs to build, test and benchmark (idempotent: apt skips
# what is installed). Needs root (or sudo). Cost: ~1 min on a fresh machine, ~2 s when all present.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache git pkg-config curl ca-certificates   # curl: quickstart downloads
  libtorch-dev libopenblas0-openmp          # LibTorch 1.13 (CPU) + OpenBLAS (else reference BLAS, 50x slower)
  libyaml-cpp-dev libcli11-dev libfmt-dev nlohmann-json3-dev libzstd-dev catch2
  libopenmpi-dev openmpi-bin                 # mpirun / MPI communicator
  libpcre2-dev libutf8proc-dev      # tokenizers (pre-tokenizer regex, NFC)
  libsqlite3-dev                    # saes-analyze's embedded results database
  libcpp-httplib-dev                # saes-analyze serve: the web viewer's HTTP server
  libprotobuf-dev protobuf-compiler  # saes-train logging.tensorboard: Event/Summary messages (tfevents.proto)
  chromium                          # headless browser test of the viewer (tests/cli/cases/viewer.sh)
  python3-torch python3-numpy                # benchmarks vs PyTorch eager, fixture scripts (/usr/bin/python3)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Two builds of acg2vec side by side, in one run, alternating so that machine load affects both
# alike: `bench model` (one ONNX file and one pack, no peers), `bench search` (flat and HNSW on
# 50k vectors), and the served classify path (`bench serve`, model-only and 1 client). Used for
# "behaviour and speed unchanged" checks of restructuring changes (BENCHMARKS.md).
#
#   bench/binary_before_after.sh OLD_BIN NEW_BIN ONNX_FILE PACK_DIR [ROUNDS]
#
# Runs in the default environment: OPENBLAS_*, OMP_*, GOMP_* and MALLOC_* are removed first.
set -euo pipefail
old=$1 new=$2 onnx=$3 pack=$4 rounds=${5:-2}
for v in $(env | grep -oE '^(OPENBLAS|OMP|GOMP|MALLOC)_[A-Z_0-9]*'); do unset "$v"; done
echo "old: $old"
echo "new: $new"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), cores: $(nproc)"
for round in $(seq 1 "$rounds"); do
  for side in old new; do
    bin=${!side}
    echo "== round $round, $side, load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$bin" --log-level warn bench model --onnx "$onnx" --batch 1,8 --seconds 3 --peers none --skip-peak | grep -E '^acg2vec|^BLAS'
    "$bin" --log-level warn bench model --pack "$pack" --batch 1,8 --seconds 3 --peers none --skip-peak | grep -E '^acg2vec'
    "$bin" --log-level warn bench search --n 50000 --dim 512 --kinds flat,hnsw --queries 500 --brute-seconds 1 |
      grep -E '^(flat|hnsw)' || true
    "$bin" --log-level warn bench serve --pack "$pack" --clients 1 --seconds 3 --skip-ingest |
      grep -E 'model-only|/v1/classify' || true
  done
done

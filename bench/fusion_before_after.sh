#!/bin/bash
# Before/after timing of two acg2vec binaries in one session (docs/fusion-benchmarks.md).
# Usage: bench/fusion_before_after.sh  (expects ./acg2vec.before, build/release/acg2vec,
# /tmp/fuse/lh256.png and lh512.png; override MODELS_DIR, RESNET, CONVNEXT, CUGAN_ONNX)
cd "$(dirname "$0")/.."
M=${MODELS_DIR:-var/models}
for bin in ./acg2vec.before ./build/release/acg2vec; do
  for s in 256 512; do
    for r in 1 2 3; do
      echo "== $bin upscale ${s} tile0 run $r load $(cut -d' ' -f1 /proc/loadavg)"
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $bin --log-level warn --models-dir $M upscale /tmp/fuse/lh$s.png -o /tmp/fuse/out_$(basename $bin)_$s.png --tile 0 --model realcugan-pro-conservative --overwrite 2>&1 | tail -2
    done
  done
done
for bin in ./acg2vec.before ./build/release/acg2vec; do
  echo "== $bin realcugan fixed256 onnx load $(cut -d' ' -f1 /proc/loadavg)"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $bin --log-level warn bench model --onnx ${CUGAN_ONNX:-/tmp/realcugan_fixed256.onnx} --batch 1 --seconds 5 --warmup 1 --peers none --skip-peak 2>&1 | tail -2
  echo "== $bin resnet50 load $(cut -d' ' -f1 /proc/loadavg)"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $bin --log-level warn bench model --onnx ${RESNET:-build/release/bench-smoke/onnx/resnet50.onnx} --batch 1,8 --seconds 5 --peers none --skip-peak 2>&1 | tail -3
  echo "== $bin convnext_t load $(cut -d' ' -f1 /proc/loadavg)"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $bin --log-level warn bench model --onnx ${CONVNEXT:-build/release/bench-full/convnext_t.onnx} --batch 1,8 --seconds 5 --peers none --skip-peak 2>&1 | tail -3
done
echo "end load $(cut -d' ' -f1 /proc/loadavg) $(date -u +%H:%M)"

#!/usr/bin/env bash
# Peak resident memory of `acg2vec upscale` (default tile size) for square inputs of the given
# sides, one process per input, measured by GNU time's %M (maximum RSS, KiB). Inputs are a
# drawing resized with PIL (bicubic) to SIDE x SIDE and saved as PNG; outputs are PNG.
#   bench/upscale_memory.sh [SIDE...]        default: 1024 2048 (1 and 4 MP); 4096 is 16 MP
# Env: ACG2VEC (binary, default build/release/acg2vec), MODELS_DIR (default var/models),
#      IMAGE (source drawing), WORK (scratch folder, default /tmp/acg2vec-upscale-memory).
set -euo pipefail
bin=${ACG2VEC:-build/release/acg2vec}
models=${MODELS_DIR:-var/models}
image=${IMAGE:-tests/data/images/real/thequestion_bg_lecturehall.jpg}
work=${WORK:-/tmp/acg2vec-upscale-memory}
sides=("$@")
[ ${#sides[@]} -gt 0 ] || sides=(1024 2048)
mkdir -p "$work"
echo "binary $bin; models $models; source $image; $(nproc) cores"
printf '| Input | Megapixels | Peak RSS (MB) | Wall (s) | Load before (1/5/15 min) |\n|---|---|---|---|---|\n'
for s in "${sides[@]}"; do
  in="$work/in_$s.png"
  /usr/bin/python3 -c 'import sys; from PIL import Image
Image.open(sys.argv[1]).convert("RGB").resize((int(sys.argv[2]),) * 2, Image.BICUBIC).save(sys.argv[3])' "$image" "$s" "$in"
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  rm -f "$work/out_$s.png"
  /usr/bin/time -f '%M %e' -o "$work/time_$s.txt" "$bin" --models-dir "$models" upscale "$in" -o "$work/out_$s.png" >/dev/null
  read -r kib secs <"$work/time_$s.txt"
  printf '| %sx%s | %.1f | %d | %s | %s |\n' "$s" "$s" "$(echo "$s * $s / 1000000" | bc -l)" $((kib / 1024)) "$secs" "$load"
done

#!/usr/bin/env bash
# Side-by-side HTTP figures of two builds of acg2vec, in one run: each binary serves an empty
# collection with no models (GET /health, GET /v1/stats) and, when a classifier pack is given,
# POST /v1/classify; the same client (the NEW binary's `bench http --url`) loads both, alternating,
# so machine load affects both alike.
#
#   bench/http_before_after.sh OLD_BIN NEW_BIN [PACK_DIR] [SECONDS]
set -euo pipefail
old=$1 new=$2 pack=${3:-} seconds=${4:-5}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start() {  # name binary models_dir -> prints port
  local name=$1 bin=$2 models=$3
  mkdir -p "$work/$name/data"
  "$bin" --log-level warn --data-dir "$work/$name/data" --models-dir "$models" serve --host 127.0.0.1 --port 0 \
    --port-file "$work/$name/port" >"$work/$name/log" 2>&1 &
  for _ in $(seq 1 600); do
    [ -s "$work/$name/port" ] && break
    sleep 0.1
  done
  local port
  port=$(cat "$work/$name/port")
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.2
  done
  echo "$port"
}

mkdir -p "$work/no-models"
models="$work/no-models"
[ -n "$pack" ] && models=$(dirname "$pack")
old_port=$(start old "$old" "$models")
new_port=$(start new "$new" "$models")
echo "old: $old, port $old_port"
echo "new: $new, port $new_port"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)"
for round in ${ROUNDS:-1 2}; do
  for side in old new; do
    port=${side}_port
    for route in /health /v1/stats; do
      echo "== round $round, $side, GET $route"
      "$new" --log-level warn bench http --url "http://127.0.0.1:${!port}" --route "$route" \
        --concurrency 1,8,64 --seconds "$seconds" | tail -n +2
    done
  done
done

#!/usr/bin/env bash
# Pulls the default model packs (a WD v3 tagger and a CLIP pair) from the Hugging Face Hub into
# MODELS_DIR when the Hub answers; otherwise says so in one line and succeeds. Sizes are said first.
#
#   scripts/pull-default-models.sh [MODELS_DIR]     (default var/models; HF_ENDPOINT, HF_TOKEN,
#                                                    HF_HOME and the proxy variables are honoured)
set -uo pipefail
cd "$(dirname "$0")/.."
MODELS_DIR=${1:-var/models}
BIN=${ACG2VEC_BIN:-build/release/acg2vec}
DEFAULTS=(wd-vit-tagger-v3 clip-vit-b-32)
ENDPOINT=${HF_ENDPOINT:-https://huggingface.co}

if [ -n "${HF_HUB_OFFLINE:-}" ] && [ "${HF_HUB_OFFLINE}" != 0 ]; then
  echo "setup: HF_HUB_OFFLINE is set; not downloading models (acg2vec models pull NAME installs one from the Hub cache)"
  exit 0
fi
code=$(curl -sS -m 15 -o /dev/null -w '%{http_code}' "$ENDPOINT/api/models/SmilingWolf/wd-vit-tagger-v3/revision/main" 2>/dev/null)
if [ "$code" != 200 ]; then
  echo "setup: $ENDPOINT is not reachable (offline?); skipping model downloads — later: $BIN models pull ${DEFAULTS[*]}"
  exit 0
fi
echo "setup: downloading the default model packs from $ENDPOINT (skip with --no-models):"
"$BIN" --models-dir "$MODELS_DIR" models list --available | awk -v want=" ${DEFAULTS[*]} " \
  'index(want, " " $1 " ") { printf "  %-22s %s %s  (%s)\n", $1, $2, $3, $4 }'
if ! "$BIN" --models-dir "$MODELS_DIR" models pull "${DEFAULTS[@]}"; then
  echo "setup: pulling the default models failed (see above); acg2vec works without them — retry with: $BIN models pull ${DEFAULTS[*]}"
fi
exit 0

#!/usr/bin/env bash
# Installs the model packs that can be obtained offline into DEST (default var/models):
# the Real-CUGAN pro 2x upscalers committed under models/realcugan-pro-* (ncnn weights, MIT), and
# the real nsfwjs classifiers (MobileNetV2 224 and InceptionV3 299) from the npm package in
# tools/node_modules. Idempotent: unchanged files are left alone.
#
#   scripts/install-packs.sh [DEST]
set -euo pipefail
# DEST is relative to the caller's directory; the default is the repository's var/models.
if [ $# -ge 1 ]; then dest=$(realpath -m "$1"); fi
cd "$(dirname "$0")/.."
dest=${dest:-$PWD/var/models}

# Packs whose weights are in the repository: copied as they are (cp -u keeps newer copies).
mkdir -p "$dest"
for pack in models/realcugan-pro-*/; do
  name=$(basename "$pack")
  mkdir -p "$dest/$name"
  cp -u "$pack"* "$dest/$name/"
done

if ! command -v node >/dev/null; then
  echo "install-packs: node is not installed (run scripts/setup.sh)" >&2
  exit 1
fi
if [ ! -d tools/node_modules/nsfwjs ]; then
  echo "install-packs: tools/node_modules/nsfwjs is missing (run: cd tools && npm install)" >&2
  exit 1
fi
mkdir -p "$dest"
node tools/extract_nsfwjs.js "$dest"

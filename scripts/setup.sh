#!/usr/bin/env bash
# Installs every build and test dependency from Debian's packages. Idempotent: installs only what is missing.
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ ccache pkg-config
  libeigen3-dev libhdf5-dev libspdlog-dev libcli11-dev nlohmann-json3-dev libgtest-dev libssl-dev zlib1g-dev
  libopenblas0-pthread libopenblas-pthread-dev python3-torch python3-h5py python3-numpy
  libtorch-dev libpcre2-dev libutf8proc-dev
  gnuplot-nox
)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# Node.js and npm run tests/js/read_gguf.mjs (the npm package @huggingface/gguf as an independent GGUF reader).
# Checked by command rather than by package: a NodeSource nodejs package bundles npm and conflicts with Debian's.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all dependencies present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

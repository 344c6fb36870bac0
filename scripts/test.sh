#!/usr/bin/env bash
# The test command: installs dependencies, builds, runs every GoogleTest suite through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"

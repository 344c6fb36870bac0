#!/usr/bin/env bash
# The test command: installs dependencies, builds, runs every GoogleTest suite through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
# The committed RotationZoo entries of the bundled models must regenerate bit for bit and stay within budget.
scripts/regenerate-zoo.sh --check --no-build

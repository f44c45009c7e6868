#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the benchmarks (GFLOP/s and share of the FMA
# peak measured in the same process) and the side-by-side comparison with PyTorch/torchvision.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/.ci/setup-deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$root/build" -j "$(nproc 2> /dev/null || echo 2)"
WINATTN_BUILD_DIR="$root/build" exec "$root/bench/run_demo.sh" "$@"

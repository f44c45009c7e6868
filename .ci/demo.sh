#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the benchmarks (GFLOP/s and share of the FMA
# peak measured in the same process), the side-by-side comparison with PyTorch/torchvision and the
# whole-model comparison with torchvision and ONNX Runtime (chart in build/winattn_models.png).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/.ci/setup-deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$root/build" -j "$(nproc 2> /dev/null || echo 2)"
# The ONNX Runtime peer of bench/compare_models.py: onnxruntime-node from npm (its CPU library ships in the
# package) into build-peers/, which git ignores. Optional: without node/npm or the registry the comparison
# says so and skips that peer.
peers="${WINATTN_ORT_NODE_DIR:-$root/build-peers}"
if [ ! -f "$peers/node_modules/onnxruntime-node/package.json" ] && command -v npm > /dev/null 2>&1; then
  mkdir -p "$peers"
  [ -f "$peers/package.json" ] || echo '{"name": "winattn-peers", "private": true}' > "$peers/package.json"
  (cd "$peers" && timeout 300 npm install --ignore-scripts --no-audit --no-fund \
    "onnxruntime-node@${WINATTN_ORT_NODE_VERSION:-1.30.0}") ||
    echo "demo: npm install onnxruntime-node failed; the model comparison will skip ONNX Runtime"
fi
WINATTN_BUILD_DIR="$root/build" exec "$root/bench/run_demo.sh" "$@"

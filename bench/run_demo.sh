#!/usr/bin/env bash
# The performance demo: runs the benchmark programs of an existing build (builds nothing), then the PyTorch
# side-by-side, then the whole-model comparison with torchvision and ONNX Runtime (bench/compare_models.py),
# which writes a chart. Takes about 7 minutes on 2 Zen 3 cores (the model comparison about 3.5 of them).
#
#   bench/run_demo.sh [extra Google Benchmark flags, e.g. --benchmark_filter=swin_t]
#
# Environment:
#   WINATTN_BUILD_DIR       build tree (default: build, relative to the repository root)
#   WINATTN_BENCH_THREADS   thread counts (default 1,2)
#   WINATTN_BENCH_MIN_TIME  Google Benchmark --benchmark_min_time in seconds (default 0.05)
#   WINATTN_MAX_ISA         cap the library's dispatch (avx512_bf16, avx512, avx2, scalar)
#   PYTHON                  interpreter with torch/torchvision (default /usr/bin/python3)
#   WINATTN_MODELS_THREADS  thread counts of the model comparison (default 1, pinned to one CPU; 1,2 doubles
#                           its time)
#   WINATTN_MODELS_CHART    its chart (default: <build>/winattn_models.png; results beside it as .json)
#   WINATTN_ORT_NODE_DIR    where node_modules/onnxruntime-node is (default: build-peers/ of the repository;
#                           without it the ONNX Runtime peer is skipped)
#   OMP_PROC_BIND/OMP_PLACES default close/cores (threads bound, as the measurements assume)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build=${WINATTN_BUILD_DIR:-build}
[[ $build = /* ]] || build=$root/$build
threads=${WINATTN_BENCH_THREADS:-1,2}
min_time=${WINATTN_BENCH_MIN_TIME:-0.05}
python=${PYTHON:-/usr/bin/python3}
export OMP_PROC_BIND=${OMP_PROC_BIND:-close}
export OMP_PLACES=${OMP_PLACES:-cores}
export WINATTN_LIBRARY=${WINATTN_LIBRARY:-$build/libwinattn.so}

programs=(bench_window_attention bench_layer bench_position_bias bench_model)
for program in "${programs[@]}"; do
  if [[ ! -x $build/bench/$program ]]; then
    echo "run_demo.sh: $build/bench/$program not found; build first:" >&2
    echo "  cmake -S $root -B $build -DCMAKE_BUILD_TYPE=Release && cmake --build $build -j2" >&2
    exit 1
  fi
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== winattn benchmarks (threads $threads, min_time ${min_time}s, OMP_PROC_BIND=$OMP_PROC_BIND," \
  "OMP_PLACES=$OMP_PLACES)"
for program in "${programs[@]}"; do
  echo
  echo "== $program"
  "$build/bench/$program" --threads="$threads" --benchmark_min_time="$min_time" "$@" 2>&1 | tee -a "$log"
done

# The 1-thread FMA peak the first program measured, for the shares of peak in the PyTorch table.
peak=$(sed -n 's/^FMA peak, 1 thread at once: \([0-9.]*\) GFLOP\/s.*/\1/p' "$log" | head -n 1)

echo
echo "== PyTorch side by side (bench/compare_pytorch.py, threads $threads)"
"$python" "$here/compare_pytorch.py" --optional --threads "$threads" ${peak:+--peak "$peak"}

# Whole models, one run: winattn, torchvision eager and ONNX Runtime (onnxruntime-node) on the same weights and
# inputs; the FMA peak is probed by the script itself, on the CPU it is pinned to, before and after.
models_threads=${WINATTN_MODELS_THREADS:-1}
chart=${WINATTN_MODELS_CHART:-$build/winattn_models.png}
pin=()
[[ $models_threads == 1 ]] && pin=(--pin auto)
echo
echo "== Whole models: winattn vs torchvision and ONNX Runtime (bench/compare_models.py, threads $models_threads)"
"$python" "$here/compare_models.py" --optional --threads "$models_threads" "${pin[@]}" --chart "$chart" \
  --json "${chart%.png}.json"

#!/usr/bin/env bash
# The performance demo: runs the benchmark programs of an existing build (builds nothing), then the PyTorch
# side-by-side. Takes well under 3 minutes.
#
#   bench/run_demo.sh [extra Google Benchmark flags, e.g. --benchmark_filter=swin_t]
#
# Environment:
#   WINATTN_BUILD_DIR       build tree (default: build, relative to the repository root)
#   WINATTN_BENCH_THREADS   thread counts (default 1,2)
#   WINATTN_BENCH_MIN_TIME  Google Benchmark --benchmark_min_time in seconds (default 0.05)
#   WINATTN_MAX_ISA         cap the library's dispatch (avx512_bf16, avx512, avx2, scalar)
#   PYTHON                  interpreter with torch/torchvision (default /usr/bin/python3)
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

for program in bench_window_attention bench_layer bench_position_bias; do
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
for program in bench_window_attention bench_layer bench_position_bias; do
  echo
  echo "== $program"
  "$build/bench/$program" --threads="$threads" --benchmark_min_time="$min_time" "$@" 2>&1 | tee -a "$log"
done

# The 1-thread FMA peak the first program measured, for the shares of peak in the PyTorch table.
peak=$(sed -n 's/^FMA peak, 1 thread at once: \([0-9.]*\) GFLOP\/s.*/\1/p' "$log" | head -n 1)

echo
echo "== PyTorch side by side (bench/compare_pytorch.py, threads $threads)"
"$python" "$here/compare_pytorch.py" --optional --threads "$threads" ${peak:+--peak "$peak"}

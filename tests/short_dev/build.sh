#!/bin/sh
# Builds the short-window kernels' dev test and benchmark by hand (not part of CMake or CI):
#   $OUT/short_dev      native: the AVX-512 kernel compiled for AVX-512 (tested and timed only where the
#                       CPU has it), the per-item kernels linked for the benchmark
#   $OUT/short_dev_emu  the AVX-512 kernel through SIMDe's portable AVX-512 (apt-get install
#                       libsimde-dev), for testing it on a CPU without AVX-512; not for timing
# Usage: tests/short_dev/build.sh [out-dir]   (default build/short_dev); then short_dev test | bench
set -e
cd "$(dirname "$0")/../.."
OUT=${1:-build/short_dev}
mkdir -p "$OUT"
CXX=${CXX:-g++}
CXXFLAGS="-std=c++17 -O2 -g -Wall -Wextra -Wshadow"
SRC="-Isrc"
AVX2="-mavx2 -mfma -mf16c"
AVX512="-mavx512f -mavx512bw -mavx512dq -mavx512vl $AVX2 -Wno-uninitialized -Wno-maybe-uninitialized"
A=src/attention
$CXX $CXXFLAGS $SRC $AVX2 -c $A/f32_attention_short_avx2.cpp -o "$OUT/short_avx2.o" &
$CXX $CXXFLAGS $SRC $AVX512 -c $A/f32_attention_short_avx512.cpp -o "$OUT/short_avx512.o"
wait
# The per-item kernels to compare with, as committed at $BASELINE (default HEAD): others may be editing them.
BASELINE=${BASELINE:-HEAD}
B="$OUT/baseline"
rm -rf "$B" && mkdir -p "$B/src/attention" "$B/src/cpu"
for f in attention.h f32_attention_common.h f32_attention_impl.h f32_attention_tr_impl.h f32_attention_avx2.cpp \
         f32_attention_avx512.cpp f32_attention_scalar.cpp; do
  git show "$BASELINE:src/attention/$f" > "$B/src/attention/$f"
done
git show "$BASELINE:src/cpu/dispatch.h" > "$B/src/cpu/dispatch.h"
$CXX $CXXFLAGS -I"$B/src" $AVX2 -c "$B/src/attention/f32_attention_avx2.cpp" -o "$OUT/avx2.o" &
$CXX $CXXFLAGS -I"$B/src" $AVX512 -c "$B/src/attention/f32_attention_avx512.cpp" -o "$OUT/avx512.o"
wait
$CXX $CXXFLAGS -I"$B/src" -c "$B/src/attention/f32_attention_scalar.cpp" -o "$OUT/scalar.o" &
$CXX $CXXFLAGS $SRC -c tests/short_dev/short_dev.cpp -o "$OUT/short_dev.o"
wait
$CXX $CXXFLAGS $SRC -c tests/short_dev/short_dev_bench.cpp -o "$OUT/short_dev_bench.o"
$CXX -o "$OUT/short_dev" "$OUT/short_dev.o" "$OUT/short_dev_bench.o" "$OUT/short_avx2.o" "$OUT/short_avx512.o" \
  "$OUT/avx2.o" "$OUT/avx512.o" "$OUT/scalar.o"
if [ -f /usr/include/simde/x86/avx512.h ]; then
  $CXX $CXXFLAGS $SRC $AVX2 -Wno-psabi -include tests/kernels/avx512_emulation.h -c $A/f32_attention_short_avx512.cpp \
    -o "$OUT/short_avx512_emu.o"
  $CXX $CXXFLAGS $SRC -DSHORT_DEV_EMULATED_AVX512 -c tests/short_dev/short_dev.cpp -o "$OUT/short_dev_emu.o"
  $CXX $CXXFLAGS $SRC -DSHORT_DEV_EMULATED_AVX512 -c tests/short_dev/short_dev_bench.cpp -o "$OUT/short_dev_bench_emu.o"
  $CXX -o "$OUT/short_dev_emu" "$OUT/short_dev_emu.o" "$OUT/short_dev_bench_emu.o" "$OUT/short_avx2.o" \
    "$OUT/short_avx512_emu.o" "$OUT/avx2.o" "$OUT/avx512.o" "$OUT/scalar.o"
else
  echo "no SIMDe (libsimde-dev): short_dev_emu not built" >&2
fi
echo "built in $OUT (baseline per-item kernels: $BASELINE)"

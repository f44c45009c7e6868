#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds (warnings are errors), then runs the C/C++ tests
# (doctest, C99 API test, examples, concurrency stress), the Python parity tests against torchvision, the
# install test, the Rust and Go bindings' tests, and the sanitizer/fuzz/TSan runs (.ci/sanitize.sh).
# Usage: .ci/test.sh            (WINATTN_SKIP_SANITIZE=1 skips the sanitizer stage)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$PATH:${HOME:-/root}/.cargo/bin"

"$root/.ci/setup-deps.sh"

jobs="$(nproc 2> /dev/null || echo 2)"
build="$root/build"
start=$(date +%s)
stage() { printf '\n=== %s (%ds) ===\n' "$1" "$(($(date +%s) - start))"; }

stage "configure and build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DWINATTN_WERROR=ON
cmake --build "$build" -j "$jobs"

stage "C/C++ tests (ctest)"
ctest --test-dir "$build" --output-on-failure -j 1

export WINATTN_BUILD_DIR="$build"
stage "Python: parity with torchvision, kernels vs float64"
"$root/tests/python/run.sh"

stage "install: CMake package and pkg-config consumers"
"$root/tests/install/run.sh"

stage "Rust binding"
"$root/bindings/rust/run-tests.sh"

stage "Go binding"
"$root/bindings/go/run-tests.sh"

if [ "${WINATTN_SKIP_SANITIZE:-0}" != 1 ]; then
  stage "sanitizers, fuzzing, thread sanitizer"
  "$root/.ci/sanitize.sh"
fi

stage "all tests passed"

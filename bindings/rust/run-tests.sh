#!/usr/bin/env bash
# Builds and tests the Rust binding against a winattn build tree.
#   WINATTN_BUILD_DIR=/path/to/build bindings/rust/run-tests.sh      (default: <repo>/build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${WINATTN_BUILD_DIR:-$here/../../build}" && pwd)
if [ ! -f "$build/libwinattn.so" ]; then
  echo "FAIL: $build/libwinattn.so not found; build the library first (or set WINATTN_BUILD_DIR)" >&2
  exit 1
fi
export WINATTN_LIB_DIR=$build
export PKG_CONFIG_PATH=$build/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export CARGO_TARGET_DIR=$here/target
cd "$here"
cargo test --offline
cargo run --offline --release --example swin_layer
cargo run --offline --release --example swin_model
echo "PASS: Rust binding"

#!/usr/bin/env bash
# Vets and tests the Go binding against a winattn build tree.
#   WINATTN_BUILD_DIR=/path/to/build bindings/go/run-tests.sh      (default: <repo>/build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${WINATTN_BUILD_DIR:-$here/../../build}" && pwd)
if [ ! -f "$build/pkgconfig/winattn.pc" ]; then
  echo "FAIL: $build/pkgconfig/winattn.pc not found; configure and build the library first (or set WINATTN_BUILD_DIR)" >&2
  exit 1
fi
export PKG_CONFIG_PATH=$build/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export LD_LIBRARY_PATH=$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local
export GOCACHE=${GOCACHE:-/tmp/winattn-go-cache-$(id -u)}
cd "$here"
go vet ./...
go test -count=1 ./...
# The same tests with cgo's full pointer checking (Go pointers stored in C memory and the like).
GODEBUG=cgocheck=2 go test -count=1 ./...
echo "PASS: Go binding"

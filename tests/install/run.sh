#!/usr/bin/env bash
# Installs a configured and built winattn tree into a temporary prefix and checks that it is usable like a
# real library: the installed files, the SONAME, the exported symbols, and two downstream builds (CMake
# find_package and plain pkg-config) that are run.
#
#   WINATTN_BUILD_DIR=/path/to/build tests/install/run.sh     (default: <repo>/build)
#
# Prints PASS/FAIL lines; exits non-zero when anything failed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
build=${WINATTN_BUILD_DIR:-$here/../../build}
header_src=$here/../../include/winattn/winattn.h
failures=0

pass() { echo "PASS: $*"; }
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
finish() {
  if [ "$failures" -eq 0 ]; then
    echo "install test: all checks passed"
    exit 0
  fi
  echo "install test: $failures check(s) failed"
  exit 1
}

if [ ! -f "$build/CMakeCache.txt" ]; then
  fail "$build is not a configured CMake build tree (set WINATTN_BUILD_DIR)"
  finish
fi
build=$(cd "$build" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/winattn-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

# ---- cmake --install --------------------------------------------------------------------------------------
if cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
  pass "cmake --install $build --prefix <tmp>/prefix"
else
  fail "cmake --install failed:"
  cat "$tmp/install.log"
  finish
fi

# ---- Installed files --------------------------------------------------------------------------------------
header=$prefix/include/winattn/winattn.h
if [ -f "$header" ] && cmp -s "$header" "$header_src"; then
  pass "header installed: include/winattn/winattn.h (identical to the source header)"
else
  fail "include/winattn/winattn.h missing from the prefix or different from include/winattn/winattn.h"
fi

lib=$(find "$prefix" -name libwinattn.so \( -type f -o -type l \) | head -n 1)
if [ -z "$lib" ]; then
  fail "libwinattn.so not installed (looked under $prefix)"
  finish
fi
libdir=$(dirname "$lib")
pass "library installed: ${lib#"$prefix"/}"

soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
if [ -n "$soname" ] && [ -e "$libdir/$soname" ]; then
  pass "SONAME $soname, and $soname is installed next to it"
else
  fail "libwinattn.so has no SONAME, or the file it names is not installed (soname='$soname')"
fi

if readelf -d "$lib" | grep -E 'R(UN)?PATH' | grep -q "$build"; then
  fail "installed library still has an RPATH/RUNPATH into the build tree: $(readelf -d "$lib" | grep -E 'R(UN)?PATH')"
else
  pass "installed library has no RPATH/RUNPATH into the build tree"
fi

config=$(find "$prefix" -path '*/cmake/winattn/winattnConfig.cmake' | head -n 1)
config_version=$(find "$prefix" -path '*/cmake/winattn/winattnConfigVersion.cmake' | head -n 1)
targets=$(find "$prefix" -path '*/cmake/winattn/winattnTargets.cmake' | head -n 1)
if [ -n "$config" ] && [ -n "$config_version" ] && [ -n "$targets" ]; then
  pass "CMake package installed: ${config#"$prefix"/} (+ ConfigVersion, Targets)"
else
  fail "CMake package incomplete: config='$config' version='$config_version' targets='$targets'"
fi

pc=$(find "$prefix" -name winattn.pc | head -n 1)
if [ -n "$pc" ]; then
  pass "pkg-config file installed: ${pc#"$prefix"/}"
else
  fail "winattn.pc not installed"
fi

# ---- Exported symbols ---------------------------------------------------------------------------------------
nm -D --defined-only "$lib" | awk '{print $NF}' | sort -u >"$tmp/exported.txt"
foreign=$(grep -v '^winattn_' "$tmp/exported.txt" || true)
if [ -z "$foreign" ] && [ -s "$tmp/exported.txt" ]; then
  pass "only winattn_* symbols exported ($(wc -l <"$tmp/exported.txt") symbols)"
else
  fail "symbols other than winattn_* are exported: $(echo "$foreign" | head -n 20 | tr '\n' ' ')"
fi
# Every function the header declares is exported.
missing=""
for fn in $(grep -o 'winattn_[a-z0-9_]*(' "$header_src" | tr -d '(' | sort -u); do
  grep -qx "$fn" "$tmp/exported.txt" || missing="$missing $fn"
done
if [ -z "$missing" ]; then
  pass "every function declared in winattn.h is exported"
else
  fail "declared in winattn.h but not exported:$missing"
fi

header_version=$(awk '/#define WINATTN_VERSION_(MAJOR|MINOR|PATCH)/ {printf "%s%s", sep, $3; sep="."}' "$header_src")

# Runs a consumer binary and checks what it printed.
run_consumer() { # name binary
  local name=$1 bin=$2 out
  if out=$(LD_LIBRARY_PATH=$libdir "$bin" 2>&1); then
    if echo "$out" | grep -q "^winattn version $header_version " && echo "$out" | grep -q '^consumer OK$'; then
      pass "$name consumer runs: $(echo "$out" | head -n 2 | tr '\n' ';')"
    else
      fail "$name consumer printed unexpected output: $out"
    fi
  else
    fail "$name consumer exited non-zero: $out"
  fi
  if LD_LIBRARY_PATH=$libdir ldd "$bin" | grep 'libwinattn' | grep -q "$libdir"; then
    pass "$name consumer loads libwinattn from the prefix"
  else
    fail "$name consumer does not load libwinattn from $libdir: $(LD_LIBRARY_PATH=$libdir ldd "$bin" | grep winattn)"
  fi
}

# ---- Consumer 1: CMake find_package ------------------------------------------------------------------------
if cmake -S "$here/consumer" -B "$tmp/consumer-cmake" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/consumer-cmake.log" 2>&1 &&
  cmake --build "$tmp/consumer-cmake" >>"$tmp/consumer-cmake.log" 2>&1; then
  found_dir=$(sed -n 's/^winattn_DIR:PATH=//p' "$tmp/consumer-cmake/CMakeCache.txt")
  case "$found_dir" in
    "$prefix"/*) pass "find_package(winattn 0.1 REQUIRED) found the prefix's package ($found_dir)" ;;
    *) fail "find_package(winattn) found a package outside the prefix: $found_dir" ;;
  esac
  run_consumer "CMake" "$tmp/consumer-cmake/winattn_consumer"
else
  fail "CMake consumer did not configure/build:"
  cat "$tmp/consumer-cmake.log"
fi

# ---- Consumer 2: plain cc + pkg-config --------------------------------------------------------------------
if [ -n "$pc" ]; then
  export PKG_CONFIG_PATH
  PKG_CONFIG_PATH=$(dirname "$pc")
  pc_version=$(pkg-config --modversion winattn 2>&1)
  if [ "$pc_version" = "$header_version" ]; then
    pass "pkg-config --modversion winattn = $pc_version"
  else
    fail "pkg-config --modversion winattn gave '$pc_version', header says $header_version"
  fi
  pc_libdir=$(pkg-config --variable=libdir winattn)
  pc_includedir=$(pkg-config --variable=includedir winattn)
  if [ -d "$pc_libdir" ] && [ "$(cd "$pc_libdir" && pwd -P)" = "$(cd "$libdir" && pwd -P)" ] &&
    [ -d "$pc_includedir" ] && [ "$(cd "$pc_includedir" && pwd -P)" = "$(cd "$prefix/include" && pwd -P)" ]; then
    pass "winattn.pc points into the install prefix"
  else
    fail "winattn.pc does not follow 'cmake --install --prefix': libdir=$pc_libdir includedir=$pc_includedir" \
      "(expected $libdir and $prefix/include; the .pc file is configured with the configure-time prefix)"
  fi
  flags=$(pkg-config --cflags --libs winattn)
  # shellcheck disable=SC2086  # the flags are meant to be split
  if cc -std=c99 -Wall -o "$tmp/consumer-pc" "$here/consumer/main.c" $flags -lm >"$tmp/consumer-pc.log" 2>&1; then
    pass "cc main.c \$(pkg-config --cflags --libs winattn) builds ($flags)"
    run_consumer "pkg-config" "$tmp/consumer-pc"
  else
    fail "cc with pkg-config flags ($flags) failed:"
    cat "$tmp/consumer-pc.log"
  fi
fi

finish

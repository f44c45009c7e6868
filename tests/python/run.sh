#!/bin/sh
# Runs the Python test suite of winattn (parity with torchvision, Video Swin 3D, kernels, errors).
#   tests/python/run.sh                    # library from ${WINATTN_BUILD_DIR:-<repo>/build}/libwinattn.so
#   WINATTN_LIBRARY=/path/libwinattn.so tests/python/run.sh
#   WINATTN_PYTHON=/other/python3 tests/python/run.sh   # default /usr/bin/python3 (Debian's, with torch)
# Extra arguments are passed to unittest (e.g. -k v2).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
py=${WINATTN_PYTHON:-/usr/bin/python3}
WINATTN_LIBRARY=${WINATTN_LIBRARY:-${WINATTN_BUILD_DIR:-$repo/build}/libwinattn.so}
export WINATTN_LIBRARY

if ! "$py" -c 'import numpy, torch, torchvision' >/dev/null 2>&1; then
  echo "run.sh: $py cannot import numpy, torch and torchvision. Install them with:" >&2
  echo "  apt-get install -y python3-torchvision python3-torch python3-numpy" >&2
  exit 1
fi
if [ ! -f "$WINATTN_LIBRARY" ]; then
  echo "run.sh: $WINATTN_LIBRARY not found; build the library first, e.g." >&2
  echo "  cmake -S $repo -B $repo/build -DCMAKE_BUILD_TYPE=Release && cmake --build $repo/build -j2" >&2
  echo "or set WINATTN_LIBRARY / WINATTN_BUILD_DIR." >&2
  exit 1
fi
echo "run.sh: testing $WINATTN_LIBRARY with $py"
exec "$py" -m unittest discover -s "$here" -t "$here" -v "$@"

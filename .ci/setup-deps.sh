#!/usr/bin/env bash
# Installs the Debian 12 packages winattn needs for building, testing and benchmarking, if any is missing.
# As root it runs apt-get; otherwise it prints the exact command to run.
set -euo pipefail

packages=(
  build-essential cmake pkg-config          # toolchain
  libdnnl-dev libxsimd-dev                  # oneDNN (projections), xsimd (portable SIMD)
  nlohmann-json3-dev                        # the safetensors header parser
  libsimde-dev                              # AVX-512 emulation for the kernel tests on CPUs without it
  doctest-dev libbenchmark-dev              # tests, benchmarks
  python3 python3-numpy python3-torch python3-torchvision  # Python binding, torchvision parity, PyTorch comparison
  python3-matplotlib                        # the chart of bench/compare_models.py
  python3-pip python3-setuptools python3-wheel python3-venv  # offline pip install of bindings/python (test_packaging)
  golang-go                                 # Go binding
  clang libclang-rt-14-dev libomp-dev       # libFuzzer and sanitizers
  binutils                                  # readelf/nm for the install test
  libopenblas0-openmp                       # an optimised BLAS for the PyTorch peer (else netlib)
)
if ! command -v cargo > /dev/null 2>&1 && [ ! -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
  packages+=(cargo rustc)                   # Rust binding (no crates are downloaded)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all packages present"
  exit 0
fi
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-deps: missing packages; run as root:"
  echo "  apt-get update && $cmd"
  exit 1
fi
echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
$cmd

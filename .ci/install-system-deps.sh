#!/usr/bin/env bash
# System packages for the GPU-target tests, which need no GPU (see codegen/gpu.py, codegen/pocl.py):
#   lld-19, rocm-device-libs   link ROCm (AMDGPU) code objects; Debian 12's plain `lld` (14) is too old
#   pocl-opencl-icd, ocl-icd   run the OpenCL kernels of GPU schedules on this CPU (PoCL)
#   pyopencl (PyPI)            drives PoCL from the tests
#   postgresql                 a real server for the tuning-database tests (they start their own)
#   chromium                   headless browser for the tuning-service dashboard test (tests/service)
# nvcc is not a Debian package here: the CUDA toolkit comes with the machine (/usr/local/cuda-*);
# without it the CUDA tests skip. Idempotent: installs only what is missing.
set -euo pipefail

PYTHON=${PYTHON:-python3}
PACKAGES=(lld-19 rocm-device-libs pocl-opencl-icd ocl-icd-libopencl1 postgresql chromium)

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! "$PYTHON" -c "import pyopencl" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet pyopencl
fi

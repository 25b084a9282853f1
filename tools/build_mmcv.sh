#!/usr/bin/env bash
# Builds an mmcv 2.1.0 wheel with its compiled (CPU, and CUDA where nvcc and a GPU torch are present)
# ops against the torch of the active Python, into OUT_DIR. Two changes to the PyPI source:
#   -std=c++17 -> -std=c++20 (torch >= 2.14 headers require C++20);
#   no build isolation, with setuptools<81 (its setup.py imports pkg_resources and torch).
# Usage: build_mmcv.sh OUT_DIR        (15-30 minutes on 2 cores)
set -euo pipefail
out=${1:?usage: build_mmcv.sh OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip install -q -c "$here/requirements/constraints.txt" "setuptools<81" wheel ninja
python -m pip download -q --no-deps --no-binary :all: -d "$work" mmcv==2.1.0
tar xzf "$work"/mmcv-2.1.0.tar.gz -C "$work"
sed -i 's/-std=c++17/-std=c++20/g' "$work"/mmcv-2.1.0/setup.py
MAX_JOBS=${MAX_JOBS:-$(nproc)} python -m pip wheel --no-build-isolation --no-deps -w "$out" "$work"/mmcv-2.1.0

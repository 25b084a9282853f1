#!/usr/bin/env bash
# Build a folder of wheels that lets the benchmark's CUDA rows run on an OFFLINE GPU machine which
# already has PyTorch, torchvision, timm, numpy, scipy, matplotlib, opencv, rich, pyyaml and
# onnxruntime (a CUDA image) but none of the OpenMMLab packages. Run it here (PyPI reachable),
# carry the folder there, then run tools/analysis/offline_gpu/run_cuda_rows.sh on the GPU machine.
#
#   bash tools/analysis/offline_gpu/build_kit.sh [KIT_DIR=.gpu_kit] [PYTHON_VERSION=3.12]
#
# mmcv is built WITHOUT compiled ops (compiling them with CUDA takes longer than a short lease on
# a GPU machine); run_cuda_rows.sh installs mmcv_ext_standin.py as mmcv._ext so that mmdet and
# mmpretrain import (see that file for what it provides).
set -euo pipefail
cd "$(dirname "$0")/../../.."
KIT=${1:-.gpu_kit}
PYVER=${2:-3.12}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$KIT"
rm -f "$KIT"/*.whl
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do PLATFORMS+=(--platform "$p"); done
# pure-Python packages and the two compiled ones mmdet needs at import, for the target Python;
# the versions checked on Python 3.11 / numpy 2.4 and (compiled ones) Python 3.12 / numpy 2.5
# (pip here may warn about local index folders it cannot see; harmless)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    "${PLATFORMS[@]}" -d "$KIT" \
    mmengine==0.10.7 mmdet==3.3.0 mmpretrain==1.2.0 'setuptools<81' addict==2.4.0 yapf==0.43.0 \
    platformdirs==4.14.9 termcolor==3.3.0 terminaltables==3.1.10 mat4py==0.6.0 modelindex==0.0.2 \
    model-index==0.1.11 ordered-set==4.1.0 importlib-metadata==10.2.0 lazy-importer==0.1.0 \
    pycocotools==2.0.11 shapely==2.2.0
# mmcv 2.1.0 without compiled ops: a pure-Python wheel built from the sdist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps --no-binary=:all: -d "$tmp" mmcv==2.1.0
MMCV_WITH_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$KIT" "$tmp"/mmcv-2.1.0.tar.gz
ls -1 "$KIT"
du -sh "$KIT"

#!/usr/bin/env bash
# Installs mmeffnet and the OpenMMLab stack (torch, mmcv with compiled ops, mmengine, mmdet, mmseg,
# mmpretrain) into a virtual environment. Idempotent: a second run only checks and returns.
#
# Variables (all optional):
#   PYTHON        interpreter that creates the venv            (default: python3)
#   VENV          the virtual environment folder               (default: .venv)
#   WHEELHOUSE    folder of prebuilt mmcv wheels; a wheel built here is stored there
#                                                              (default: ~/.cache/mmeffnet/wheels)
#   USE_SYSTEM_TORCH=1  create the venv with --system-site-packages and keep the torch (and an mmcv
#                 with ops) that PYTHON already has instead of installing torch 2.14.1
#   EXTRAS        extra requirement files to install          (default: requirements/tests.txt requirements/lint.txt)
#   MMCV_BUILD_CMD  command that builds an mmcv wheel into the folder given as its one argument
#                 (default: bash tools/build_mmcv.sh, which compiles with MAX_JOBS = the number of cores)
# Every failure ends with one line '[install] ERROR: ...' that names the step and what to do.
set -Eeuo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
WHEELHOUSE=${WHEELHOUSE:-$HOME/.cache/mmeffnet/wheels}
USE_SYSTEM_TORCH=${USE_SYSTEM_TORCH:-0}
EXTRAS=${EXTRAS:-requirements/tests.txt requirements/lint.txt}
DEFAULT_BUILD_CMD="bash tools/build_mmcv.sh"
MMCV_BUILD_CMD=${MMCV_BUILD_CMD:-$DEFAULT_BUILD_CMD}
TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
MMCV_VERSION=2.1.0

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

# The step in progress and what to do when it fails: the ERR trap turns any failing command into
# one ERROR line naming them (before, a bare `make: *** Error 2` was all a user saw).
step="the preflight checks"
hint="see the message above"
on_error() {
  local rc=$?
  # In a command substitution or a subshell: exit quietly and let the main shell report, once.
  [ "$BASHPID" = "$$" ] || exit "$rc"
  printf '[install] ERROR: %s failed (exit %s, tools/install.sh line %s); %s\n' "$step" "$rc" "$1" "$hint" >&2
  exit "$rc"
}
trap 'on_error $LINENO' ERR

# ---- preflight: everything that can stop us is checked before anything is installed ----------
command -v "$PYTHON" >/dev/null 2>&1 || die "no Python interpreter '$PYTHON' on PATH; set PYTHON=/path/to/python3.11"
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$pyver" in
  3.8|3.9|3.10|3.11|3.12) ;;
  *) die "Python $pyver is not supported (OpenMMLab's mmcv 2.1 / mmdet 3.3 support 3.8-3.12); set PYTHON to one of python3.8 ... python3.12" ;;
esac
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
  || die "Python $pyver has no venv/ensurepip module (Debian: apt install python$pyver-venv)"

vpy="$VENV/bin/python"
mmcv_ok() {  # mmcv with its compiled ops, checked on a real tensor
  "$1" - <<'PY' 2>/dev/null
import torch, mmcv
from mmcv.ops import nms
assert mmcv.__version__.startswith('2.1'), mmcv.__version__
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
dets, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
PY
}
pytag=cp${pyver/./}
wheel_readable() {  # a whole zip archive: a truncated or half-copied wheel is not
  "$PYTHON" -c 'import sys, zipfile; sys.exit(zipfile.ZipFile(sys.argv[1]).testzip() is not None)' "$1" 2>/dev/null
}
# Prints the wheelhouse's usable mmcv wheel for this Python (or nothing), saying why it passes over
# any other mmcv wheel there.
wheel_in_house() {
  local whl found=""
  for whl in "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl; do
    [ -e "$whl" ] || continue
    case "$(basename "$whl")" in
      mmcv-"$MMCV_VERSION"-"$pytag"-"$pytag"-*) ;;
      *) say "ignoring $whl: it is not built for this Python ($pytag)" >&2; continue ;;
    esac
    if ! wheel_readable "$whl"; then
      printf '[install] ERROR: %s is corrupt (not a readable wheel); it is ignored and mmcv is built from source instead (the new wheel replaces it)\n' "$whl" >&2
      continue
    fi
    [ -n "$found" ] || found=$whl
  done
  printf '%s' "$found"
}
house_wheel=$(wheel_in_house)

need_build=1
if [ -x "$vpy" ] && mmcv_ok "$vpy"; then need_build=0
elif [ "$USE_SYSTEM_TORCH" = 1 ] && mmcv_ok "$PYTHON"; then need_build=0
elif [ -n "$house_wheel" ]; then need_build=0
fi
if [ "$need_build" = 1 ] && [ "$MMCV_BUILD_CMD" = "$DEFAULT_BUILD_CMD" ]; then
  for tool in "${CC:-gcc}" "${CXX:-g++}"; do
    command -v "$tool" >/dev/null 2>&1 \
      || die "mmcv $MMCV_VERSION must be compiled (no mmcv wheel for $pytag in WHEELHOUSE=$WHEELHOUSE) and the compiler '$tool' is missing (Debian: apt install build-essential python$pyver-dev; or set CC/CXX), or point WHEELHOUSE at a folder holding a built mmcv wheel"
  done
  "$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || die "mmcv $MMCV_VERSION must be compiled and the Python $pyver headers (Python.h) are missing (Debian: apt install python$pyver-dev)"
fi
if [ "$USE_SYSTEM_TORCH" = 1 ]; then
  "$PYTHON" -c 'import torch' 2>/dev/null || die "USE_SYSTEM_TORCH=1 but '$PYTHON' cannot import torch"
fi

# ---- the environment ---------------------------------------------------------------------------
step="creating the virtual environment $VENV"
hint="check that '$PYTHON -m venv' works and that the folder is writable, then run make install again"
if [ ! -x "$vpy" ]; then
  say "creating $VENV with $PYTHON ($pyver)"
  if [ "$USE_SYSTEM_TORCH" = 1 ]; then "$PYTHON" -m venv --system-site-packages "$VENV"
  else "$PYTHON" -m venv "$VENV"; fi
fi
# This machine's pip config may list local index folders that do not exist; pip warns per package.
quiet_pip() { "$vpy" -m pip install --disable-pip-version-check -q -c requirements/constraints.txt "$@" \
                2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
pip=(quiet_pip)
pip_hint="pip's message is above: check the network (or PIP_INDEX_URL) and the free disk space, then run make install again"
step="installing setuptools<81 and wheel"
hint=$pip_hint
"${pip[@]}" "setuptools<81" wheel

step="installing $TORCH_SPEC"
if [ "$USE_SYSTEM_TORCH" = 1 ]; then
  say "keeping the existing torch $("$vpy" -c 'import torch; print(torch.__version__)')"
elif ! "$vpy" -c 'import torch, torchvision, sys; sys.exit(not (torch.__version__.startswith("2.14.1") and torchvision.__version__.startswith("0.29.1")))' 2>/dev/null; then
  say "installing $TORCH_SPEC (about 5.5 GB; a few minutes)"
  "${pip[@]}" $TORCH_SPEC
fi

# ---- mmcv with compiled ops: reuse, else the wheelhouse, else build (and keep the wheel) ----------
install_mmcv_wheel() { "${pip[@]}" --force-reinstall --no-deps "$1" && "${pip[@]}" "$1"; }
if mmcv_ok "$vpy"; then
  say "mmcv $MMCV_VERSION with ops: present"
else
  whl=$house_wheel
  if [ -n "$whl" ]; then
    step="installing mmcv from the wheelhouse ($whl)"
    hint="remove that file (or point WHEELHOUSE elsewhere) so that mmcv is built from source, then run make install again"
    say "installing mmcv from the wheelhouse: $whl"
    install_mmcv_wheel "$whl"
    mmcv_ok "$vpy" || { say "that wheel does not run with this torch; building from source instead"; whl=""; }
  fi
  if [ -z "$whl" ]; then
    jobs=${MAX_JOBS:-$(nproc)}
    say "building mmcv $MMCV_VERSION from source with $jobs parallel jobs (MAX_JOBS=N to change): PyPI"
    say "has no binary for this torch, so its C++ ops are compiled (measured on 2 cores: 12-30 min)."
    say "The wheel is kept in $WHEELHOUSE so that this happens once per machine."
    step="building mmcv $MMCV_VERSION from source ($MMCV_BUILD_CMD)"
    hint="the compiler's message is above; install gcc/g++ and the Python $pyver headers (Debian: apt install build-essential python$pyver-dev), or point WHEELHOUSE at a folder holding a built mmcv wheel"
    built=$(mktemp -d)
    MAX_JOBS=$jobs VIRTUAL_ENV="$here/$VENV" PATH="$here/$VENV/bin:$PATH" $MMCV_BUILD_CMD "$built"
    whl=$(ls "$built"/mmcv-"$MMCV_VERSION"-*.whl)
    if mkdir -p "$WHEELHOUSE" 2>/dev/null && cp "$whl" "$WHEELHOUSE"/ 2>/dev/null; then
      whl="$WHEELHOUSE/$(basename "$whl")"
      say "stored $whl: copy it into another machine's WHEELHOUSE to skip this build there"
    else
      say "WHEELHOUSE=$WHEELHOUSE is not writable, so the built wheel is not kept"
    fi
    step="installing the built mmcv wheel ($whl)"
    hint=$pip_hint
    install_mmcv_wheel "$whl"
    mmcv_ok "$vpy" || die "mmcv was built but mmcv.ops.nms does not run; see the output above"
    rm -rf "$built"
  fi
fi

# ---- the rest of the stack and mmeffnet itself -------------------------------------------------
step="installing mmengine, mmdet, mmsegmentation, mmpretrain and the test requirements"
hint=$pip_hint
reqs=(-r requirements/runtime.txt)
for f in $EXTRAS; do reqs+=(-r "$f"); done
"${pip[@]}" "${reqs[@]}"
step="installing mmeffnet itself (pip install -e .)"
"${pip[@]}" --no-deps --no-build-isolation -e .

step="the import check of the installed stack"
hint="an import failed (traceback above); run make clean, then make install"
"$vpy" - <<'PY'
import importlib
for name in ('mmeffnet', 'mmcv.ops', 'mmdet.models', 'mmseg.models', 'mmpretrain.models'):
    importlib.import_module(name)
PY
mmcv_ok "$vpy" || die "mmcv.ops.nms stopped working after installing the stack"
say "done: $("$vpy" -m mmeffnet.env --short)"

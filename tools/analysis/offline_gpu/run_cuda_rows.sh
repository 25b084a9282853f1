#!/usr/bin/env bash
# On the offline GPU machine: install the kit built by build_kit.sh into a scratch folder (the
# machine's own packages are left alone), put the mmcv._ext stand-in in place, print what runs,
# then the benchmark's CUDA rows (fp32 and AMP + channels_last) into OUT_DIR.
#
#   bash tools/analysis/offline_gpu/run_cuda_rows.sh KIT_DIR OUT_DIR [benchmark.py args...]
#
# Back on a machine with the repository: python tools/analysis/benchmark.py --publish OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../../.."
KIT=${1:?KIT_DIR (from build_kit.sh)}
OUT=${2:?OUT_DIR}
shift 2
SITE=${SITE:-/tmp/mmeffnet-site}
PY=${PYTHON:-python3}
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$KIT"/*.whl
cp tools/analysis/offline_gpu/mmcv_ext_standin.py "$SITE/mmcv/_ext.py"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if "$PY" - <<'PY'
import torch, mmcv, mmengine, mmdet, mmpretrain, timm, torchvision
import mmeffnet
from mmdet.models.backbones import EfficientNet  # noqa: F401  (the mmdet peer imports)
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'
print(f'torch {torch.__version__} ({gpu}), torchvision {torchvision.__version__}, timm {timm.__version__}, '
      f'mmcv {mmcv.__version__} (ops: stand-in), mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, '
      f'mmpretrain {mmpretrain.__version__}, mmeffnet {mmeffnet.__version__}')
PY
then :; else echo '[run_cuda_rows] the import check failed (above); running the rows anyway: a peer that' \
    'does not import is skipped with a note'; fi
mkdir -p "$OUT"
"$PY" tools/analysis/benchmark.py --rows cuda --device cuda --out-dir "$OUT" --no-docs "$@"

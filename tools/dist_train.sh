#!/usr/bin/env bash
# Distributed training with torchrun on one machine (or several: set NNODES, NODE_RANK, MASTER_ADDR).
#   tools/dist_train.sh CONFIG GPUS [train.py args...]
# On a machine without GPUs it runs GPUS CPU processes with the gloo backend.
set -euo pipefail
CONFIG=${1:?usage: dist_train.sh CONFIG NUM_PROCESSES [args...]}
GPUS=${2:?usage: dist_train.sh CONFIG NUM_PROCESSES [args...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --nproc_per_node="$GPUS" --master_port="${PORT:-29500}" \
  "$here/train.py" "$CONFIG" --launcher pytorch "$@"

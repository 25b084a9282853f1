#!/usr/bin/env bash
# Distributed evaluation with torchrun (CPU processes with gloo where there is no GPU).
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [test.py args...]
set -euo pipefail
CONFIG=${1:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [args...]}
CHECKPOINT=${2:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [args...]}
GPUS=${3:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [args...]}
shift 3
here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --nproc_per_node="$GPUS" --master_port="${PORT:-29500}" \
  "$here/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"

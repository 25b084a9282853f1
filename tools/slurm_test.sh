#!/usr/bin/env bash
# Evaluation on a SLURM cluster, one task per GPU (the OpenMMLab form).
#   [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
set -x

PARTITION=${1:?usage: slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [args...]}
JOB_NAME=${2:?usage: slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [args...]}
CONFIG=${3:?usage: slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [args...]}
CHECKPOINT=${4:?usage: slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [args...]}
PY_ARGS=${@:5}

source "$(dirname "$0")/slurm_srun.sh"
srun_tool "${PARTITION}" "${JOB_NAME}" test.py ${CONFIG} ${CHECKPOINT} --launcher="slurm" ${PY_ARGS}

#!/usr/bin/env bash
# Training on a SLURM cluster, one task per GPU (the OpenMMLab form).
#   [GPUS=16 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS="--quotatype=auto"] \
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# srun starts GPUS tasks; tools/train.py --launcher slurm reads SLURM_PROCID / SLURM_NTASKS /
# SLURM_NODELIST (MASTER_ADDR: the first node; MASTER_PORT: $MASTER_PORT or 29500).
# Resubmitting the same command with --resume continues from WORK_DIR's last complete checkpoint.
set -x

PARTITION=${1:?usage: slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args...]}
JOB_NAME=${2:?usage: slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args...]}
CONFIG=${3:?usage: slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args...]}
WORK_DIR=${4:?usage: slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args...]}
PY_ARGS=${@:5}

source "$(dirname "$0")/slurm_srun.sh"
srun_tool "${PARTITION}" "${JOB_NAME}" train.py ${CONFIG} --work-dir=${WORK_DIR} --launcher="slurm" ${PY_ARGS}

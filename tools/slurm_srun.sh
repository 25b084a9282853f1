# Sourced by slurm_train.sh and slurm_test.sh: the OpenMMLab srun layout, one task per GPU.
# Environment: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS, PYTHON (python).
# srun_tool PARTITION JOB_NAME TOOL [tool args...] runs tools/TOOL on every task.
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
TOOLS_DIR="$(dirname "${BASH_SOURCE[0]}")"

srun_tool() {
    local partition=$1 job_name=$2 tool=$3
    shift 3
    PYTHONPATH="${TOOLS_DIR}/..":${PYTHONPATH:-} \
    srun -p ${partition} \
        --job-name=${job_name} \
        --gres=gpu:${GPUS_PER_NODE} \
        --ntasks=${GPUS} \
        --ntasks-per-node=${GPUS_PER_NODE} \
        --cpus-per-task=${CPUS_PER_TASK} \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS} \
        ${PYTHON} -u "${TOOLS_DIR}/${tool}" "$@"
}

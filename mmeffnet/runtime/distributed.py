"""Distributed runs on machines without CUDA: N CPU processes talking over gloo.

mmengine's launchers assume GPUs: ``init_dist`` calls ``torch.cuda.set_device`` and the configs
ask for the ``nccl`` backend, and the Runner wraps the model in DDP with
``device_ids=[LOCAL_RANK]``, which DDP refuses for a CPU module. For a CPU run with a launcher,
:func:`prepare_cpu_distributed` initialises the process group with gloo itself (mmengine then
skips its own ``init_dist``) and asks for DDP without device ids. With CUDA nothing changes.
"""
import atexit
import gc
import os
import subprocess
from datetime import timedelta

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log

DEFAULT_PORT = '29500'


def _destroy_process_group() -> None:
    """End the gloo group while the interpreter is still whole.

    ``destroy_process_group`` alone does not stop gloo's worker threads while anything (the DDP
    model, the SyncBN layers) still refers to the group, and a worker that lets go of its last
    collective's tensors after interpreter finalization has begun aborts the process ("terminate
    called without an active exception", about 1 run in 12 here). Collecting the garbage frees the
    model and with it the group, whose destructor joins the workers.
    """
    if dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()


def _slurm_env() -> None:
    """RANK / WORLD_SIZE / MASTER_* from SLURM's variables, as mmengine's slurm launcher sets them."""
    os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
    os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
    os.environ.setdefault('MASTER_PORT', DEFAULT_PORT)
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ['SLURM_NODELIST']
        first = subprocess.getoutput(f'scontrol show hostname {nodes} | head -n1').strip()
        os.environ['MASTER_ADDR'] = first


def prepare_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Set up a distributed run of CPU processes (gloo) when ``launcher`` is not 'none' and CUDA
    is absent; returns whether it did."""
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher not in ('pytorch', 'slurm'):
        raise ValueError(f'--launcher {launcher} needs GPUs here; on CPU use pytorch (tools/dist_train.sh) or slurm')
    if launcher == 'slurm':
        _slurm_env()
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
    if missing:
        raise ValueError(f'--launcher {launcher}: the environment lacks {", ".join(missing)}; start the processes '
                         'with tools/dist_train.sh (torchrun) or tools/slurm_train.sh')
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    dist_cfg['backend'] = 'gloo'
    cfg.setdefault('env_cfg', {})['dist_cfg'] = dist_cfg
    if not dist.is_initialized():
        timeout = dist_cfg.get('timeout')
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **({
                'timeout': timedelta(seconds=timeout)
            } if timeout else {}))
        atexit.register(_destroy_process_group)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    if 'DistributedDataParallel' in str(wrapper.get('type', 'MMDistributedDataParallel')):
        wrapper['device_ids'] = None  # a CPU module: DDP refuses device ids
    cfg.model_wrapper_cfg = wrapper
    if dist.get_rank() == 0:
        print_log(f'no CUDA: {dist.get_world_size()} CPU processes communicate over gloo', logger='current')
    return True

"""SyncBN in a config, swapped for what this machine can run.

SyncBN needs CUDA and more than one process. In one process it is swapped for BN (the same
computation there); in a distributed run without CUDA (CPU processes over gloo) for
``mmeffnet.GlooSyncBN`` (``mmeffnet/models/gloo_sync_bn.py``), which synchronizes the statistics
over the processes as SyncBN does. Either way with a log line saying so.
"""
import torch
from mmengine.config import Config
from mmengine.logging import print_log

from .walk import walk_dicts

#: The norm types that need CUDA: the names the OpenMMLab stack registers for synchronized BN,
#: ``SyncBN`` (torch's ``nn.SyncBatchNorm``, mmcv/cnn/bricks/norm.py) and ``MMSyncBN`` (mmcv's
#: ``mmcv.ops.SyncBatchNorm``). No registry of mmengine, mmcv, mmdet, mmseg or mmpretrain knows
#: ``SyncBatchNorm`` or ``TorchSyncBN``, so a config cannot use them and they are not listed.
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')
GLOO_SYNC_BN = 'mmeffnet.GlooSyncBN'


def sync_bn_supported(distributed: bool) -> bool:
    """Whether SyncBN can run as it is: several processes and CUDA."""
    return distributed and torch.cuda.is_available()


def swap_sync_bn(cfg: Config, distributed: bool) -> int:
    """Swap the SyncBN norm configs of ``cfg.model`` where they cannot run: for
    ``mmeffnet.GlooSyncBN`` in a distributed run without CUDA, for BN in a single process.
    Returns how many were swapped."""
    if sync_bn_supported(distributed):
        return 0
    on_cpu_processes = distributed and not torch.cuda.is_available()
    replacement = GLOO_SYNC_BN if on_cpu_processes else 'BN'
    changed = 0
    for node in walk_dicts(cfg.get('model', {})):
        if node.get('type') in SYNC_BN_TYPES:
            node['type'] = replacement
            changed += 1
    if changed and on_cpu_processes:
        print_log(
            f'SyncBN needs CUDA; running CPU processes, so {changed} SyncBN config(s) use {replacement} '
            '(statistics synchronized over the processes with gloo).',
            logger='current')
    elif changed:
        print_log(
            f'SyncBN needs CUDA and several processes; running in a single process, so {changed} SyncBN '
            'config(s) were converted to BN (the same computation there).',
            logger='current')
    return changed

"""Reading and adapting OpenMMLab configs, before a Runner is built from them.

- ``walk``: every dict nested in a config, with its ``--cfg-options`` path;
- ``toolbox``: which toolbox (mmdet, mmseg, mmpretrain) a config is for;
- ``sync_bn``: SyncBN swapped for what the machine can run (one list of SyncBN types);
- ``value_checks``: absurd values (a negative LR, ``batch_size=0``, ...) stopped with the key;
- ``dataset_paths``: the data the datasets and evaluators read, checked on disk;
- ``model_checks``: settings of one module that must fit another's (a neck's inputs, the backbone);
- ``fragments``: functions our config files call for the parts they share (pipelines, variants).
"""
from .dataset_paths import check_dataset_paths, dataset_paths
from .model_checks import check_neck_fits_backbone
from .sync_bn import GLOO_SYNC_BN, SYNC_BN_TYPES, swap_sync_bn, sync_bn_supported
from .toolbox import TOOLBOXES, toolbox_of
from .value_checks import check_amp_device, check_dataloaders, check_optimizer, check_schedule, check_train_config
from .walk import walk_dicts, walk_dicts_with_paths

__all__ = [
    'GLOO_SYNC_BN', 'SYNC_BN_TYPES', 'TOOLBOXES', 'check_amp_device', 'check_dataloaders', 'check_dataset_paths',
    'check_neck_fits_backbone', 'check_optimizer', 'check_schedule', 'check_train_config', 'dataset_paths',
    'swap_sync_bn', 'sync_bn_supported', 'toolbox_of', 'walk_dicts', 'walk_dicts_with_paths'
]

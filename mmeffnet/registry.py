"""The ``mmeffnet`` registry scope: one child of mmengine's root registry per kind we register.

Each registry below has scope ``mmeffnet`` and the root registry of its kind as parent, so the
toolboxes' registries (mmdet's, mmseg's, mmpretrain's: children of the same roots) find
``type='mmeffnet.X'`` through the shared root, and nothing of ours lands in the root or in a
toolbox's own registry. Configs name our components with the prefix: ``mmeffnet.EfficientNet``,
``mmeffnet.CheckedCocoDataset``, ``mmeffnet.RMSpropTF``, ...

``locations`` are the modules mmengine imports on the first look-up in a registry; they import
mmengine only. The dataset, transform and anchor modules need their toolbox (``mmeffnet.datasets.*``), so
they are not locations: a config imports the one it uses with ``custom_imports``.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmeffnet', locations=['mmeffnet.models', 'mmeffnet.models.gloo_sync_bn'])
HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope='mmeffnet',
    locations=['mmeffnet.runtime.checkpoint_hook', 'mmeffnet.runtime.nonfinite', 'mmeffnet.runtime.safe_loading'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='mmeffnet')
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='mmeffnet')
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, scope='mmeffnet', locations=['mmeffnet.engine'])
# mmdet builds its heads' anchor generators from the task-utils registries
TASK_UTILS = Registry('task util', parent=MMENGINE_TASK_UTILS, scope='mmeffnet')
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS, scope='mmeffnet', locations=['mmeffnet.engine'])

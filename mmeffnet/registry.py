"""The ``mmeffnet`` registry scope.

``MODELS`` is a child of mmengine's root ``MODELS``, so mmdet's, mmseg's and mmpretrain's registries
(also children of the root) find ``type='mmeffnet.EfficientNet'`` through the shared root.
``HOOKS`` does the same for the run-time hooks (``type='mmeffnet.SafeCheckpointHook'``).
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmeffnet',
                  locations=['mmeffnet.models', 'mmeffnet.runtime.gloo_sync_bn'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmeffnet',
                 locations=['mmeffnet.runtime.checkpointing', 'mmeffnet.runtime.nonfinite'])

"""The ``mmeffnet`` registry scope.

``MODELS`` is a child of mmengine's root ``MODELS``, so mmdet's, mmseg's and mmpretrain's registries
(also children of the root) find ``type='mmeffnet.EfficientNet'`` through the shared root.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmeffnet', locations=['mmeffnet.models'])

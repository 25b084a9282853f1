"""mmeffnet: EfficientNet as a first-class OpenMMLab backbone.

Importing it registers ``mmeffnet.EfficientNet`` (and friends) in the ``mmeffnet`` registry scope,
a child of mmengine's root, so mmdet/mmseg/mmpretrain configs can build it after
``custom_imports=dict(imports=['mmeffnet'], allow_failed_imports=False)``.
"""
from .version import __version__
from .registry import MODELS
from . import models  # noqa: F401  (registers the modules)
from .models import EfficientNet

__all__ = ['__version__', 'MODELS', 'EfficientNet']

from .runtime import safe_load as _safe_load

_safe_load.install()

"""mmeffnet: EfficientNet as a first-class OpenMMLab backbone.

Importing it registers ``mmeffnet.EfficientNet`` (and friends) in the ``mmeffnet`` registry scope,
a child of mmengine's root, so mmdet/mmseg/mmpretrain configs can build it after
``custom_imports=dict(imports=['mmeffnet'], allow_failed_imports=False)``. It changes nothing else
in the process (``tests/test_import_side_effects.py``): the safe checkpoint loader for mmengine,
for example, is an explicit opt-in (``mmeffnet/runtime/safe_loading.py``).
"""
from . import models  # noqa: F401  (registers the modules)
from .models import EfficientNet
from .registry import MODELS
from .version import __version__

__all__ = ['__version__', 'MODELS', 'EfficientNet']

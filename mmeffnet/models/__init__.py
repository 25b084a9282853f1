"""The networks (``nn.Module``s), registered in the ``mmeffnet`` scope on import.

``efficientdet_head`` and ``heads`` build on mmdet / mmpretrain, so they are not imported here: a
config that uses them lists them in ``custom_imports``.
"""
from .bifpn import BiFPN
from .efficientnet import EfficientNet

__all__ = ['BiFPN', 'EfficientNet']

from .efficientnet import EfficientNet
from ..arch import ARCHS, ArchParams, build_network_spec, compound_scaling, round_channels, round_repeats

__all__ = ['EfficientNet', 'ARCHS', 'ArchParams', 'build_network_spec', 'compound_scaling',
           'round_channels', 'round_repeats']

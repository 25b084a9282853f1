"""What an EfficientNet is, as data: compound scaling (:mod:`.scaling`), the per-block network
plan (:mod:`.network`) and EfficientDet's scaling (:mod:`.efficientdet`). No ``nn.Module`` here;
the backbone, the converters and the config tools all read these."""
from .efficientdet import (EFFICIENTDET_ARCHS, RELEASED_DEPARTURES, EfficientDetParams, backbone_level_channels,
                           efficientdet_scaling, resolve_efficientdet_arch)
from .network import (DROP_PATH_SCHEDULES, HEAD_LEVEL, NUM_LEVELS, OUTPUT_STRIDES, BlockSpec, NetworkSpec, StageSpec,
                      build_network_spec, drop_path_rates)
from .scaling import (ARCHS, B0_STAGES, BASE_RESOLUTION, PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, ArchParams, MBConvStage,
                      compound_scaling, implied_phi, resolve_arch, round_channels, round_repeats)

__all__ = [
    'ARCHS', 'ArchParams', 'B0_STAGES', 'BASE_RESOLUTION', 'BlockSpec', 'DROP_PATH_SCHEDULES', 'HEAD_LEVEL',
    'EFFICIENTDET_ARCHS', 'EfficientDetParams', 'RELEASED_DEPARTURES', 'backbone_level_channels',
    'efficientdet_scaling', 'resolve_efficientdet_arch', 'MBConvStage', 'NUM_LEVELS', 'NetworkSpec', 'OUTPUT_STRIDES',
    'PAPER_ALPHA', 'PAPER_BETA', 'PAPER_GAMMA', 'StageSpec', 'build_network_spec', 'compound_scaling',
    'drop_path_rates', 'implied_phi', 'resolve_arch', 'round_channels', 'round_repeats'
]

"""Compound scaling (eq. 3 of Tan & Le, 2019): Table 1, the released multipliers and the rounding.

All channel and depth rounding lives here: ``round_channels`` (multiples of 8, never more than 10%
below the exact value) and ``round_repeats`` (``ceil``), as in the official TF implementation.

The official B1-B7 table is *not* eq. 3 evaluated at integer phi: with alpha=1.2, beta=1.1,
gamma=1.15, phi=1 gives (depth 1.2, width 1.1, 258 px), while the released B1 is (1.1, 1.0, 240).
The released multipliers are rounded versions picked by the authors; ``implied_phi`` shows how far
each one is from eq. 3, and ``compound_scaling`` gives the pure eq. 3 values for any phi.
"""
import math
from dataclasses import dataclass
from typing import Dict, Tuple, Union

BASE_RESOLUTION = 224
PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA = 1.2, 1.1, 1.15
CHANNEL_DIVISOR = 8


@dataclass(frozen=True)
class MBConvStage:
    """One row of Table 1 (a run of identical MBConv blocks)."""
    expand_ratio: int
    kernel_size: int
    stride: int
    out_channels: int
    repeats: int


# Table 1 of the paper, stages 2-8: MBConv1 k3 16, MBConv6 k3 24, k5 40, k3 80, k5 112, k5 192, k3 320.
B0_STEM_CHANNELS = 32
B0_HEAD_CHANNELS = 1280
B0_STAGES: Tuple[MBConvStage, ...] = (
    MBConvStage(1, 3, 1, 16, 1),
    MBConvStage(6, 3, 2, 24, 2),
    MBConvStage(6, 5, 2, 40, 2),
    MBConvStage(6, 3, 2, 80, 3),
    MBConvStage(6, 5, 1, 112, 3),
    MBConvStage(6, 5, 2, 192, 4),
    MBConvStage(6, 3, 1, 320, 1),
)


@dataclass(frozen=True)
class ArchParams:
    """What defines one member of the family.

    ``lite`` selects EfficientNet-Lite: no squeeze-and-excitation, ReLU6, and stem, head and the
    first and last stage's depth left unscaled (the TF release's ``fix_head_stem``).
    """
    width_mult: float
    depth_mult: float
    resolution: int
    dropout: float = 0.2
    lite: bool = False
    se_ratio: float = 0.25


# (width, depth, resolution, dropout) of the official TF release (efficientnet_builder.py and
# efficientnet_lite_builder.py).
ARCHS: Dict[str, ArchParams] = {
    'b0': ArchParams(1.0, 1.0, 224, 0.2),
    'b1': ArchParams(1.0, 1.1, 240, 0.2),
    'b2': ArchParams(1.1, 1.2, 260, 0.3),
    'b3': ArchParams(1.2, 1.4, 300, 0.3),
    'b4': ArchParams(1.4, 1.8, 380, 0.4),
    'b5': ArchParams(1.6, 2.2, 456, 0.4),
    'b6': ArchParams(1.8, 2.6, 528, 0.5),
    'b7': ArchParams(2.0, 3.1, 600, 0.5),
    'b8': ArchParams(2.2, 3.6, 672, 0.5),
    'l2': ArchParams(4.3, 5.3, 800, 0.5),
    'lite0': ArchParams(1.0, 1.0, 224, 0.2, lite=True, se_ratio=0.),
    'lite1': ArchParams(1.0, 1.1, 240, 0.2, lite=True, se_ratio=0.),
    'lite2': ArchParams(1.1, 1.2, 260, 0.3, lite=True, se_ratio=0.),
    'lite3': ArchParams(1.2, 1.4, 280, 0.3, lite=True, se_ratio=0.),
    'lite4': ArchParams(1.4, 1.8, 300, 0.3, lite=True, se_ratio=0.),
}


def round_channels(channels: float, width_mult: float = 1.0, divisor: int = CHANNEL_DIVISOR) -> int:
    """Scale ``channels`` by ``width_mult`` and round to a multiple of ``divisor``, never more
    than 10% below the exact value (TF ``round_filters``)."""
    exact = channels * width_mult
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_mult: float = 1.0) -> int:
    """Scale a stage's block count by ``depth_mult``, rounding up (TF ``round_repeats``)."""
    return int(math.ceil(depth_mult * repeats))


def compound_scaling(phi: float,
                     alpha: float = PAPER_ALPHA,
                     beta: float = PAPER_BETA,
                     gamma: float = PAPER_GAMMA,
                     base_resolution: int = BASE_RESOLUTION) -> Tuple[float, float, int]:
    """Eq. 3: ``(depth_mult, width_mult, resolution)`` = ``(alpha^phi, beta^phi, r0 * gamma^phi)``.

    The resolution is rounded to the nearest pixel. FLOPs grow by about
    ``(alpha * beta^2 * gamma^2)^phi``.
    """
    for name, value in (('alpha', alpha), ('beta', beta), ('gamma', gamma)):
        if value < 1:
            raise ValueError(f'eq. 3 requires {name} >= 1, got {name}={value}')
    if phi < 0:
        raise ValueError(f'phi must be >= 0, got phi={phi}')
    return alpha**phi, beta**phi, int(round(base_resolution * gamma**phi))


def implied_phi(params: ArchParams,
                alpha: float = PAPER_ALPHA,
                beta: float = PAPER_BETA,
                gamma: float = PAPER_GAMMA) -> Tuple[float, float, float]:
    """The phi each of (depth, width, resolution) of ``params`` corresponds to under eq. 3."""
    return (math.log(params.depth_mult) / math.log(alpha), math.log(params.width_mult) / math.log(beta),
            math.log(params.resolution / BASE_RESOLUTION) / math.log(gamma))


def resolve_arch(arch: Union[str, dict, ArchParams]) -> ArchParams:
    """Turn ``arch`` (a name, ``dict(phi=...)``, explicit multipliers, or ``ArchParams``) into
    ``ArchParams``, with an error naming the bad value and the valid choices."""
    if isinstance(arch, ArchParams):
        return arch
    if isinstance(arch, str):
        key = arch.lower().replace('efficientnet-', '').replace('efficientnet_', '')
        if key not in ARCHS:
            raise KeyError(f'unknown EfficientNet arch {arch!r}; valid names are {", ".join(ARCHS)}, '
                           "or dict(phi=..., alpha=1.2, beta=1.1, gamma=1.15), or "
                           'dict(width_mult=..., depth_mult=..., resolution=...)')
        return ARCHS[key]
    if isinstance(arch, dict):
        arch = dict(arch)
        extra = {k: arch.pop(k) for k in ('dropout', 'lite', 'se_ratio') if k in arch}
        if 'phi' in arch:
            allowed = {'phi', 'alpha', 'beta', 'gamma', 'base_resolution'}
            _reject_keys(arch, allowed)
            depth, width, res = compound_scaling(**arch)
        else:
            required = {'width_mult', 'depth_mult', 'resolution'}
            missing = required - set(arch)
            if missing:
                raise KeyError(f'arch dict {arch} lacks {sorted(missing)}: give phi=... (eq. 3) or all '
                               f'of {sorted(required)}')
            _reject_keys(arch, required)
            width, depth, res = float(arch['width_mult']), float(arch['depth_mult']), int(arch['resolution'])
            if width <= 0 or depth <= 0 or res <= 0:
                raise ValueError(f'width_mult, depth_mult and resolution must be positive, got {arch}')
        return ArchParams(width_mult=width, depth_mult=depth, resolution=res, **extra)
    raise TypeError(f'arch must be a name ({", ".join(ARCHS)}) or a dict, got {type(arch).__name__}')


def _reject_keys(given: dict, allowed: set) -> None:
    unknown = set(given) - allowed
    if unknown:
        raise KeyError(f'unknown arch keys {sorted(unknown)}; valid keys are {sorted(allowed)} '
                       '(plus dropout, lite, se_ratio)')

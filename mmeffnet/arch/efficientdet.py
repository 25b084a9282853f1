"""EfficientDet's compound scaling (eq. 1 of Tan, Pang & Le, CVPR 2020) as data.

One function of phi gives every size of the family::

    BiFPN width  W = 64 * 1.35^phi      BiFPN depth  D = 3 + phi
    head depth     = 3 + floor(phi / 3)  input size  R = 512 + 128 * phi
    backbone       = EfficientNet-B{phi}, at most B6

The released models (paper Table 1; google/automl ``efficientdet/hparams_config.py``,
``efficientdet_model_param_dict``, which effdet copies) do not evaluate eq. 1 exactly: automl lists
every width, depth and size by hand, and no single rounding rule gives its widths (D2 rounds
116.6 down to 112 while D4 rounds 212.6 up to 224). ``efficientdet_scaling`` therefore evaluates
eq. 1, rounds the width to the nearest multiple of 8 (which gives automl's D0, D1, D3, D5 and D6
widths), and then applies the released departures listed in ``RELEASED_DEPARTURES``, each with
the eq. 1 value it replaces. The result for phi = 0..7 is exactly the released D0..D7.

Anchors (official code and effdet): 3 octave scales 2^0, 2^(1/3), 2^(2/3) x 3 aspects, base size
``anchor_scale * stride``, ordered octave-major so that anchor ``a = octave * 3 + aspect``. The aspects
are automl's (width, height) factors ``(1.0, 1.0), (1.4, 0.7), (0.7, 1.4)``: not an area-preserving
h/w ratio (1.4 x 0.7 = 0.98), which is why ``mmeffnet.EfficientDetAnchorGenerator`` takes them as
factors instead of mmdet's ``ratios``.
"""
import math
from dataclasses import dataclass, replace
from typing import Dict, Tuple, Union

from .network import build_network_spec

#: the phi of the released family, D0..D7
PHIS = tuple(range(8))
#: eq. 1's constants
BASE_WIDTH, WIDTH_FACTOR, BASE_FPN_DEPTH, BASE_HEAD_DEPTH = 64, 1.35, 3, 3
BASE_INPUT, INPUT_STEP = 512, 128
WIDTH_DIVISOR = 8
MAX_BACKBONE_PHI = 6  # the paper: D7 keeps D6's backbone, B6
#: BiFPN input fusion: 'fast' = fast normalized fusion relu(w_i) / (sum_j relu(w_j) + 1e-4),
#: 'sum' = unweighted sum (D6 and D7: "for stability", automl)
FUSIONS = ('fast', 'sum')
#: anchor layout shared by the head's default anchor generator and the effdet converter
MIN_LEVEL, MAX_LEVEL = 3, 7
ANCHOR_ASPECTS = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))  # (width, height) factors, in the official order
SCALES_PER_OCTAVE = 3
ANCHOR_STRIDES = tuple(2**level for level in range(MIN_LEVEL, MAX_LEVEL + 1))
#: the backbone levels (``EfficientNet.out_indices``) the BiFPN reads: strides 8, 16, 32 = P3..P5
BACKBONE_LEVELS = (3, 4, 5)


@dataclass(frozen=True)
class EfficientDetParams:
    """What defines one member of the EfficientDet family.

    ``backbone`` is an EfficientNet arch name (``mmeffnet.arch.ARCHS``); ``fpn_repeats`` is the number of
    BiFPN cells, ``head_repeats`` the separable convs of the class and box nets before their
    prediction conv; ``anchor_scale`` the base anchor size over the level's stride.
    """
    phi: int
    backbone: str
    fpn_channels: int
    fpn_repeats: int
    head_repeats: int
    image_size: int
    anchor_scale: float = 4.0
    fusion: str = 'fast'

    @property
    def name(self) -> str:
        return f'd{self.phi}'


#: where the released D0..D7 depart from eq. 1 (eq. 1's value in the comment)
RELEASED_DEPARTURES: Dict[int, dict] = {
    2: dict(fpn_channels=112),  # 64 * 1.35^2 = 116.6 -> 120
    4: dict(fpn_channels=224),  # 212.6 -> 216
    5: dict(fpn_repeats=7, image_size=1280),  # depth 8, input 1152
    6: dict(fpn_repeats=8, fusion='sum'),  # depth 9; eq. 1 says nothing of fusion
    7: dict(fpn_channels=384, fpn_repeats=8, image_size=1536, anchor_scale=5.0,
            fusion='sum'),  # width 523.0 -> 520, depth 10, input 1408; anchor scale 4 elsewhere
}


def eq1_width(phi: int) -> float:
    """The unrounded BiFPN width of eq. 1, ``64 * 1.35^phi``."""
    return BASE_WIDTH * WIDTH_FACTOR**phi


def efficientdet_scaling(phi: int) -> EfficientDetParams:
    """EfficientDet-D``phi``: eq. 1 with the width rounded to a multiple of 8, then the released
    departures (``RELEASED_DEPARTURES``). ``phi`` is an integer in 0..7."""
    if isinstance(phi, bool) or not isinstance(phi, int) or phi not in PHIS:
        raise ValueError(f'EfficientDet phi must be an integer in {PHIS[0]}..{PHIS[-1]} (D0..D7), got phi={phi!r}')
    eq1 = EfficientDetParams(
        phi=phi,
        backbone=f'b{min(phi, MAX_BACKBONE_PHI)}',
        fpn_channels=int(round(eq1_width(phi) / WIDTH_DIVISOR)) * WIDTH_DIVISOR,
        fpn_repeats=BASE_FPN_DEPTH + phi,
        head_repeats=BASE_HEAD_DEPTH + math.floor(phi / 3),
        image_size=BASE_INPUT + INPUT_STEP * phi)
    return replace(eq1, **RELEASED_DEPARTURES.get(phi, {}))


EFFICIENTDET_ARCHS: Dict[str, EfficientDetParams] = {f'd{phi}': efficientdet_scaling(phi) for phi in PHIS}


def resolve_efficientdet_arch(arch: Union[str, dict, EfficientDetParams]) -> EfficientDetParams:
    """``arch`` as ``EfficientDetParams``: a name (``'d3'``, ``'efficientdet-d3'``,
    ``'tf_efficientdet_d3'``), ``dict(phi=3)``, or the params themselves."""
    if isinstance(arch, EfficientDetParams):
        return arch
    if isinstance(arch, str):
        key = arch.lower()
        for prefix in ('tf_efficientdet_', 'efficientdet-', 'efficientdet_'):
            key = key[len(prefix):] if key.startswith(prefix) else key
        if key not in EFFICIENTDET_ARCHS:
            raise KeyError(f'unknown EfficientDet variant {arch!r}; valid names are '
                           f'{", ".join(EFFICIENTDET_ARCHS)}, or dict(phi=0..7)')
        return EFFICIENTDET_ARCHS[key]
    if isinstance(arch, dict):
        if set(arch) != {'phi'}:
            raise KeyError(f'an EfficientDet arch dict takes exactly one key, phi (0..7); got keys {sorted(arch)}')
        return efficientdet_scaling(arch['phi'])
    raise TypeError(f'EfficientDet arch must be a name ({", ".join(EFFICIENTDET_ARCHS)}), dict(phi=...) or '
                    f'EfficientDetParams, got {type(arch).__name__}')


def backbone_level_channels(params: EfficientDetParams) -> Tuple[int, ...]:
    """Channels of the backbone levels ``BACKBONE_LEVELS`` (P3..P5) the BiFPN reads."""
    channels = build_network_spec(params.backbone).level_channels
    return tuple(channels[level] for level in BACKBONE_LEVELS)

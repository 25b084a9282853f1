"""Model settings that must agree across modules, checked before the model is built.

A neck reads the backbone's levels, but only the config knows both: a BiFPN or FPN whose
``in_channels`` are not the channels of the EfficientNet levels it is given fails at the first
forward pass with a shape error that names neither module's setting. :func:`check_neck_fits_backbone`
names both and the value that fits.
"""
import inspect
from typing import List, Optional, Tuple

from mmengine.config import Config

from ..arch import ARCHS, build_network_spec


def _our_backbone(model: dict) -> Optional[dict]:
    backbone = model.get('backbone')
    return backbone if isinstance(backbone, dict) and backbone.get('type') == 'mmeffnet.EfficientNet' else None


def _backbone_levels(backbone: dict) -> Optional[Tuple[str, Tuple[int, ...], List[int]]]:
    """(arch, levels, their channels) an ``mmeffnet.EfficientNet`` config dict outputs, with the
    constructor's defaults for what it leaves out; None when its arch or out_indices are invalid
    (the backbone itself reports those when it is built)."""
    from ..models.efficientnet import EfficientNet
    defaults = inspect.signature(EfficientNet.__init__).parameters
    arch = backbone.get('arch', defaults['arch'].default)
    try:
        levels = tuple(EfficientNet.check_out_indices(backbone.get('out_indices', defaults['out_indices'].default)))
        channels = build_network_spec(arch).level_channels
    except (KeyError, ValueError, TypeError):
        return None
    return arch, levels, [channels[level] for level in levels]


def _archs_with(channels: List[int], levels: Tuple[int, ...]) -> List[str]:
    return [name for name in ARCHS if [build_network_spec(name).level_channels[i] for i in levels] == channels]


def check_neck_fits_backbone(cfg: Config) -> None:
    """Raise ``ValueError`` when ``model.neck.in_channels`` are not the channels of the levels the
    ``mmeffnet.EfficientNet`` backbone outputs (``arch`` and ``out_indices``)."""
    model = cfg.get('model')
    if not isinstance(model, dict):
        return
    backbone, neck = _our_backbone(model), model.get('neck')
    if backbone is None or not isinstance(neck, dict) or not isinstance(neck.get('in_channels'), (list, tuple)):
        return
    outputs = _backbone_levels(backbone)
    given = list(neck['in_channels'])
    if outputs is None or given == outputs[2]:
        return
    arch, levels, expected = outputs
    fitting = _archs_with(given, levels) if len(given) == len(levels) else []
    raise ValueError(f'model.neck ({neck.get("type")}) in_channels={given} do not fit the backbone: EfficientNet '
                     f'arch={arch!r} with out_indices={levels} outputs channels {expected}. Set '
                     f'model.neck.in_channels={expected}' +
                     (f', or use a backbone arch whose levels give {given}: {", ".join(fitting)}' if fitting else ''))

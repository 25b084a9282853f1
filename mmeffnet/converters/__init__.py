"""Weight converters from other EfficientNet implementations to mmeffnet's (= mmpretrain's) layout.

``detect_layout`` names the implementation a state dict comes from; ``convert_to_mmeffnet`` maps
its keys onto a given backbone. Each source lives in its own module.
"""
from typing import Dict

import torch
import torch.nn as nn

LAYOUTS = ('mmeffnet', 'timm', 'torchvision', 'lukemelas', 'tf')


def detect_layout(state: Dict[str, torch.Tensor]) -> str:
    """Which implementation's key names ``state`` uses (backbone keys, prefix already removed)."""
    keys = set(state)
    if any(k.startswith('layers.0.') for k in keys):
        return 'mmeffnet'
    if 'conv_stem.weight' in keys:
        return 'timm'
    if 'features.0.0.weight' in keys:
        return 'torchvision'
    if '_conv_stem.weight' in keys:
        return 'lukemelas'
    raise KeyError('unrecognised checkpoint layout: expected mmpretrain/mmeffnet (layers.0.*), timm '
                   '(conv_stem.*), torchvision (features.0.0.*) or lukemelas (_conv_stem.*) keys; got '
                   f'{sorted(keys)[:8]} ...')


def convert_to_mmeffnet(state: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """``state`` in mmeffnet's layout for ``model`` (unchanged if it already is)."""
    layout = detect_layout(state)
    if layout == 'mmeffnet':
        return state
    raise NotImplementedError(f'conversion from the {layout} layout is not implemented yet')

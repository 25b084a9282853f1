"""``init_cfg=dict(type='Pretrained', ...)`` of an mmeffnet backbone: read, convert, fit strictly.

``EfficientNet.init_weights`` calls :func:`load_backbone_checkpoint`: the checkpoint is read
safely (``reading.py``), its ``prefix`` sub-dict taken, a foreign layout (timm, torchvision,
lukemelas) converted to ours (``conversion.py``) and the result loaded only if it fits exactly
(``fitting.py``). A checkpoint made for another padding or BN eps loads with a warning.
"""
import logging
import math
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..arch import ARCHS
from ..converters.canonical import ConversionError
from ..utils import MAX_LISTED
from .conversion import convert_to_mmeffnet, detect_layout, expected_settings, recognise_arch
from .errors import CheckpointMismatchError
from .fitting import check_and_load
from .reading import extract_state_dict, read_checkpoint


def strip_prefix(state: Dict[str, torch.Tensor], prefix: Optional[str], filename: str) -> Dict[str, torch.Tensor]:
    """Keep the ``prefix.``-ed keys, without the prefix (mmengine's ``Pretrained(prefix=...)``)."""
    if not prefix:
        return state
    prefix = prefix.rstrip('.') + '.'
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not picked:
        tops = sorted({k.split('.')[0] for k in state})
        try:
            hint = f' (it is a bare {detect_layout(state)}-layout backbone state dict: use no prefix)'
        except ConversionError:
            hint = ''
        raise CheckpointMismatchError(f'no key of {filename} starts with prefix {prefix!r}; its top-level names are '
                                      f'{tops[:MAX_LISTED]}{hint}')
    return picked


def _first_norm_eps(model: nn.Module) -> Optional[float]:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) or type(m).__name__ == 'SyncBatchNorm':
            return getattr(m, 'eps', None)
    return None


def warn_on_settings(model: nn.Module, expected: dict, filename: str) -> None:
    """Log a warning when the checkpoint was made with another padding or BN eps than ``model``
    uses: it still loads, but its outputs differ from the source's."""
    padding, eps = getattr(model, 'padding', None), _first_norm_eps(model)
    if expected.get('padding') and padding and expected['padding'] != padding:
        print_log(
            f'{filename} was made for padding={expected["padding"]!r} but the backbone uses '
            f'padding={padding!r}: its outputs will differ from the source model\'s',
            logger='current',
            level=logging.WARNING)
    if expected.get('norm_eps') and eps and not math.isclose(expected['norm_eps'], eps, rel_tol=1e-6):
        print_log(
            f'{filename} was made for BN eps={expected["norm_eps"]} but the backbone\'s norm_cfg '
            f'has eps={eps}: set norm_cfg=dict(..., eps={expected["norm_eps"]}) to reproduce the '
            'source model',
            logger='current',
            level=logging.WARNING)


def load_backbone_checkpoint(model: nn.Module,
                             filename: str,
                             prefix: Optional[str] = None,
                             map_location: str = 'cpu') -> None:
    """Read ``filename``, take the ``prefix`` sub-dict, convert a foreign (timm, torchvision,
    lukemelas) layout to ours, and load it strictly into the backbone ``model``.

    A checkpoint whose meta (or source) implies another ``padding`` or BN eps than the model's
    loads with a logged warning.
    """
    checkpoint = read_checkpoint(filename, map_location)
    state = strip_prefix(extract_state_dict(checkpoint, filename), prefix, filename)
    try:
        layout = detect_layout(state)
    except ConversionError as exc:
        raise CheckpointMismatchError(f'{filename}: {exc}') from None
    meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
    expected = {k: meta[k] for k in ('padding', 'norm_eps') if k in meta} or \
        expected_settings(layout, recognise_arch(state) if layout == 'torchvision' else None)
    state = convert_to_mmeffnet(state, model)
    try:
        check_and_load(model, state, filename, built_levels=len(model.layers))
    except CheckpointMismatchError as exc:
        found = recognise_arch(state)
        spec = getattr(model, 'spec', None)
        if found is not None and spec is not None and ARCHS[found] != spec.params:
            raise CheckpointMismatchError(f'{exc}\n  the checkpoint has the shapes of arch {found!r}') from None
        raise
    warn_on_settings(model, expected, filename)

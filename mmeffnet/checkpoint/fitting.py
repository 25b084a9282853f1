"""Loading a state dict into a model only if it fits exactly: every key accounted for, or an error.

mmengine loads with ``strict=False`` and only logs mismatches, so a B0 checkpoint silently
half-loads into a B3. :func:`check_and_load` lists missing, unexpected and mis-shaped keys in a
:class:`CheckpointMismatchError` instead. Keys of levels a backbone did not build (``out_indices``
stops early) are the one expected difference and are skipped.
"""
import re
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from ..converters.from_effdet import describe_efficientdet, describe_variant
from ..utils import listing
from .errors import CheckpointMismatchError

_IGNORED = re.compile(r'num_batches_tracked$')
_LEVEL_KEY = re.compile(r'^layers\.(\d+)\.')
CLASSIFIER_WEIGHT = 'head.fc.weight'


def _section(title: str, items: List[str]) -> str:
    return f'\n  {title} ({len(items)}): {listing(items)}'


def _classifier_hint(own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], missing: List[str],
                     unexpected: List[str], mismatched: List[str]) -> str:
    """When only a classifier's class count differs (a 1000-class ImageNet checkpoint for a
    10-class model), say so and name the backbone-only way of loading it."""
    key = CLASSIFIER_WEIGHT
    if missing or unexpected or key not in own or key not in state:
        return ''
    if not all(m.startswith('head.fc.') for m in mismatched):
        return ''
    return (f'\n  only the classifier differs: the checkpoint has {state[key].shape[0]} classes, the model '
            f'{own[key].shape[0]}. To start from its backbone only, set model.backbone.init_cfg='
            "dict(type='Pretrained', checkpoint=<file>, prefix='backbone') and do not load the whole "
            'checkpoint (the transfer configs in configs/classification/ do this)')


def efficientdet_mismatch(own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor]) -> str:
    """``'it is an EfficientDet-d1 checkpoint (...), the model is an EfficientDet-d0 (...)'`` when both
    are EfficientDets of different sizes, else ``''``."""
    ours, theirs = describe_efficientdet(own), describe_efficientdet(state)
    if ours is None or theirs is None or ours == theirs:
        return ''
    return f'it is an {describe_variant(theirs)} checkpoint, the model is an {describe_variant(ours)}'


def check_and_load(model: nn.Module,
                   state: Dict[str, torch.Tensor],
                   filename: str,
                   built_levels: Optional[int] = None) -> None:
    """Load ``state`` into ``model`` if and only if it fits exactly, else raise
    :class:`CheckpointMismatchError` naming ``filename`` and the keys that do not fit.

    ``built_levels``: for a backbone that built only ``layers[:built_levels]``, keys of later
    levels in ``state`` are not counted as unexpected.
    """
    own = model.state_dict()

    def is_unbuilt(key: str) -> bool:
        m = _LEVEL_KEY.match(key)
        return built_levels is not None and m is not None and int(m.group(1)) >= built_levels

    missing = [k for k in own if k not in state and not _IGNORED.search(k)]
    unexpected = [k for k in state if k not in own and not _IGNORED.search(k) and not is_unbuilt(k)]
    mismatched = [
        f'{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}' for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        msg = f'checkpoint {filename} does not fit this {type(model).__name__}'
        arch = getattr(model, 'arch', None)
        if arch is not None:
            msg += f' (arch={arch!r})'
        variant = efficientdet_mismatch(own, state)
        msg += f': {variant}' if variant else ': is it for another arch, or another padding/layout?'
        if missing:
            msg += _section('missing keys', missing)
        if unexpected:
            msg += _section('unexpected keys', unexpected)
        if mismatched:
            msg += _section('shape mismatches', mismatched)
        msg += _classifier_hint(own, state, missing, unexpected, mismatched)
        raise CheckpointMismatchError(msg)
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)

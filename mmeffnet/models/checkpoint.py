"""Loading backbone checkpoints strictly: every key accounted for, or a clear error.

mmengine's ``Pretrained`` init loads with ``strict=False`` and only logs mismatches, so a B0
checkpoint silently half-loads into a B3. Here missing, unexpected and mis-shaped keys are listed
in an error instead. Keys of levels the backbone did not build (``out_indices`` stops early) are
the one expected difference and are skipped.
"""
import logging
import math
import re
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..converters import ConversionError, convert_to_mmeffnet, detect_layout, expected_settings, recognise_arch
from ..arch import ARCHS

MAX_LISTED = 12


class CheckpointMismatchError(RuntimeError):
    """A checkpoint that does not fit the model it is loaded into."""


class CheckpointReadError(ValueError):
    """A file that is missing, truncated, not a checkpoint, or holds objects not unpickled for safety."""


def read_checkpoint(filename: str, map_location: str = 'cpu') -> dict:
    """Load a checkpoint: ``.safetensors`` with safetensors, anything else through mmengine's
    ``CheckpointLoader`` (local files: ``safe_torch_load``, which never executes pickled code)."""
    if str(filename).endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(filename, device=map_location)
        except FileNotFoundError:
            raise FileNotFoundError(f'checkpoint file not found: {filename}') from None
        except Exception as exc:
            raise CheckpointReadError(f'cannot load checkpoint {filename}: {type(exc).__name__}: {exc}') from None
    from mmengine.runner.checkpoint import CheckpointLoader
    try:
        return CheckpointLoader.load_checkpoint(filename, map_location=map_location, logger='silent')
    except RuntimeError as exc:  # safe_torch_load: truncated, not a checkpoint, or unsafe pickle
        raise CheckpointReadError(str(exc)) from None


def extract_state_dict(checkpoint: dict, filename: str = '<checkpoint>') -> Dict[str, torch.Tensor]:
    """The tensor dict inside an mmengine/mmpretrain (``state_dict``), timm/torchvision (plain) or
    EMA-style (``state_dict_ema``, ``model``) checkpoint."""
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f'{filename} holds a {type(checkpoint).__name__}, not a dict of tensors')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointMismatchError(f'{filename} contains no tensors (keys: {list(checkpoint)[:MAX_LISTED]})')
    return state


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
        raise CheckpointMismatchError(
            f'no key of {filename} starts with prefix {prefix!r}; its top-level names are '
            f'{tops[:MAX_LISTED]}{hint}')
    return picked


def _listing(title: str, items: List[str]) -> str:
    shown = ', '.join(items[:MAX_LISTED])
    more = f' ... (+{len(items) - MAX_LISTED} more)' if len(items) > MAX_LISTED else ''
    return f'\n  {title} ({len(items)}): {shown}{more}'


def _classifier_hint(own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], missing: List[str],
                     unexpected: List[str], mismatched: List[str]) -> str:
    """When only a classifier's class count differs (a 1000-class ImageNet checkpoint for a
    10-class model), say so and name the backbone-only way of loading it."""
    key = 'head.fc.weight'
    if missing or unexpected or key not in own or key not in state:
        return ''
    if not all(m.startswith('head.fc.') for m in mismatched):
        return ''
    return (f'\n  only the classifier differs: the checkpoint has {state[key].shape[0]} classes, the model '
            f'{own[key].shape[0]}. To start from its backbone only, set model.backbone.init_cfg='
            "dict(type='Pretrained', checkpoint=<file>, prefix='backbone') and do not load the whole "
            'checkpoint (the transfer configs in configs/classification/ do this)')


def check_and_load(model: nn.Module, state: Dict[str, torch.Tensor], filename: str,
                   built_levels: Optional[int] = None) -> None:
    """Load ``state`` into ``model`` if and only if it fits exactly (see module docstring)."""
    own = model.state_dict()
    ignored = re.compile(r'num_batches_tracked$')
    unbuilt = re.compile(rf'^layers\.(\d+)\.')

    def is_unbuilt(key: str) -> bool:
        m = unbuilt.match(key)
        return built_levels is not None and m is not None and int(m.group(1)) >= built_levels

    missing = [k for k in own if k not in state and not ignored.search(k)]
    unexpected = [k for k in state if k not in own and not ignored.search(k) and not is_unbuilt(k)]
    mismatched = [f'{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        msg = f'checkpoint {filename} does not fit this {type(model).__name__}'
        arch = getattr(model, 'arch', None)
        if arch is not None:
            msg += f' (arch={arch!r})'
        msg += ': is it for another arch, or another padding/layout?'
        if missing:
            msg += _listing('missing keys', missing)
        if unexpected:
            msg += _listing('unexpected keys', unexpected)
        if mismatched:
            msg += _listing('shape mismatches', mismatched)
        msg += _classifier_hint(own, state, missing, unexpected, mismatched)
        raise CheckpointMismatchError(msg)
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


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
        print_log(f'{filename} was made for padding={expected["padding"]!r} but the backbone uses '
                  f'padding={padding!r}: its outputs will differ from the source model\'s',
                  logger='current', level=logging.WARNING)
    if expected.get('norm_eps') and eps and not math.isclose(expected['norm_eps'], eps, rel_tol=1e-6):
        print_log(f'{filename} was made for BN eps={expected["norm_eps"]} but the backbone\'s norm_cfg '
                  f'has eps={eps}: set norm_cfg=dict(..., eps={expected["norm_eps"]}) to reproduce the '
                  'source model', logger='current', level=logging.WARNING)


def load_backbone_checkpoint(model: nn.Module, filename: str, prefix: Optional[str] = None,
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

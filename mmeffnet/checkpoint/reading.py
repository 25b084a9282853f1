"""Reading a checkpoint without running pickled code, and finding its tensors.

torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``, and mmengine 0.10 checkpoints hold
its ``HistoryBuffer`` and numpy arrays and scalars (the message hub, our saved random state), so a
plain load of a training checkpoint fails. Rather than turning the safety off (``weights_only=False``
would run any pickled code), :func:`safe_torch_load` allows exactly those types for one load.
mmeffnet reads local files with it directly; that mmengine's own loading (``--resume``,
``load_from``) does too is an opt-in: ``mmeffnet/runtime/safe_loading.py``.
"""
import builtins
import os
from typing import Dict, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from ..utils import MAX_LISTED
from .errors import CheckpointMismatchError, CheckpointReadError

FILE_SCHEME = 'file://'


def is_local_path(path: str) -> bool:
    """Whether ``path`` names a local file or folder (not a URL such as ``s3://`` or ``https://``)."""
    return '://' not in str(path)


def mmengine_safe_globals() -> List[object]:
    """The non-tensor types an mmengine 0.10 checkpoint contains."""
    dtype_classes = [getattr(np.dtypes, name) for name in getattr(np.dtypes, '__all__', [])]
    multiarray = np.core.multiarray
    # numpy pickles its dtype classes through getattr; REDUCE can still only call allow-listed
    # functions, so this does not open arbitrary calls.
    return [
        HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar, builtins.getattr,
        *dtype_classes
    ]


def safe_torch_load(filename: str, map_location=None) -> dict:
    """``torch.load`` of a local checkpoint with ``weights_only=True`` and mmengine's types allowed.

    The signature is that of an mmengine ``CheckpointLoader`` scheme (``filename, map_location``).

    Raises:
        FileNotFoundError: the file is missing.
        CheckpointReadError: it is truncated, not a PyTorch checkpoint, or holds other objects.
    """
    filename = str(filename)
    filename = os.path.expanduser(filename[len(FILE_SCHEME):] if filename.startswith(FILE_SCHEME) else filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        with torch.serialization.safe_globals(mmengine_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ''
        raise CheckpointReadError(
            f'cannot load checkpoint {filename}: {type(exc).__name__}: {first_line}. The file is '
            'truncated or not a PyTorch checkpoint, or it holds Python objects that are not '
            'unpickled for safety (only tensors, containers and mmengine/numpy state are).') from exc


def read_checkpoint(filename: str, map_location: str = 'cpu') -> dict:
    """Load a checkpoint: ``.safetensors`` with safetensors, a local file with
    :func:`safe_torch_load` (never executes pickled code), a URL through mmengine's
    ``CheckpointLoader`` (its ``http://``, ``s3://``... schemes)."""
    filename = str(filename)
    if filename.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(filename, device=map_location)
        except FileNotFoundError:
            raise FileNotFoundError(f'checkpoint file not found: {filename}') from None
        except Exception as exc:
            raise CheckpointReadError(f'cannot load checkpoint {filename}: {type(exc).__name__}: {exc}') from None
    if is_local_path(filename) or filename.startswith(FILE_SCHEME):
        return safe_torch_load(filename, map_location=map_location)
    from mmengine.runner.checkpoint import CheckpointLoader
    try:
        return CheckpointLoader.load_checkpoint(filename, map_location=map_location, logger='silent')
    except RuntimeError as exc:
        raise CheckpointReadError(f'cannot load checkpoint {filename}: {exc}') from None


def extract_state_dict(checkpoint: dict, filename: str = '<checkpoint>') -> Dict[str, torch.Tensor]:
    """The tensor dict inside an mmengine/mmpretrain (``state_dict``), timm/torchvision (plain) or
    EMA-style (``model``, ``module``) checkpoint, without a DDP ``module.`` prefix."""
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f'{filename} holds a {type(checkpoint).__name__}, not a dict of tensors')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    state = {
        k[len('module.'):] if k.startswith('module.') else k: v
        for k, v in checkpoint.items() if isinstance(v, torch.Tensor)
    }
    if not state:
        raise CheckpointMismatchError(f'{filename} contains no tensors (keys: {list(checkpoint)[:MAX_LISTED]})')
    return state


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of the checkpoint at ``path``: :func:`read_checkpoint` then
    :func:`extract_state_dict`, each failing with an error that names the file."""
    return extract_state_dict(read_checkpoint(path), path)

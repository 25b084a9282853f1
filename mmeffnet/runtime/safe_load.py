"""Reading mmengine checkpoints with ``torch.load(weights_only=True)``.

torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``, and mmengine 0.10 checkpoints hold
its ``HistoryBuffer`` and numpy scalars (the message hub), so ``--resume`` fails. Rather than
turning the safety off (``weights_only=False`` would run any pickled code), we allow exactly those
types, only while mmengine reads a checkpoint, by replacing mmengine's local-file loader.
"""
import builtins
import os
from typing import List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


def mmengine_safe_globals() -> List[object]:
    """The non-tensor types an mmengine 0.10 checkpoint contains."""
    dtype_classes = [getattr(np.dtypes, name) for name in getattr(np.dtypes, '__all__', [])]
    multiarray = np.core.multiarray
    # numpy pickles its dtype classes through getattr; REDUCE can still only call allow-listed
    # functions, so this does not open arbitrary calls.
    return [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
            builtins.getattr, *dtype_classes]


class UnreadableCheckpointError(RuntimeError):
    """A checkpoint file that is truncated, not a PyTorch checkpoint, or holds disallowed objects."""


def safe_torch_load(filename: str, map_location=None) -> dict:
    """``torch.load`` of a local checkpoint with ``weights_only=True`` and mmengine's types allowed.

    Raises ``FileNotFoundError`` when it is missing, and ``UnreadableCheckpointError`` (a
    ``RuntimeError``) naming the file when it is truncated or holds other objects.
    """
    filename = os.path.expanduser(filename[len('file://'):] if filename.startswith('file://') else filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        with torch.serialization.safe_globals(mmengine_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ''
        raise UnreadableCheckpointError(
            f'cannot load checkpoint {filename}: {type(exc).__name__}: {first_line}. The file is '
            'truncated or not a PyTorch checkpoint, or it holds Python objects that are not '
            'unpickled for safety (only tensors, containers and mmengine/numpy state are).') from exc


def install() -> None:
    """Make mmengine's ``load_checkpoint`` / ``--resume`` / ``load_from`` use ``safe_torch_load``
    for local files (idempotent)."""
    CheckpointLoader.register_scheme(prefixes='', force=True)(safe_torch_load)

"""The one way mmeffnet writes a file that must never be seen half-written.

A file is written to a temporary name in the same folder, fsynced, then ``os.replace``-d onto its
final name (an atomic rename on POSIX and Windows), so whatever happens (a kill, a full disk) the
final name holds either its old content or all of the new one. Checkpoints, ``last_checkpoint``,
converted weights and the compound search's state files all go through :func:`atomic_write_bytes`.
"""
import glob
import io
import os
import os.path as osp
import uuid
from typing import List

import torch

#: The temporary file of a write to ``folder/name`` is ``folder/.name.<random>.partial``.
TEMP_SUFFIX = '.partial'


def _fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old content or all of ``data``
    (temp file in the same folder, fsync, ``os.replace``); the temp file never outlives a failure."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}')
    try:
        with open(temp, 'xb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.remove(temp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def atomic_torch_save(obj: object, path: str) -> None:
    """``torch.save(obj, path)``, atomically (:func:`atomic_write_bytes`)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


def remove_stale_partials(folder: str) -> List[str]:
    """Delete the temp files that writes killed mid-way left in ``folder``; returns their paths."""
    stale = glob.glob(osp.join(folder, f'.*{TEMP_SUFFIX}'))
    for path in stale:
        try:
            os.remove(path)
        except OSError:
            pass
    return stale

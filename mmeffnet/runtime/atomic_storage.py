"""mmengine's local-disk storage backend with atomic writes, for the checkpoints our hooks save.

mmengine writes a checkpoint with its file backend's ``put``; :class:`AtomicLocalBackend` is its
``LocalBackend`` whose ``put`` / ``put_text`` go through ``atomic_write_bytes``. It is registered
in mmengine's backend table under our own name (:data:`ATOMIC_BACKEND`), never over another one,
and only when a hook asks for it (:func:`atomic_backend_args`), not on import.
"""
from typing import Optional

from mmengine.fileio import LocalBackend, register_backend
from mmengine.fileio.backends import backends

from ..checkpoint import atomic_write_bytes, is_local_path

ATOMIC_BACKEND = 'mmeffnet_atomic_local'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local-disk backend whose ``put`` / ``put_text`` are atomic."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), str(filepath))


def atomic_backend_args(path: str) -> Optional[dict]:
    """``backend_args`` that make mmengine save under the local ``path`` atomically (registering
    :class:`AtomicLocalBackend` on first use); None for a remote ``path``, whose object stores
    replace objects atomically already."""
    if not is_local_path(path):
        return None
    if backends.get(ATOMIC_BACKEND) is not AtomicLocalBackend:
        register_backend(ATOMIC_BACKEND, AtomicLocalBackend)  # raises if the name is someone else's
    return dict(backend=ATOMIC_BACKEND)

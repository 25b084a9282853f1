"""Opt-in: make mmengine read local checkpoints with ``safe_torch_load`` (``--resume``, ``load_from``,
inferencers' ``weights``), so that mmengine training checkpoints load under torch >= 2.6.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine's local-file loader
(``load_from_local``: a plain ``torch.load``) then refuses the ``HistoryBuffer`` and numpy state an
mmengine checkpoint holds. ``mmeffnet.checkpoint.safe_torch_load`` allows exactly those types.
Importing mmeffnet changes nothing in mmengine; a process asks for the safe loader explicitly:

- :func:`safe_checkpoint_loading` (a context manager): installed on entry, mmengine's own loader
  back on exit. ``tools/train.py``, ``tools/test.py`` and the demos run inside it.
- :func:`install_safe_checkpoint_loading` / :func:`uninstall_safe_checkpoint_loading`: the same
  for the rest of the process (a script of your own).
- from a config: ``custom_hooks=[dict(type='mmeffnet.SafeCheckpointLoadingHook')]`` installs it
  for the runner's ``train()`` / ``val()`` / ``test()`` (it runs before mmengine loads anything).

Only mmengine's own local-file loader is ever replaced, and always restored: if another package
already replaced it, installing raises instead of replacing theirs.
"""
import contextlib
from typing import Callable, Iterator, Optional

from mmengine.hooks import Hook
from mmengine.runner.checkpoint import CheckpointLoader, load_from_local

from ..checkpoint import safe_torch_load
from ..registry import HOOKS

#: mmengine's prefix for local files: a path that starts with no other registered prefix.
LOCAL_PREFIX = ''

_replaced: Optional[Callable] = None  # the loader ours replaced, put back by uninstall


def _local_loader() -> Optional[Callable]:
    # mmengine has no public getter for a scheme's loader; _schemes is its prefix -> loader table.
    return CheckpointLoader._schemes.get(LOCAL_PREFIX)


def is_safe_checkpoint_loading_installed() -> bool:
    """Whether mmengine currently reads local checkpoints with ``safe_torch_load``."""
    return _local_loader() is safe_torch_load


def install_safe_checkpoint_loading() -> None:
    """Make mmengine's ``CheckpointLoader`` read local files with ``safe_torch_load`` until
    :func:`uninstall_safe_checkpoint_loading` (idempotent).

    Raises:
        RuntimeError: mmengine's local-file loader is neither its own ``load_from_local`` nor ours:
            another package replaced it, and we do not replace theirs.
    """
    global _replaced
    current = _local_loader()
    if current is safe_torch_load:
        return
    if current is not load_from_local:
        raise RuntimeError(
            f'mmengine reads local checkpoints with {getattr(current, "__module__", "?")}.'
            f'{getattr(current, "__qualname__", current)!s}, not with its own load_from_local: another package '
            'replaced it, so mmeffnet does not install its safe loader over it. Leave mmengine\'s loader in '
            'place, or load checkpoints with mmeffnet.checkpoint.safe_torch_load yourself')
    # force: the '' prefix is taken by mmengine's load_from_local, checked above and restored by
    # uninstall_safe_checkpoint_loading
    CheckpointLoader.register_scheme(prefixes=LOCAL_PREFIX, loader=safe_torch_load, force=True)
    _replaced = current


def uninstall_safe_checkpoint_loading() -> None:
    """Put back the loader :func:`install_safe_checkpoint_loading` replaced (a no-op when ours is
    not installed, e.g. never was, or someone replaced it since)."""
    global _replaced
    if _replaced is None or not is_safe_checkpoint_loading_installed():
        return
    CheckpointLoader.register_scheme(prefixes=LOCAL_PREFIX, loader=_replaced, force=True)
    _replaced = None


@contextlib.contextmanager
def safe_checkpoint_loading() -> Iterator[None]:
    """Inside the ``with`` block mmengine reads local checkpoints with ``safe_torch_load``; on exit
    the previous loader is back (unless it was ours already: nested blocks leave it installed)."""
    installed_here = not is_safe_checkpoint_loading_installed()
    install_safe_checkpoint_loading()
    try:
        yield
    finally:
        if installed_here:
            uninstall_safe_checkpoint_loading()


@HOOKS.register_module()
class SafeCheckpointLoadingHook(Hook):
    """The config way to :func:`safe_checkpoint_loading`: installed in ``before_run`` (before the
    runner loads ``load_from`` or resumes), restored in ``after_run``.

    ``custom_hooks=[dict(type='mmeffnet.SafeCheckpointLoadingHook')]``
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._installed_here = False

    def before_run(self, runner) -> None:
        self._installed_here = not is_safe_checkpoint_loading_installed()
        install_safe_checkpoint_loading()

    def after_run(self, runner) -> None:
        if self._installed_here:
            uninstall_safe_checkpoint_loading()
            self._installed_here = False

"""``mmeffnet::`` config bases: a config elsewhere inherits one that the mmeffnet package ships.

    _base_ = ['mmeffnet::retinanet_effb3_fpn_crop896_8x4_1x_coco.py']

The wheel ships ``configs/`` as ``mmeffnet/.mim/configs`` (mmdet's layout; an editable install links
it to the checkout's ``configs/``). mmengine 0.10 resolves ``pkg::path`` bases only for the packages
in its own list (``mmengine.config.utils.MODULE2PACKAGE``) and only for paths with a folder
(open-mmlab/mmengine#1410), so it refuses ``mmeffnet::...`` with "mmengine does not support to load
mmeffnet config". ``enable_mmeffnet_bases()`` makes ``Config`` read ``mmeffnet::<path>`` from the
installed package's ``.mim/configs/<path>`` and leaves every other base to mmengine. Nothing does this
on ``import mmeffnet``: our tools call it (``mmeffnet.tool_entry``); a script of yours calls it before
``Config.fromfile``. ``mmengine.hub.get_config`` is not covered.
"""
import os
import os.path as osp
from typing import Callable, Optional, Tuple

from mmengine.config import Config

from ..utils import listing

PREFIX = 'mmeffnet::'

# mmengine's resolver while ours stands in front of it (None: not enabled).
_mmengine_get_cfg_path: Optional[Callable[[str, str], Tuple[str, Optional[str]]]] = None


def shipped_configs_dir() -> str:
    """``<installed mmeffnet>/.mim/configs``: where ``mmeffnet::`` bases are read from."""
    import mmeffnet  # the installed package, wheel or editable; imported here, not at module load
    return osp.join(osp.dirname(osp.abspath(mmeffnet.__file__)), '.mim', 'configs')


def _configs_in(folder: str) -> list:
    names = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        names += [osp.relpath(osp.join(root, f), folder) for f in sorted(files) if f.endswith('.py')]
    return names


def resolve_mmeffnet_base(cfg_path: str) -> str:
    """The file a ``mmeffnet::<path>`` base names; FileNotFoundError naming what exists if none."""
    relative = cfg_path[len(PREFIX):]
    root = shipped_configs_dir()
    if not osp.isdir(root):
        raise FileNotFoundError(
            f'{cfg_path}: the installed mmeffnet has no configs folder {root}; install mmeffnet from its wheel, '
            'or from a checkout with `pip install -e .` (or `make install`), which links configs/ there')
    path = osp.normpath(osp.join(root, relative))
    inside = path.startswith(root + os.sep)
    if not inside or not osp.isfile(path):
        # Name what the folder the path points into holds (the whole tree when it points nowhere).
        folder = osp.dirname(path) if inside and osp.isdir(osp.dirname(path)) else root
        shipped = [osp.relpath(osp.join(folder, f), root) for f in _configs_in(folder)]
        raise FileNotFoundError(f'{cfg_path}: mmeffnet ships no config {relative!r}; '
                                f'it has {listing(shipped) or "none"} (under {root})')
    return path


def _get_cfg_path(cfg_path: str, filename: str) -> Tuple[str, Optional[str]]:
    """``Config._get_cfg_path`` with ``mmeffnet::`` bases resolved here, every other by mmengine."""
    if cfg_path.startswith(PREFIX):
        # Scope None: mmengine would stamp `_scope_='mmeffnet'` on the base's typed dicts, but our
        # configs are toolbox configs (their default_scope is mmdet / mmseg / mmpretrain and our own
        # types carry the `mmeffnet.` prefix), so the base means what it means when inherited by path.
        return resolve_mmeffnet_base(cfg_path), None
    return _mmengine_get_cfg_path(cfg_path, filename)


def enable_mmeffnet_bases() -> None:
    """Let ``Config.fromfile`` read ``mmeffnet::`` bases (idempotent; undone by ``disable_mmeffnet_bases``)."""
    global _mmengine_get_cfg_path
    if mmeffnet_bases_enabled():
        return
    _mmengine_get_cfg_path = Config._get_cfg_path
    Config._get_cfg_path = staticmethod(_get_cfg_path)


def disable_mmeffnet_bases() -> None:
    """Give ``Config`` back mmengine's own resolver (a no-op when not enabled)."""
    global _mmengine_get_cfg_path
    if mmeffnet_bases_enabled():
        Config._get_cfg_path = staticmethod(_mmengine_get_cfg_path)
        _mmengine_get_cfg_path = None


def mmeffnet_bases_enabled() -> bool:
    return Config.__dict__.get('_get_cfg_path') is not None and Config._get_cfg_path is _get_cfg_path

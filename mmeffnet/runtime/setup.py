"""Preparing a config for the machine it runs on, shared by ``tools/train.py`` and ``tools/test.py``.

- SyncBN needs CUDA and more than one process; elsewhere (CPU, gloo, a single process) it is
  converted to BN in the config, with a log line saying so.
- A missing dataset stops the run before the Runner is built, with an error that says where it
  looked and which ``--cfg-options`` key points it elsewhere.
"""
import os.path as osp
from typing import Any, Iterator, List, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import print_log

SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'SyncBatchNorm', 'TorchSyncBN')


def _walk(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _walk(value)


def sync_bn_supported(distributed: bool) -> bool:
    return distributed and torch.cuda.is_available()


def adapt_sync_bn(cfg: Config, distributed: bool) -> int:
    """Turn SyncBN into BN in ``cfg.model`` where it cannot run; returns how many were changed."""
    if sync_bn_supported(distributed):
        return 0
    changed = 0
    for node in _walk(cfg.get('model', {})):
        if node.get('type') in SYNC_BN_TYPES:
            node['type'] = 'BN'
            changed += 1
    if changed:
        where = 'on CPU' if not torch.cuda.is_available() else 'in a single process'
        print_log(f'SyncBN needs CUDA and several processes; running {where}, so {changed} SyncBN '
                  'config(s) were converted to BN (statistics are per process).', logger='current')
    return changed


def _dataset_nodes(cfg: Config, split: str) -> List[dict]:
    loader = cfg.get(f'{split}_dataloader')
    if not loader or 'dataset' not in loader:
        return []
    stack, found = [loader['dataset']], []
    while stack:  # unwrap RepeatDataset / ConcatDataset / ClassBalancedDataset
        ds = stack.pop()
        if 'dataset' in ds:
            stack.append(ds['dataset'])
        elif 'datasets' in ds:
            stack.extend(ds['datasets'])
        else:
            found.append(ds)
    return found


def dataset_paths(ds: dict) -> List[Tuple[str, str]]:
    """(config key, resolved path) of the data a dataset config needs on disk."""
    root = ds.get('data_root') or ''
    paths = []
    if root:
        paths.append(('data_root', root))
    ann = ds.get('ann_file')
    if ann:
        paths.append(('ann_file', ann if osp.isabs(ann) else osp.join(root, ann)))
    prefix = ds.get('data_prefix') or {}
    if isinstance(prefix, str):
        prefix = {'img_path': prefix}
    for key, value in prefix.items():
        if isinstance(value, str) and value:
            paths.append((f'data_prefix.{key}', value if osp.isabs(value) else osp.join(root, value)))
    return paths


def check_datasets(cfg: Config, splits: Tuple[str, ...]) -> None:
    """Raise ``FileNotFoundError`` for the first missing dataset path, naming the config key."""
    for split in splits:
        for ds in _dataset_nodes(cfg, split):
            for key, path in dataset_paths(ds):
                if path and not osp.exists(path):
                    raise FileNotFoundError(
                        f'{split} dataset ({ds.get("type", "?")}): {key} {path!r} does not exist. '
                        f'Put the data there, or point the config elsewhere, e.g. '
                        f'--cfg-options {split}_dataloader.dataset.data_root=/path/to/dataset/')

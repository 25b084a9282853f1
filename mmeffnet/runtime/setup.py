"""Preparing a config for the machine it runs on, shared by ``tools/train.py`` and ``tools/test.py``.

- SyncBN needs CUDA and more than one process. In one process it is converted to BN (the same
  thing there); in a distributed run without CUDA (CPU processes over gloo) to
  ``mmeffnet.GlooSyncBN``, which synchronizes the statistics over the processes as SyncBN does.
  Either way with a log line saying so.
- A missing dataset stops the run before the Runner is built, with an error that says where it
  looked and which ``--cfg-options`` key points it elsewhere.
"""
import os.path as osp
from typing import Any, Iterator, List, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import print_log

SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'SyncBatchNorm', 'TorchSyncBN')
GLOO_SYNC_BN = 'mmeffnet.GlooSyncBN'  # mmeffnet/runtime/gloo_sync_bn.py


def walk_dicts_with_paths(node: Any, path: str = '') -> Iterator[Tuple[str, dict]]:
    """``(path, dict)`` for every dict nested in ``node`` (dicts, lists, tuples), ``node`` itself
    first; paths read like ``--cfg-options`` keys: ``model.backbone``, ``train_pipeline[2]``."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk_dicts_with_paths(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from walk_dicts_with_paths(value, f'{path}[{i}]')


def walk_dicts(node: Any) -> Iterator[dict]:
    """Every dict nested in ``node`` (dicts, lists, tuples), ``node`` itself first."""
    return (found for _, found in walk_dicts_with_paths(node))


def sync_bn_supported(distributed: bool) -> bool:
    return distributed and torch.cuda.is_available()


def adapt_sync_bn(cfg: Config, distributed: bool) -> int:
    """Replace SyncBN in ``cfg.model`` where it cannot run: by ``mmeffnet.GlooSyncBN`` in a
    distributed run without CUDA, by BN in a single process. Returns how many were changed."""
    if sync_bn_supported(distributed):
        return 0
    on_cpu_processes = distributed and not torch.cuda.is_available()
    replacement = GLOO_SYNC_BN if on_cpu_processes else 'BN'
    changed = 0
    for node in walk_dicts(cfg.get('model', {})):
        if node.get('type') in SYNC_BN_TYPES:
            node['type'] = replacement
            changed += 1
    if changed and on_cpu_processes:
        print_log(f'SyncBN needs CUDA; running CPU processes, so {changed} SyncBN config(s) use {replacement} '
                  '(statistics synchronized over the processes with gloo).', logger='current')
    elif changed:
        print_log(f'SyncBN needs CUDA and several processes; running in a single process, so {changed} SyncBN '
                  'config(s) were converted to BN (the same computation there).', logger='current')
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
        # COCO-style evaluators (mmdet's CocoMetric) read the annotation file again from their own key
        evaluators = cfg.get(f'{split}_evaluator') or []
        for i, evaluator in enumerate(evaluators if isinstance(evaluators, list) else [evaluators]):
            ann = evaluator.get('ann_file') if isinstance(evaluator, dict) else None
            if isinstance(ann, str) and '://' not in ann and not osp.exists(ann):
                key = f'{split}_evaluator' + (f'.{i}' if isinstance(evaluators, list) else '')
                raise FileNotFoundError(
                    f'{split} evaluator ({evaluator.get("type", "?")}): ann_file {ann!r} does not exist. '
                    f'Point it at the annotation file, e.g. --cfg-options {key}.ann_file=/path/to/annotations.json')

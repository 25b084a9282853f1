"""The data a config's datasets and evaluators read, checked on disk before anything is built.

A missing dataset stops the run before the Runner is built, with an error that says where it
looked and which ``--cfg-options`` key points it elsewhere.
"""
import os.path as osp
from typing import List, Tuple

from mmengine.config import Config


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


def check_dataset_paths(cfg: Config, splits: Tuple[str, ...]) -> None:
    """Raise ``FileNotFoundError`` for the first missing dataset path of ``splits``, naming the
    config key."""
    for split in splits:
        for ds in _dataset_nodes(cfg, split):
            for key, path in dataset_paths(ds):
                if path and not osp.exists(path):
                    raise FileNotFoundError(f'{split} dataset ({ds.get("type", "?")}): {key} {path!r} does not exist. '
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

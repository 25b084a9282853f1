"""Shared by the reliability, bad-input and distributed tests: the detection recipe at test scale.

The recipe (configs/retinanet_effb3_fpn_crop896_8x4_1x_coco.py) runs unchanged except for
``--cfg-options`` overrides of the input size (896 -> 64), the data (a generated shapes set in COCO
format, mmeffnet/datasets/synthetic_shapes.py), the schedule length, logging every iteration,
and the backbone width (B0 instead of B3, with the neck's in_channels to match) to spare CPU.
"""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import torch

from conftest import CONFIGS, REPO
from mmeffnet.checkpoint import safe_torch_load
from mmeffnet.datasets.synthetic_shapes import SHAPES, ShapesSpec, write_shapes_coco

RECIPE = osp.join(CONFIGS, 'retinanet_effb3_fpn_crop896_8x4_1x_coco.py')
CLASSES = SHAPES[:3]
IMAGE = 64


def make_shapes_data(root: str, num_train: int = 8, num_val: int = 2, same_boxes: bool = False) -> str:
    """A shapes set under ``root`` (train/, val/, annotations/instances_{train,val}.json).

    ``same_boxes``: every training image gets the boxes of the first one (the pictures still
    differ), so every image yields the same number of positive anchors; RetinaNet normalizes its
    loss by that number per process, which then matches between 1 and N processes.
    """
    write_shapes_coco(root, 'train', ShapesSpec(num_images=num_train, image_size=IMAGE, classes=CLASSES, seed=1))
    write_shapes_coco(root, 'val', ShapesSpec(num_images=num_val, image_size=IMAGE, classes=CLASSES, seed=2))
    if same_boxes:
        ann_file = osp.join(root, 'annotations', 'instances_train.json')
        with open(ann_file) as f:
            data = json.load(f)
        first = [a for a in data['annotations'] if a['image_id'] == data['images'][0]['id']]
        data['annotations'] = [
            dict(a, id=i * len(first) + j + 1, image_id=img['id']) for i, img in enumerate(data['images'])
            for j, a in enumerate(first)
        ]
        with open(ann_file, 'w') as f:
            json.dump(data, f)
    return root


def recipe_overrides(data_root: str,
                     max_epochs: int = 3,
                     batch_size: int = 2,
                     arch: str = 'b0',
                     extra: Optional[Dict[str, str]] = None) -> List[str]:
    """``--cfg-options`` arguments that shrink the recipe to a test run on ``data_root``."""
    size = f'({IMAGE},{IMAGE})'
    classes = '(' + ','.join(CLASSES) + ')'
    neck = {'b0': '[40,112,320]', 'b3': '[48,136,384]'}[arch]
    root = data_root.rstrip('/') + '/'
    opts = {
        'model.backbone.arch': arch,
        'model.neck.in_channels': neck,
        'model.backbone.init_cfg': 'None',  # no ImageNet download in tests
        'model.bbox_head.num_classes': str(len(CLASSES)),
        'model.data_preprocessor.batch_augments.0.size': size,
        'train_dataloader.dataset.pipeline.2.scale': size,
        'train_dataloader.dataset.pipeline.3.crop_size': size,
        'train_dataloader.batch_size': str(batch_size),
        'train_dataloader.num_workers': '0',
        'train_dataloader.persistent_workers': 'False',
        'train_dataloader.dataset.data_root': root,
        'train_dataloader.dataset.ann_file': 'annotations/instances_train.json',
        'train_dataloader.dataset.data_prefix.img': 'train/',
        'train_dataloader.dataset.metainfo.classes': classes,
        'train_cfg.max_epochs': str(max_epochs),
        'param_scheduler.0.end': '4',  # warm-up over the first 4 iterations
        'param_scheduler.1.end': str(max_epochs),
        'param_scheduler.1.milestones': '[2]',
        'default_hooks.logger.interval': '1',
        'randomness.seed': '0',
    }
    for split in ('val', 'test'):
        opts.update({
            f'{split}_dataloader.dataset.pipeline.1.scale': size,
            f'{split}_dataloader.batch_size': '2',
            f'{split}_dataloader.num_workers': '0',
            f'{split}_dataloader.persistent_workers': 'False',
            f'{split}_dataloader.dataset.data_root': root,
            f'{split}_dataloader.dataset.ann_file': 'annotations/instances_val.json',
            f'{split}_dataloader.dataset.data_prefix.img': 'val/',
            f'{split}_dataloader.dataset.metainfo.classes': classes,
            f'{split}_evaluator.ann_file': root + 'annotations/instances_val.json',
        })
    opts.update(extra or {})
    return ['--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]


def tool_env(**extra: str) -> dict:
    """Extra environment of a tool process (for ``run_tool(env=...)`` / :func:`start_tool`): one
    thread, as the machine is shared and runs are bit-reproducible for a fixed thread count."""
    return {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', **extra}


def start_tool(args: List[str], log_path: str, **env: str) -> subprocess.Popen:
    """Start ``python <args>`` from the repo root in its own process group; output to ``log_path``."""
    log = open(log_path, 'w')
    return subprocess.Popen([sys.executable, *args],
                            cwd=REPO,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=REPO, **tool_env(**env)),
                            start_new_session=True)


def run_script(*args: str, env: Optional[dict] = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``bash <args>`` (a tools/*.sh script) from the repo root; fail with its output if it fails."""
    full_env = dict(os.environ, PYTHONPATH=REPO, PYTHON=sys.executable, **(env or {}))
    proc = subprocess.run(['bash', *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env)
    if proc.returncode != 0:
        raise AssertionError(f'bash {" ".join(args[:3])} ... exited {proc.returncode}\n'
                             f'STDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}')
    return proc


def wait_for_file(path: str, proc: subprocess.Popen, log_path: str, timeout: float = 600) -> None:
    """Wait until ``path`` exists; fail with the tool's log if the tool exits first."""
    deadline = time.monotonic() + timeout
    while not osp.exists(path):
        if proc.poll() is not None:
            raise AssertionError(f'the tool exited ({proc.returncode}) before {path} appeared:\n' +
                                 open(log_path).read()[-5000:])
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f'{path} did not appear within {timeout}s:\n' + open(log_path).read()[-5000:])
        time.sleep(0.2)


def sigkill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def scalars(work_dir: str) -> Dict[int, dict]:
    """Training records of every ``vis_data/scalars.json`` under ``work_dir``, by iteration (a
    resumed run writes a new timestamped folder; later runs override earlier ones)."""
    records: Dict[int, dict] = {}
    for run in sorted(os.listdir(work_dir)):
        path = osp.join(work_dir, run, 'vis_data', 'scalars.json')
        if osp.isfile(path):
            for line in open(path):
                rec = json.loads(line)
                if 'loss' in rec:
                    records[rec['iter']] = rec
    return records


def error_message(stderr: str) -> str:
    """The ``ERROR: ...`` message of a tool's stderr (import-time warnings may precede it)."""
    start = stderr.find('ERROR: ')
    assert start >= 0, f'no ERROR line in stderr:\n{stderr[-3000:]}'
    return stderr[start:]


def load_checkpoint(path: str) -> dict:
    return safe_torch_load(path, map_location='cpu')


def assert_same_tensors(a, b, what: str, atol: float = 0.0, rtol: float = 0.0) -> None:
    """Nested dicts / lists of tensors and numbers equal (exactly, by default)."""
    if isinstance(a, dict):
        assert set(a) == set(b), f'{what}: keys differ: {set(a) ^ set(b)}'
        for k in a:
            assert_same_tensors(a[k], b[k], f'{what}.{k}', atol, rtol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f'{what}: lengths differ'
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f'{what}[{i}]', atol, rtol)
    elif isinstance(a, (torch.Tensor, np.ndarray)):
        torch.testing.assert_close(
            torch.as_tensor(a), torch.as_tensor(b), atol=atol, rtol=rtol, msg=lambda m: f'{what}: {m}')
    else:
        assert a == b, f'{what}: {a!r} != {b!r}'
